"""All inference: a trained model over sliding blocks, tiles, whole clouds and files.

Four layers, each calling the one below:

1. ``Segmenter.predict(points, colors)`` (``pcseg.segmenter``): the numpy API; checks its input
   and calls ``segment_cloud``.
2. ``segment_cloud(model, cfg, points, colors)``: a cloud of any size and any frame: checks
   the colours (``check_colors``), removes the cloud's offset in float64 (``to_local``: from
   there on every coordinate is relative to the cloud's lowest corner, so the result does not
   depend on where the cloud lies) and cuts it into tiles of bounded size (``iter_tiles``);
   each tile's context goes to ``predict_tile``. ``predict_file``
   (``pcseg predict``) reads a file, calls it and writes the labels.
3. ``predict_tile(model, data, points, colors, frame)``: one room-sized cloud (a tile, or a
   whole room in ``pcseg.evaluate.evaluate_rooms``): wraps the model in a block predictor
   (``make_block_predictor``: block features -> ``pcseg.inputs`` -> the model's forward) and
   calls ``predict_room``.
4. ``pcseg.data.predict_room(room, predict_block)``: visits the blocks of a grid anchored at
   the cloud that hold points (``block_chunks``), feeds their 9 PointNet features to
   ``predict_block`` (sparse blocks at their real point count, in padded batches with
   ``lengths``) and averages every point's logits.

**Cost.** The work follows the points, not the area: only occupied blocks are visited, a
block with fewer than ``num_points`` points is not resampled up, and the stride's overlapping
blocks are added only where they are full (each point always has one home block), so a
sparse LiDAR scan feeds each point about once and a dense room up to
``ceil(block_size / stride) ** 2`` times, as sliding blocks always did.

**Tiles.** A cloud is split (recursively, along its longer xy side) into tiles whose context,
the tile plus a margin of one block around it, holds at most ``max_tile_points`` points (and
which span at most ``max_tile_extent`` metres where a limit is given). Only the tile's own points keep their result:
every block covering a tile point lies inside the context, so those points get logits from
whole blocks. The block grid and the block features are those of the whole cloud (its
lowest corner and extent), not of the tile, so a tile's blocks look to the model as they
would untiled.

Splitting stops at tiles ``min_tile_width(...)`` metres wide. A context still too dense there
is dealt at random into parts of at most ``max_tile_points`` points, each a uniform sample of
the whole tile and margin: sliding-block prediction already feeds the model random
``num_points`` samples of each block, and a part still holds that many points per block, so
a part's blocks look like the untiled blocks. Memory is bounded by the tile size, not the
cloud size (plus the (N,) outputs).

This module needs the model-input contract (``pcseg.inputs``) and the checkpoint format
(``pcseg.checkpoint``), never the trainer.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from pcseg.config import Config, DataConfig
from pcseg.data.blocks import predict_room, room_frame, to_local
from pcseg.inputs import block_inputs, input_normals, room_fields
from pcseg.utils.colors import check_color_values
from pcseg.utils.progress import progress as progress_bar

__all__ = [
    "autocast_dtype",
    "make_block_predictor",
    "predict_tile",
    "iter_tiles",
    "min_tile_width",
    "check_colors",
    "segment_cloud",
    "vote_turns",
    "turn_about_z",
    "check_votes",
    "predict_file",
]


def cpu_has_native_bf16() -> bool:
    """True where the CPU executes bf16 matrix maths natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype that ``train.amp`` means on a device.

    Args:
        amp: ``"auto"``, ``"bf16"``, ``"fp16"`` or ``"none"``.
        device: where the model runs.

    Returns:
        dtype: ``torch.bfloat16`` / ``torch.float16``, or None for full float32 (``"none"``, fp16
        on a CPU, ``"auto"`` on a CPU without native bf16).
    """
    if amp == "none":
        return None
    if amp == "fp16":
        return torch.float16 if device.type == "cuda" else None
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None


def make_block_predictor(
    model: torch.nn.Module, data: DataConfig, device="cpu", amp_dtype: torch.dtype | None = None
) -> Callable[..., torch.Tensor]:
    """A ``predict_block`` for ``pcseg.data.predict_room``.

    Args:
        model: a pcseg segmentation model in eval mode.
        data: the data section of its config (which inputs it eats).
        device: where the model runs.
        amp_dtype: the autocast dtype (``autocast_dtype``), or None for float32.

    Returns:
        predict_block: block features (B, P, 9) float32 and optionally lengths (B,) int64 (real
        points per block, real points first) -> logits (B, P, num_classes) float32 on the CPU.
    """
    device = torch.device(device)

    def predict_block(block_features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is not None and bool((lengths == block_features.shape[1]).all()):
            lengths = None  # no padding: the models skip their masks
        if lengths is not None:
            lengths = lengths.to(device)
        with torch.no_grad():
            points, features = block_inputs(block_features.to(device), data, lengths)
            normals = input_normals(features, data)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                if lengths is None:
                    logits = model(points, features, normals=normals)
                else:
                    logits = model(points, features, normals=normals, lengths=lengths)
        return logits.float().transpose(1, 2).cpu()

    return predict_block


def predict_tile(
    model: torch.nn.Module,
    data: DataConfig,
    points: np.ndarray,
    colors: np.ndarray,
    device="cpu",
    amp_dtype: torch.dtype | None = None,
    batch_size: int = 16,
    seed: int = 0,
    frame: tuple[np.ndarray, np.ndarray] | None = None,
    lidar: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sliding-block prediction of one room-sized cloud.

    Only the blocks holding points are visited, a block with fewer than ``num_points``
    points runs at its real count (``predict_room(real_counts=True)``), and blocks overlap
    only where they hold ``num_points`` points or more (``block_chunks(min_overlap_points)``:
    every point is in one non-overlapping home block, the stride's extra blocks are added
    where they are full), so the cost follows the points. Blocks are placed relative to the
    cloud (its lowest corner, or ``frame``'s), never on the absolute coordinate grid, and the
    offset is removed in float64: the result does not depend on where the cloud lies.

    Args:
        model: a pcseg segmentation model in eval mode.
        data: the data section of its config (block size, stride, points per block, inputs).
        points: (N, 3) float coordinates in metres, any frame (float64 keeps map coordinates).
        colors: (N, 3) uint8 0..255 or float in [0, 1].
        device: where the model runs.
        amp_dtype: the autocast dtype, or None for float32.
        batch_size: blocks of ``num_points`` per forward pass (sparse blocks are packed tighter).
        seed: the seed of the blocks' random point order.
        frame: ``room_frame`` of the whole cloud ``points`` is a tile of, so that the block
            features and the block grid are those the whole cloud would give; None: the frame
            of ``points``.
        lidar: the points' ``intensity``, ``range``, ``height``, ``sensor_x``, ``sensor_y`` (N,) float32
            for a model with LiDAR channels and ``multiscale`` (N, F) float32 for a model that takes
            them (``pcseg.inputs.room_fields``), or None.

    Returns:
        logits: (N, num_classes) float32, averaged over the blocks.
        labels: (N,) int64.
    """
    if frame is None:
        frame = room_frame(points) if len(points) else (np.zeros(3), np.zeros(3))
    low, extent = frame
    # column-major coordinates: block_chunks reads one column at a time
    room = {"coord": np.asfortranarray(to_local(points, low)), "color": colors, **(lidar or {})}
    return predict_room(
        room,
        make_block_predictor(model, data, device, amp_dtype),
        data.num_classes,
        block_size=data.block_size,
        stride=data.eval_stride,
        num_points=data.num_points,
        batch_size=batch_size,
        seed=seed,
        real_counts=True,
        frame=(np.zeros(3), extent),
        min_overlap_points=data.num_points,
    )


