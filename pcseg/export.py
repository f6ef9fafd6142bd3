"""``pcseg export``: a trained model as an ONNX or TorchScript file.

What goes into the graph:

- **PointNet** models (``pointnet``, ``pointnet_sem_seg``, ``pointnet_cls``) export whole: inputs
  ``points (B, P, 3)`` and, where the model has feature channels, ``features (B, P, C)``;
  output ``logits (B, num_classes, P)``. Batch and point count are dynamic axes.
- **A-CNN** (``acnn``) exports its learned part (``ACNNLearnedPart``, which runs the model's own
  ``ACNNSeg.forward_from_neighbourhoods``): the circular convolutions, batch norms, max-pools,
  interpolations and head. The neighbourhood search (``ACNNSeg.neighbourhoods``: farthest point
  sampling, ring queries with their angular order, the 3 nearest centres of every point and
  their inverse-squared-distance weights) runs outside the graph, in pcseg's native ops, and
  enters it as index and weight inputs; the graph only gathers.
  Chosen after trying the pure-torch references inside the graph: ``farthest_point_sample_naive``
  loops in Python and reads each next centre with ``int()``, so a trace freezes the example
  block's centres as constants (the traced graph returns those indices for any other block),
  and ``ring_query_naive``'s stable sort has no ONNX export ("ONNX export of operator Sort, Out
  parameter is not supported"); only ``three_nn_interpolate_naive`` traces correctly. The
  native ops are also the ones ``pcseg predict`` uses, so an exported A-CNN sees the same
  neighbourhoods as the torch model.

What the graph does not hold either way: cutting a cloud into blocks and making each block's
inputs (``pcseg.data.blocks``, ``pcseg.inputs``), including the local geometric features
(k-NN and an eigen decomposition). ``model_inputs`` makes them from block features as
``pcseg predict`` does; the README's Export section shows the same in numpy for PointNet. The models' input
checks are Python code that runs while tracing and does not reach the graph; padded batches
(``lengths``) are not exported (blocks are always full).

The ONNX file's ``metadata_props`` (onnxruntime: ``session.get_modelmeta().custom_metadata_map``)
and the TorchScript file's extra file ``pcseg.json`` hold the same strings (``export_metadata``):
the class names, input channels, block size, points per block and the input contract.

ONNX goes through ``torch.onnx.export(dynamo=False)``: the dynamo exporter needs ``onnxscript``,
which pcseg does not depend on. Files are written to a temporary name in the output folder and
renamed into place, so a failed export never leaves a partial file.

    summary = export_checkpoint("runs/x/best.pt", "model.onnx", "onnx")
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from pcseg import __version__, ops
from pcseg.config import Config, DataConfig
from pcseg.data.blocks import predict_room
from pcseg.inputs import block_inputs, input_channels, input_normals
from pcseg.models import ACNNSeg, PointNetCls, PointNetSeg, PointNetSemSeg
from pcseg.utils.atomic import atomic_path

__all__ = [
    "EXPORT_FORMATS",
    "ONNX_OPSET",
    "ACNNLearnedPart",
    "acnn_neighbourhoods",
    "exportable",
    "model_inputs",
    "room_block_features",
    "export_metadata",
    "export_model",
    "export_checkpoint",
    "run_export",
]

EXPORT_FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17
POINTNET_MODELS = (PointNetSeg, PointNetSemSeg, PointNetCls)


class ACNNLearnedPart(nn.Module):
    """An ``ACNNSeg``'s learned part, its neighbourhoods given as tensors (see the module docstring).

    Shares the model's parameters and runs ``ACNNSeg.forward_from_neighbourhoods``, the learned
    part of ``ACNNSeg.forward``, on full blocks (no ``lengths``): the exported graph holds what
    the torch model computes, its gathers in the form ``pcseg.models.acnn.group_rows`` traces to.

    Args:
        model: an ``ACNNSeg`` in eval mode.

    Raises:
        ValueError: when ``model`` is not an ``ACNNSeg``.
    """

    def __init__(self, model: ACNNSeg):
        super().__init__()
        if not isinstance(model, ACNNSeg):
            raise ValueError(f"ACNNLearnedPart needs an ACNNSeg, got {type(model).__name__}")
        self.model = model
        self.names = model.neighbourhood_names()

    def forward(self, points: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        """Segments full blocks.

        Args:
            points: (B, P, 3) float32 coordinates.
            *inputs: ``features`` (B, P, in_channels) float32 where the model has channels, then
                ``normals`` (B, P, 3) float32 unit normals (the given or estimated ones), then
                ``ACNNSeg.neighbourhoods``'s tensors in its order (``model_inputs`` makes them all).

        Returns:
            logits: (B, num_classes, P) float32.
        """
        rest = list(inputs)
        features = rest.pop(0) if self.model.in_channels else None
        normals = rest.pop(0)
        if len(rest) != len(self.names):
            raise ValueError(
                f"ACNNLearnedPart needs {len(self.names)} neighbourhood tensors "
                f"({', '.join(self.names)}), got {len(rest)}"
            )
        return self.model.forward_from_neighbourhoods(points, features, normals, dict(zip(self.names, rest)))


def acnn_neighbourhoods(model: ACNNSeg, points: torch.Tensor, normals: torch.Tensor) -> dict[str, torch.Tensor]:
    """The neighbourhoods an ``ACNNLearnedPart`` takes: ``model.neighbourhoods(points, normals)``.

    Args:
        model: the ``ACNNSeg``.
        points: (B, P, 3) float32 block coordinates.
        normals: (B, P, 3) float32 unit normals.

    Returns:
        neighbourhoods: name -> tensor in the graph's input order (``ACNNSeg.neighbourhoods``).
    """
    with torch.no_grad():
        return model.neighbourhoods(points, normals)


def exportable(model: nn.Module) -> nn.Module:
    """The module that goes into the exported graph.

    Args:
        model: a pcseg model in eval mode.

    Returns:
        module: the model itself (PointNet) or its ``ACNNLearnedPart`` (A-CNN).

    Raises:
        ValueError: for a model that cannot be exported (A-CNN classification).
    """
    if isinstance(model, POINTNET_MODELS):
        return model
    if isinstance(model, ACNNSeg):
        return ACNNLearnedPart(model)
    raise ValueError(
        f"cannot export a {type(model).__name__}: export supports PointNet models and A-CNN "
        f"segmentation ({', '.join(c.__name__ for c in (*POINTNET_MODELS, ACNNSeg))})"
    )


def model_inputs(model: nn.Module, data: DataConfig, block_features: torch.Tensor) -> dict[str, torch.Tensor]:
    """The exported graph's inputs for blocks, made as ``pcseg predict`` makes the model's.

    Args:
        model: the pcseg model that was exported.
        data: the data section of its config.
        block_features: (B, P, 9) float32 block features (``pcseg.data.blocks``).

    Returns:
        inputs: name -> tensor in the graph's input order: ``points`` (B, P, 3) float32,
        ``features`` (B, P, C) float32 where the model has channels, and for A-CNN ``normals``
        (B, P, 3) float32 and the ``ACNNSeg.neighbourhoods``.
    """
    with torch.no_grad():
        points, features = block_inputs(block_features, data)
        inputs = {"points": points}
        if features is not None and model.in_channels:
            inputs["features"] = features
        if isinstance(model, ACNNSeg):
            normals = input_normals(features, data)
            if normals is None:
                normals = ops.estimate_normals(points, k=model.encoder.normal_k, viewpoint="interior")
            inputs["normals"] = normals.to(points.dtype).contiguous()
            inputs.update(model.neighbourhoods(points, inputs["normals"]))
    return inputs


def _feature_channels(data: DataConfig) -> list[str]:
    """The names of the feature channels in ``pcseg.inputs`` order."""
    names = []
    if data.use_color:
        names += ["red", "green", "blue"]
    if data.room_coords:
        names += ["room_x", "room_y", "room_z"]
    if data.geometric_features:
        names += [
            "normal_x",
            "normal_y",
            "normal_z",
            "surface_variation",
            "centroid_offset_x",
            "centroid_offset_y",
            "centroid_offset_z",
        ]
    return names


def export_metadata(model: nn.Module, cfg: Config, input_names: list[str]) -> dict[str, str]:
    """What a user of the exported file needs to know to feed it (strings, as ONNX stores them).

    Args:
        model: the exported pcseg model.
        cfg: its config.
        input_names: the graph's input names.

    Returns:
        metadata: ``pcseg_version``, ``model_name``, ``class_names`` (JSON list), ``num_classes``,
        ``in_channels``, ``feature_channels`` (JSON list), ``block_size``, ``num_points``,
        ``eval_stride``, ``neighbours``, ``use_color``, ``room_coords``, ``geometric_features``,
        ``inputs`` (JSON list), ``outputs``, ``input_contract`` (prose).
    """
    from pcseg.evaluate import class_names_for

    data = cfg.data
    channels = _feature_channels(data)
    contract = (
        f"Cut the cloud into {data.block_size} m x {data.block_size} m xy columns (stride {data.eval_stride} m); "
        f"feed {data.num_points} points per block. points (B, P, 3) float32: x and y minus (the smallest x, y "
        f"of the block's fed points + block_size / 2), z minus the lowest z of the whole cloud. "
        + (
            f"features (B, P, {len(channels)}) float32: {', '.join(channels)}; rgb in [0, 1]; room_xyz = "
            f"(xyz - cloud min) / cloud extent; geometry from the {data.neighbours} nearest neighbours of each "
            f"point within the block (itself included): PCA normal flipped where it points away from "
            f"0.5 - room_xyz (into the room), 3 * smallest eigenvalue / eigenvalue sum, offset to the "
            f"neighbours' centroid times 10. "
            if channels
            else ""
        )
        + (
            "A-CNN: the remaining inputs are the neighbourhoods ACNNSeg.neighbourhoods finds "
            "(normals: the normal channels, else pcseg.ops.estimate_normals with viewpoint='interior'). "
            if isinstance(model, ACNNSeg)
            else ""
        )
        + "Output logits (B, num_classes, P); a point's label is the argmax over classes, averaged over the "
        "blocks that hold it."
    )
    return {
        "pcseg_version": __version__,
        "model_name": cfg.model.name,
        "class_names": json.dumps(class_names_for(cfg)),
        "num_classes": str(data.num_classes),
        "in_channels": str(input_channels(data)),
        "feature_channels": json.dumps(channels),
        "block_size": str(data.block_size),
        "num_points": str(data.num_points),
        "eval_stride": str(data.eval_stride),
        "neighbours": str(data.neighbours),
        "use_color": str(data.use_color).lower(),
        "room_coords": str(data.room_coords).lower(),
        "geometric_features": str(data.geometric_features).lower(),
        "inputs": json.dumps(input_names),
        "outputs": json.dumps(["logits"]),
        "input_contract": contract,
    }


def room_block_features(data: DataConfig, points: np.ndarray, colors: np.ndarray, seed: int = 0) -> torch.Tensor:
    """The blocks ``pcseg predict`` feeds a model for one room, to check an export on real data.

    Cut by ``pcseg.data.predict_room`` (sliding blocks, chunks of ``num_points``), as
    ``pcseg.predict.predict_tile`` cuts a room.

    Args:
        data: the data section of the model's config (block size, stride, points per block).
        points: (N, 3) float coordinates in metres, N >= 1.
        colors: (N, 3) uint8 0..255 or float in [0, 1].
        seed: the seed of the chunks' random point order.

    Returns:
        block_features: (K, num_points, 9) float32, every chunk of the room.
    """
    blocks: list[torch.Tensor] = []

    def record(features: torch.Tensor) -> torch.Tensor:
        blocks.append(features.clone())
        return torch.zeros(features.shape[0], features.shape[1], data.num_classes)

    room = {"coord": np.asarray(points, dtype=np.float32), "color": colors}
    predict_room(
        room,
        record,
        data.num_classes,
        block_size=data.block_size,
        stride=data.eval_stride,
        num_points=data.num_points,
        seed=seed,
    )
    return torch.cat(blocks)


def _example_block_features(data: DataConfig, batch: int = 2) -> torch.Tensor:
    """Random (batch, num_points, 9) block features in the ranges real blocks have."""
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(batch, data.num_points, 9, generator=generator)
    features[..., 0:2] = (features[..., 0:2] - 0.5) * data.block_size
    features[..., 2] *= 3.0
    return features


def _check_out(out: Path) -> None:
    """Clear errors for an output path that cannot be written."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--out {out}: output folder {parent} is a file")
            break