def iter_tiles(
    points: np.ndarray,
    max_points: int = 300_000,
    max_extent: float = 10.0,
    margin: float = 1.0,
    min_width: float | None = None,
    seed: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Cuts a cloud into tiles of bounded size (see the module docstring).

    A tile is split in halves along its longer xy side while it spans more than
    ``max_extent`` metres, or while its context (the points within ``margin`` of its xy
    rectangle) exceeds ``max_points`` and it is wider than ``min_width``. A tile that narrow
    whose context is still too large is dealt at random into
    ``ceil(len(context) / max_points)`` parts of its context, each with the tile points dealt
    to it as its core.

    Args:
        points: (N, 3) float coordinates in metres.
        max_points: the most points of a context.
        max_extent: the widest tile in metres.
        margin: the context's margin around a tile in metres (one block).
        min_width: the narrowest tile that is still split (default ``margin``).
        seed: the seed of the dealing into parts.

    Yields:
        core: sorted int64 indices into ``points``; every point is in exactly one non-empty core.
        context: sorted int64 indices, the core and its margin, at most ``max_points`` of them.

    Raises:
        ValueError: when ``max_points < 1``, ``max_extent <= 0`` or ``margin < 0``.
    """
    if max_points < 1 or max_extent <= 0 or margin < 0:
        raise ValueError(
            f"max_points must be >= 1, max_extent > 0 and margin >= 0, got {max_points}, {max_extent}, {margin}"
        )
    min_width = margin if min_width is None else min_width
    xy = np.asarray(points)[:, :2]
    if len(xy) == 0:
        return
    rng = np.random.default_rng(seed)
    all_idx = np.arange(len(xy))
    lo, hi = xy.min(0).astype(np.float64), xy.max(0).astype(np.float64)
    stack = [(all_idx, all_idx, lo, hi)]
    while stack:
        core, context, lo, hi = stack.pop()
        if len(core) == 0:
            continue
        extent = hi - lo
        axis = int(np.argmax(extent))
        too_dense = len(context) > max_points
        if extent[axis] > max_extent or (too_dense and extent[axis] > min_width):
            mid = (lo[axis] + hi[axis]) / 2.0
            for lower in (True, False):
                sub_lo, sub_hi = lo.copy(), hi.copy()
                if lower:
                    sub_hi[axis] = mid
                    in_core = xy[core, axis] < mid
                else:
                    sub_lo[axis] = mid
                    in_core = xy[core, axis] >= mid
                c = xy[context, axis]
                in_context = (c >= sub_lo[axis] - margin) & (c <= sub_hi[axis] + margin)
                stack.append((core[in_core], context[in_context], sub_lo, sub_hi))
        elif too_dense:
            yield from _deal_into_parts(core, context, max_points, rng)
        else:
            yield core, context


def _deal_into_parts(
    core: np.ndarray, context: np.ndarray, max_points: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Deals the sorted ``context`` round-robin in a random order into parts of at most
    ``max_points`` points; yields each part with the ``core`` points dealt to it."""
    parts = -(-len(context) // max_points)
    order = rng.permutation(len(context))
    part_of = np.empty(len(context), dtype=np.int64)
    part_of[order] = np.arange(len(context)) % parts  # part p: order[p::parts]
    core_part = part_of[np.searchsorted(context, core)]
    # group once (stable: each group stays sorted) instead of scanning everything per part
    core_groups = np.split(
        core[np.argsort(core_part, kind="stable")], np.cumsum(np.bincount(core_part, minlength=parts))[:-1]
    )
    for part, part_core in enumerate(core_groups):
        if len(part_core):  # a narrow tile's few points may miss some parts
            yield part_core, context[np.sort(order[part::parts])]


def min_tile_width(block_size: float, num_points: int, max_tile_points: int) -> float:
    """The narrowest tile ``segment_cloud`` splits to.

    A tile this wide with its one-block margin, dealt into parts of ``max_tile_points``, still
    gives every part ``num_points`` points per block area where the cloud has more than that
    (so parts see blocks as dense as the model's inputs), and needs no parts where it has
    fewer. At least one block: narrower tiles would mostly predict their margin.

    Args:
        block_size: the block's side in metres.
        num_points: points per block fed to the model.
        max_tile_points: the most points of a tile's context.

    Returns:
        width: in metres.
    """
    blocks_across = math.sqrt(max_tile_points / num_points)  # a square context of this many blocks
    return block_size * max(1.0, blocks_across - 2.0)


def check_colors(colors: np.ndarray | None, n: int) -> np.ndarray:
    """Validates the colours of a cloud of ``n`` points.

    Args:
        colors: (n, 3) float in [0, 1] or uint8 0..255; None: mid grey.
        n: the number of points.

    Returns:
        colors: (n, 3) uint8 as given, or float32 in [0, 1].

    Raises:
        ValueError: naming ``colors`` when its shape differs, it holds NaN or inf, floats lie
            outside [0, 1] (floats in 0..255 are named as such) or its dtype is neither a
            float nor uint8.
    """
    if colors is None:
        return np.full((n, 3), 0.5, dtype=np.float32)
    colors = np.asarray(colors)
    if colors.shape != (n, 3):
        raise ValueError(f"colors must be ({n}, 3) like the points, got {colors.shape}")
    return check_color_values(colors, "colors")


def check_votes(votes, name: str = "votes") -> None:
    """Raises a ValueError naming ``name`` unless ``votes`` (test-time votes) is an int >= 1."""
    if isinstance(votes, bool) or not isinstance(votes, int) or votes < 1:
        raise ValueError(f"{name} must be an int >= 1, got {votes!r}")


def turn_about_z(xy: np.ndarray, angle: float, centre: np.ndarray) -> np.ndarray:
    """Coordinates turned by ``angle`` radians about the vertical axis through ``centre``.

    Args:
        xy: (N, D) float coordinates, D >= 2: x and y first (a z column is kept as it is).
        angle: radians, counter-clockwise seen from above.
        centre: (2,) float x and y of the axis.

    Returns:
        turned: (N, D) float64 copy.
    """
    turned = np.array(xy, dtype=np.float64)
    cos, sin = math.cos(angle), math.sin(angle)
    x, y = turned[:, 0] - centre[0], turned[:, 1] - centre[1]
    turned[:, 0] = cos * x - sin * y + centre[0]
    turned[:, 1] = sin * x + cos * y + centre[1]
    return turned


def vote_turns(points: np.ndarray, votes: int, about_origin: bool) -> Iterator[np.ndarray]:
    """The clouds of test-time voting: ``points`` itself, then turned about the vertical axis by
    ``360 * i / votes`` degrees for i = 1 .. votes - 1 (``turn_about_z``).

    Args:
        points: (N, 3) float coordinates, z up.
        votes: the number of clouds, >= 1.
        about_origin: turn about the axis through the origin (a LiDAR's sensor frame: range,
            height and the sensor-frame channels stay what the sensor measured); False: about
            the axis through the centre of the cloud's xy bounds.

    Yields:
        cloud: (N, 3) float64 (the first: ``points`` as given).
    """
    yield points
    if votes < 2 or len(points) == 0:
        return
    xy = np.asarray(points)[:, :2]
    centre = np.zeros(2) if about_origin else (xy.min(0) + xy.max(0)) / 2
    for i in range(1, votes):
        yield turn_about_z(points, 2 * math.pi * i / votes, centre)


def segment_cloud(
    model: torch.nn.Module,
    cfg: Config,
    points: np.ndarray,
    colors: np.ndarray | None,
    device="cpu",
    amp_dtype: torch.dtype | None = None,
    keep_probabilities: bool = True,
    max_tile_points: int = 300_000,
    max_tile_extent: float | None = None,
    batch_size: int = 16,
    progress: bool = False,
    intensity: np.ndarray | None = None,
    votes: int = 1,
) -> dict:
    """Segments a cloud of any size, tile by tile (see the module docstring).

    The cloud's lowest corner is subtracted in float64 first, so the result is the same
    wherever the cloud lies (map frames at millions of metres included).

    Args:
        model: a pcseg segmentation model in eval mode.
        cfg: its config.
        points: (N, 3) float coordinates in metres, any frame (float64 keeps map coordinates);
            for a model with a range channel (``data.use_range``), the sensor's frame.
        colors: (N, 3) float in [0, 1] or uint8 0..255; None: mid grey, with a warning when
            the model was trained with colour.
        device: where the model runs.
        amp_dtype: the autocast dtype, or None for float32.
        keep_probabilities: False leaves out the (N, C) probabilities (saves N * C floats).
        max_tile_points: the most points of a tile's context predicted at once (bounds memory).
        max_tile_extent: the widest tile in metres; None: no limit (the cost follows the
            points, so ``max_tile_points`` alone bounds a tile).
        batch_size: blocks of ``num_points`` per forward pass.
        progress: report the points done (``pcseg.utils.progress``).
        intensity: (N,) raw intensity / remission for a model with an intensity channel
            (``data.use_intensity``; divided by ``data.intensity_scale``), or None.
        votes: predictions averaged (test-time voting, as KPConv and RandLA-Net score their
            scans): the cloud is turned about the vertical axis by ``360 / votes`` degrees
            between passes (``vote_turns``), so each pass sees other blocks and other voxel grids,
            and the probabilities are averaged. Costs ``votes`` passes.

    Returns:
        result: ``{"labels": (N,) int64, "confidence": (N,) float32 (the winning probability),
        "probabilities": (N, C) float32 or None}``.

    Raises:
        ValueError: when ``points`` is not (N, 3) or holds NaN or inf, ``colors`` fails
            ``check_colors``, ``intensity`` is missing for a model that takes it or does
            not match the points, or ``votes`` is not an int >= 1.
    """
    check_votes(votes)
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be an (N, 3) array, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points contain NaN or inf; drop them before predict")
    n = len(points)
    if colors is None and cfg.data.use_color:
        warnings.warn(
            "the model was trained with colour (data.use_color) but the cloud has none: every point is "
            "given mid grey, which it never saw in training; expect worse labels",
            UserWarning,
            stacklevel=2,
        )
    colors = check_colors(colors, n)
    lidar = room_fields(points, intensity, cfg.data)
    c = cfg.data.num_classes
    labels = np.zeros(n, dtype=np.int64)
    confidence = np.zeros(n, dtype=np.float32)
    probabilities = np.zeros((n, c), dtype=np.float32) if keep_probabilities or votes > 1 else None
    if n == 0:
        return {
            "labels": labels,
            "confidence": confidence,
            "probabilities": probabilities if keep_probabilities else None,
        }
    with progress_bar(total=n * votes, desc="segmenting", unit="pt", enabled=progress) as bar:
        for vote, cloud in enumerate(vote_turns(points, votes, about_origin=cfg.data.lidar)):
            fields = lidar if vote == 0 else room_fields(cloud, intensity, cfg.data)
            local = to_local(cloud)  # from here on everything is relative to the cloud's lowest corner
            frame = room_frame(local)
            tiles = iter_tiles(
                local,
                max_tile_points,
                max_tile_extent or math.inf,
                cfg.data.block_size,
                min_tile_width(cfg.data.block_size, cfg.data.num_points, max_tile_points),
            )
            for core, context in tiles:
                logits, _ = predict_tile(
                    model,
                    cfg.data,
                    local[context],
                    colors[context],
                    device,
                    amp_dtype,
                    batch_size=batch_size,
                    frame=frame,
                    lidar={key: value[context] for key, value in fields.items()},
                )
                # rows of the core points within the context (context is sorted ascending)
                rows = np.searchsorted(context, core)
                probs = torch.softmax(torch.from_numpy(logits[rows]), dim=1).numpy()
                if votes > 1:
                    probabilities[core] += probs / votes
                else:
                    labels[core] = probs.argmax(1)
                    confidence[core] = probs.max(1)
                    if probabilities is not None:
                        probabilities[core] = probs
                bar.update(len(core))
    if votes > 1:
        labels, confidence = probabilities.argmax(1), probabilities.max(1)
        probabilities = probabilities if keep_probabilities else None
    return {"labels": labels, "confidence": confidence, "probabilities": probabilities}


def predict_file(
    input_path: str | Path,
    checkpoint: str | Path,
    out_path: str | Path,
    device: str = "cpu",
    progress: bool = True,
    max_tile_points: int = 300_000,
    input_format: str | None = None,
    votes: int = 1,
) -> dict:
    """``pcseg predict``: segments a point-cloud file with a checkpoint's model.

    Args:
        input_path: a cloud in a ``pcseg.io.read_point_cloud`` format.
        checkpoint: a checkpoint written by ``pcseg train``.
        out_path: the output; its suffix picks the writer (``pcseg.io.write_predictions``:
            .ply .pcd .las .laz .label .npy; see `prediction_classes` for colours, the
            SemanticKITTI raw ids of ``.label`` and the LAS classification codes).
        device: where the model runs.
        progress: report the points done.
        max_tile_points: the most points of a tile's context predicted at once.
        input_format: one of ``pcseg.io.INPUT_FORMATS`` for an ambiguous suffix; None: from the suffix.
        votes: test-time votes (``segment_cloud``); 1: one pass.

    Returns:
        summary: input, out, points, seconds, points_per_s and label_counts (printed by the CLI).

    Raises:
        ValueError: naming the file when ``out_path``'s suffix has no writer, the input holds no
            points, or ``.label`` is asked of a checkpoint without a raw-id map.
    """
    from pcseg.checkpoint import model_from_checkpoint

    out_path = Path(out_path)
    _check_prediction_suffix(out_path)
    model, cfg, _ = model_from_checkpoint(checkpoint, device)
    classes = prediction_classes(cfg, [out_path.suffix.lower()])
    return _predict_one(
        model, cfg, classes, input_path, out_path, device, progress, max_tile_points, input_format, votes
    )


def predict_folder(
    input_dir: str | Path,
    checkpoint: str | Path,
    out_dir: str | Path,
    out_format: str = "ply",
    device: str = "cpu",
    progress: bool = True,
    max_tile_points: int = 300_000,
    input_format: str | None = None,
    votes: int = 1,
) -> list[dict]:
    """``pcseg predict DIR --out DIR``: segments every cloud under a folder, one output file each.

    The model is loaded once. Outputs mirror the input tree with the suffix replaced by
    `out_format`; a ``velodyne`` folder becomes ``predictions`` (SemanticKITTI's submission
    layout: ``sequences/08/velodyne/000000.bin`` -> ``sequences/08/predictions/000000.label``).
    Each output is written atomically when its cloud is done, so a failure stops at that file
    and leaves the outputs already written intact.

    Args:
        input_dir: the folder, searched recursively for files of a readable suffix (of
            `input_format` only, when given).
        checkpoint: a checkpoint written by ``pcseg train``.
        out_dir: the output folder (created).
        out_format: the writer, a suffix of ``pcseg.io.PREDICTION_SUFFIXES`` without its dot.
        device: where the model runs.
        progress: one progress line per file (``pcseg.utils.progress``).
        max_tile_points: the most points of a tile's context predicted at once.
        input_format: one of ``pcseg.io.INPUT_FORMATS``; None: each file's from its suffix.
        votes: test-time votes (``segment_cloud``); 1: one pass.

    Returns:
        summaries: one `predict_file` summary per file, in sorted order.

    Raises:
        FileNotFoundError: when `input_dir` is not a folder or holds no readable cloud.
        ValueError: naming the file that could not be read or segmented, or a bad `out_format`.
    """
    from pcseg.checkpoint import model_from_checkpoint
    from pcseg.io import list_point_clouds

    inputs = list_point_clouds(input_dir, input_format)
    suffix = "." + out_format.lower().lstrip(".")
    _check_prediction_suffix(Path("out" + suffix))
    model, cfg, _ = model_from_checkpoint(checkpoint, device)
    classes = prediction_classes(cfg, [suffix])
    summaries = []
    for path in progress_bar(inputs, desc="predicting", unit="file", enabled=progress):
        out = Path(out_dir) / _output_name(path.relative_to(input_dir), suffix)
        summaries.append(
            _predict_one(model, cfg, classes, path, out, device, False, max_tile_points, input_format, votes)
        )
    return summaries


def prediction_classes(cfg: Config, suffixes: list[str] = ()) -> dict:
    """How a checkpoint's classes are written: colours, SemanticKITTI raw ids, LAS codes.

    - colours: S3DIS's for 13-class indoor data, a folder data set's ``classes.yaml``
      ``colors``, else ``pcseg.io.default_palette``;
    - ``learning_map_inv`` (``.label``): SemanticKITTI's from ``data.label_config``, or the
      inverse of a folder data set's ``label_map``;
    - ``las_class_map`` (``.las`` / ``.laz``): a folder data set's raw ids when its
      ``label_map`` maps raw ids 0..255 (a data set read from LAS classification gets its own
      codes back), else class i is written as code i.

    Args:
        cfg: the checkpoint's config.
        suffixes: the output suffixes that will be written (a missing map is an error only
            for these).

    Returns:
        classes: {"palette": (C, 3) uint8, "learning_map_inv": dict or None,
        "las_class_map": (C,) int64 or None}.

    Raises:
        ValueError: when ``.label`` is asked and the checkpoint's data set has no raw-id map.
    """
    from pcseg.data import S3DIS_CLASS_COLORS
    from pcseg.io import default_palette

    num_classes = cfg.data.num_classes
    palette = (
        np.asarray(S3DIS_CLASS_COLORS, dtype=np.uint8)
        if num_classes == len(S3DIS_CLASS_COLORS)
        else default_palette(num_classes)
    )
    inverse = las_map = None
    if cfg.data.dataset == "semantickitti" and cfg.data.label_config:
        from pcseg.data.kitti import SemanticKittiConfig

        inverse = SemanticKittiConfig.from_yaml(cfg.data.label_config).learning_map_inv
    elif cfg.data.dataset == "folder":
        from pcseg.data.folder import read_classes

        classes = read_classes(cfg.data, required=False)
        if classes is not None:
            palette = classes.palette(num_classes)
            inverse = classes.inverse_map()
            if inverse and all(0 <= raw <= 255 for raw in inverse.values()):
                las_map = np.array([inverse.get(i, 0) for i in range(num_classes)], dtype=np.int64)
    if ".label" in suffixes and inverse is None:
        raise ValueError(
            f"a SemanticKITTI .label output needs raw ids: the checkpoint's data set "
            f"({cfg.data.dataset}) has no learning_map_inv (data.label_config) or classes.yaml label_map"
        )
    return {"palette": palette, "learning_map_inv": inverse, "las_class_map": las_map}


def _check_prediction_suffix(out_path: Path) -> None:
    from pcseg.io import PREDICTION_SUFFIXES

    if out_path.suffix.lower() not in PREDICTION_SUFFIXES:
        raise ValueError(f"--out {out_path}: the suffix must be one of {' '.join(PREDICTION_SUFFIXES)}")


def _output_name(relative: Path, suffix: str) -> Path:
    parts = ["predictions" if part == "velodyne" else part for part in relative.parent.parts]
    name = relative.name[: -len(".pcd.bin")] if relative.name.lower().endswith(".pcd.bin") else relative.stem
    return Path(*parts, name + suffix)


def _predict_one(
    model: torch.nn.Module,
    cfg: Config,
    classes: dict,
    input_path: str | Path,
    out_path: Path,
    device: str,
    progress: bool,
    max_tile_points: int,
    input_format: str | None,
    votes: int = 1,
) -> dict:
    """Reads one cloud, segments it and writes `out_path`; errors name `input_path`."""
    from pcseg.io import model_colors, read_point_cloud, write_predictions

    cloud = read_point_cloud(input_path, input_format)
    colors = model_colors(cloud, input_path) if cfg.data.use_color else None
    start = time.perf_counter()
    try:
        result = segment_cloud(
            model,
            cfg,
            cloud["coord"],
            colors,
            device,
            keep_probabilities=False,
            max_tile_points=max_tile_points,
            progress=progress,
            intensity=cloud.get("intensity"),
            votes=votes,
        )
    except ValueError as error:
        raise ValueError(f"{input_path}: {error}") from None
    seconds = time.perf_counter() - start
    write_predictions(
        out_path,
        cloud["coord"],
        result["labels"],
        result["confidence"],
        classes["palette"],
        num_classes=cfg.data.num_classes,
        learning_map_inv=classes["learning_map_inv"],
        las_class_map=classes["las_class_map"],
    )
    counts = np.bincount(result["labels"], minlength=cfg.data.num_classes)
    return {
        "input": str(input_path),
        "out": str(out_path),
        "points": int(len(cloud["coord"])),
        "seconds": seconds,
        "points_per_s": len(cloud["coord"]) / max(seconds, 1e-9),
        "label_counts": counts.tolist(),
    }