def export_model(model: nn.Module, cfg: Config, out: str | Path, format: str = "onnx") -> dict:
    """Exports a pcseg model (see the module docstring).

    Args:
        model: a pcseg model (put in eval mode here).
        cfg: its config (block size, points per block, input channels, classes).
        out: the file to write (``.onnx`` / ``.pt`` by convention; not enforced).
        format: ``"onnx"`` or ``"torchscript"``.

    Returns:
        summary: ``out``, ``format``, ``inputs`` (names) and ``metadata``.

    Raises:
        ValueError: for an unknown format, a model that cannot be exported, or an ``out`` that
            is a folder or lies under a file.
        ImportError: for ONNX without the ``onnx`` package.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    data = cfg.data
    if data.lidar or data.multiscale_features:
        raise ValueError(
            "models with LiDAR channels (data.use_intensity, data.use_range) or multiscale features "
            "(data.multiscale_features) cannot be exported yet: the exported contract covers blocks of the "
            "9 PointNet features only"
        )
    out = Path(out)
    _check_out(out)
    if format == "onnx":
        _import_onnx()  # before the slow part
    model = model.eval()
    module = exportable(model)
    inputs = model_inputs(model, cfg.data, _example_block_features(cfg.data))
    names = list(inputs)
    args = tuple(inputs.values())
    metadata = export_metadata(model, cfg, names)
    with warnings.catch_warnings(), torch.no_grad():
        # the models' input checks run in Python while tracing, and the legacy exporter warns
        # of its own deprecation: neither concerns the exported graph
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if format == "onnx":
            with atomic_path(out) as tmp:
                _export_onnx(module, args, names, metadata, tmp)
        else:
            traced = torch.jit.trace(module, args, check_trace=False)
            with atomic_path(out) as tmp:
                torch.jit.save(traced, str(tmp), _extra_files={"pcseg.json": json.dumps(metadata)})
    return {"out": str(out), "format": format, "inputs": names, "metadata": metadata}


def _dynamic_axes(names: list[str]) -> dict[str, dict[int, str]]:
    """Batch and point-count axes (and the centres' counts of A-CNN's neighbourhoods) dynamic."""
    axes: dict[str, dict[int, str]] = {"logits": {0: "batch", 2: "num_points"}}
    for name in names:
        if name in ("points", "features", "normals"):
            axes[name] = {0: "batch", 1: "num_points"}
        else:
            axes[name] = {0: "batch", 1: f"{name}_rows"}
    return axes


def _import_onnx():
    """The ``onnx`` package, or an error that says how to get it."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError("pcseg export --format onnx needs the onnx package: pip install onnx") from error
    return onnx


def _export_onnx(module: nn.Module, args: tuple, names: list[str], metadata: dict[str, str], path: Path) -> None:
    onnx = _import_onnx()
    torch.onnx.export(
        module,
        args,
        str(path),
        dynamo=False,
        opset_version=ONNX_OPSET,
        input_names=names,
        output_names=["logits"],
        dynamic_axes=_dynamic_axes(names),
    )
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def export_checkpoint(checkpoint: str | Path, out: str | Path, format: str = "onnx") -> dict:
    """``pcseg export``: a checkpoint's model as an ONNX or TorchScript file.

    Args:
        checkpoint: a ``best.pt`` / ``last.pt`` written by ``pcseg train``.
        out: the file to write.
        format: ``"onnx"`` or ``"torchscript"``.

    Returns:
        summary: as ``export_model`` returns it, plus ``checkpoint``.

    Raises:
        FileNotFoundError: when ``checkpoint`` is not a file.
        ValueError: for an unknown format, a file that is not a loadable pcseg checkpoint, a
            model that cannot be exported, or an ``out`` that cannot be written.
    """
    from pcseg.checkpoint import model_from_checkpoint

    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    _check_out(Path(out))
    try:
        model, cfg, _ = model_from_checkpoint(checkpoint)
    except FileNotFoundError:
        raise
    except Exception as error:  # a torn or foreign file: torch.load raises many kinds
        raise ValueError(f"cannot load checkpoint {checkpoint}: {error}") from error
    return {"checkpoint": str(checkpoint), **export_model(model, cfg, out, format)}


def run_export(args: argparse.Namespace) -> int:
    """Runs ``pcseg export`` from parsed arguments; prints what was written.

    Args:
        args: ``checkpoint``, ``format`` and ``out`` (``pcseg.cli`` builds the parser without
            importing this module, which imports torch; the format is checked here).

    Returns:
        exit_code: 0.
    """
    summary = export_checkpoint(args.checkpoint, args.out, args.format)
    print(f"wrote {summary['out']} ({summary['format']}; inputs {', '.join(summary['inputs'])})")
    return 0
