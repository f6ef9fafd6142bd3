"""``pcseg export``: ONNX (through onnxruntime) and TorchScript reproduce the torch model on the
blocks ``pcseg predict`` cuts from a generated room and from the real S3DIS sample; the export's
metadata, errors and atomic write; the README's numpy-only export example runs."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pcseg.checkpoint import model_from_checkpoint
from pcseg.cli import main
from pcseg.data import S3DIS_CLASS_NAMES, generate_room
from pcseg.data.blocks import block_features, room_frame
from pcseg.export import export_checkpoint, export_model, model_inputs, room_block_features
from pcseg.inputs import block_inputs, input_normals

ort = pytest.importorskip("onnxruntime")

README = Path(__file__).resolve().parents[1] / "README.md"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def acnn_checkpoint(checkpoint, tmp_path_factory) -> Path:
    """`best.pt` of a tiny A-CNN trained like the session's tiny PointNet (its config, one epoch
    on generated rooms), with the block preset."""
    from pcseg.checkpoint import load_checkpoint
    from pcseg.config import config_from_dict
    from pcseg.train import train

    cfg = config_from_dict(load_checkpoint(checkpoint)["config"])
    cfg.model.name, cfg.model.block_preset = "acnn", True
    cfg.train.out_dir = str(tmp_path_factory.mktemp("tiny_acnn") / "run")
    train(cfg, rooms=([generate_room(0, 3000)], [generate_room(100, 3000)]), progress=False)
    return Path(cfg.train.out_dir) / "best.pt"


def s3dis_sample(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """The real S3DIS sample's (100, 3) xyz and (100, 3) uint8 colours."""
    folder = shared_data / "s3dis" / "mmdet3d_sample" / "points"
    points = np.fromfile(folder / "Area_1_office_2.bin", dtype=np.float32).reshape(-1, 6)
    return points[:, :3], points[:, 3:6].astype(np.uint8)


def torch_logits(model, data, blocks: torch.Tensor) -> np.ndarray:
    """The checkpoint's model on blocks, called as ``pcseg predict`` calls it: (K, C, P)."""
    with torch.no_grad():
        points, features = block_inputs(blocks, data)
        return model(points, features, normals=input_normals(features, data)).numpy()


def exported_logits(path: Path, fmt: str, model, data, blocks: torch.Tensor) -> np.ndarray:
    inputs = model_inputs(model, data, blocks)
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == list(inputs)
        return session.run(None, {name: t.numpy() for name, t in inputs.items()})[0]
    with torch.no_grad():
        return torch.jit.load(str(path))(*inputs.values()).numpy()


def check_reproduces(checkpoint: Path, tmp_path: Path, shared_data: Path) -> None:
    model, cfg, _ = model_from_checkpoint(checkpoint)
    room = generate_room(7, 3000)
    clouds = {"generated room": (room["coord"], room["color"]), "S3DIS sample": s3dis_sample(shared_data)}
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt")):
        out = tmp_path / f"model{suffix}"
        assert main(["export", "--checkpoint", str(checkpoint), "--format", fmt, "--out", str(out)]) == 0
        for name, (points, colors) in clouds.items():
            blocks = room_block_features(cfg.data, points, colors)
            # several batch sizes and a point count other than the traced one: the axes are free
            for batch in (blocks[:1], blocks[:5], blocks[:3, :100]):
                expected = torch_logits(model, cfg.data, batch)
                got = exported_logits(out, fmt, model, cfg.data, batch)
                assert got.shape == expected.shape, (fmt, name)
                np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0, err_msg=f"{fmt} on {name}")


def test_pointnet_exports_reproduce_torch_on_real_blocks(checkpoint, tmp_path, shared_data):
    check_reproduces(checkpoint, tmp_path, shared_data)


def test_acnn_learned_part_exports_reproduce_torch_on_real_blocks(acnn_checkpoint, tmp_path, shared_data):
    check_reproduces(acnn_checkpoint, tmp_path, shared_data)


def test_onnx_metadata_tells_what_to_feed(checkpoint, tmp_path):
    out = tmp_path / "model.onnx"
    summary = export_checkpoint(checkpoint, out, "onnx")
    meta = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert meta == summary["metadata"]
    assert json.loads(meta["class_names"]) == list(S3DIS_CLASS_NAMES)
    assert meta["num_classes"] == "13" and meta["block_size"] == "2.0" and meta["num_points"] == "128"
    channels = json.loads(meta["feature_channels"])
    assert meta["in_channels"] == str(len(channels)) == "10" and channels[:3] == ["red", "green", "blue"]
    assert json.loads(meta["inputs"]) == ["points", "features"]
    assert "features (B, P, 10)" in meta["input_contract"]


def test_torchscript_carries_the_same_metadata(checkpoint, tmp_path):
    out = tmp_path / "model.pt"
    summary = export_checkpoint(checkpoint, out, "torchscript")
    extra = {"pcseg.json": ""}
    torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["pcseg.json"]) == summary["metadata"]


def test_acnn_graph_takes_the_neighbourhoods_as_inputs(acnn_checkpoint, tmp_path):
    summary = export_checkpoint(acnn_checkpoint, tmp_path / "acnn.onnx", "onnx")
    names = summary["inputs"]
    assert names[:3] == ["points", "features", "normals"]
    assert {"centres_0", "rings_0_0", "rings_0_1", "interp_index_1", "interp_weight_1"} <= set(names)


def test_unknown_format_is_a_clear_cli_error(checkpoint, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "tflite", "--out", str(tmp_path / "m")]) == 2
    assert "unknown export format 'tflite'; choose one of onnx, torchscript" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_that_cannot_be_loaded(tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    assert main(["export", "--checkpoint", str(missing), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert f"checkpoint not found: {missing}" in capsys.readouterr().err
    torn = tmp_path / "torn.pt"
    torn.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=f"cannot load checkpoint {re.escape(str(torn))}"):
        export_checkpoint(torn, tmp_path / "m.onnx", "onnx")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match="not a pcseg checkpoint"):
        export_checkpoint(foreign, tmp_path / "m.onnx", "onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_output_folder_that_is_a_file(checkpoint, tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ValueError, match="output folder .*taken is a file"):
        export_checkpoint(checkpoint, tmp_path / "taken" / "sub" / "model.onnx", "onnx")
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        export_checkpoint(checkpoint, tmp_path, "onnx")


def test_failed_export_leaves_no_file(checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous export")

    def fail(*args, **kwargs):
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", fail)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_checkpoint(checkpoint, out, "onnx")
    assert out.read_bytes() == b"previous export" and sorted(tmp_path.iterdir()) == [out]


def test_acnn_classification_is_refused(tmp_path):
    from pcseg.config import load_config
    from pcseg.models import ACNNCls

    with pytest.raises(ValueError, match="cannot export a ACNNCls"):
        export_model(ACNNCls(num_classes=4), load_config(None, []), tmp_path / "m.onnx")


@pytest.mark.parametrize("setting", ["data.multiscale_features=true", "data.use_intensity=true", "data.use_range=true"])
def test_models_with_more_than_the_block_features_are_refused(setting, tmp_path):
    from pcseg.checkpoint import build_model_from_config
    from pcseg.config import load_config

    cfg = load_config(None, [setting, "model.width_multiplier=0.125"])
    with pytest.raises(ValueError, match="cannot be exported yet"):
        export_model(build_model_from_config(cfg), cfg, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def docs_example() -> str:
    """The one Python example of the README's Export section."""
    text = README.read_text()
    start = text.index("## Export: ONNX and TorchScript")
    section = text[start : text.index("\n## ", start + 1)]
    examples = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(examples) == 1
    return examples[0]


def test_docs_example_runs_with_numpy_and_onnxruntime(checkpoint, tmp_path, monkeypatch):
    code = docs_example()
    imports = set(re.findall(r"^(?:import|from) (\w+)", code, flags=re.M))
    assert imports == {"json", "numpy", "onnxruntime"}
    room = generate_room(3, 3000)
    monkeypatch.chdir(tmp_path)
    export_checkpoint(checkpoint, "model.onnx", "onnx")
    np.save("cloud.npy", np.concatenate([room["coord"], room["color"]], 1).astype(np.float32))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    labels = namespace["labels"]
    assert labels.shape == (3000,) and labels.dtype == np.int64 and labels.max() < 13

    # its chunk inputs are pcseg's for the same chunk
    model, cfg, _ = model_from_checkpoint(checkpoint)
    chunk = np.random.default_rng(0).choice(3000, size=cfg.data.num_points, replace=False)
    xyz, rgb = room["coord"].astype(np.float64), room["color"] / 255.0
    low, extent = room_frame(xyz)
    expected = block_features(xyz[chunk], room["color"][chunk], cfg.data.block_size, low, extent)
    points, features = block_inputs(torch.from_numpy(expected)[None], cfg.data)
    got = namespace["chunk_inputs"](xyz[chunk], rgb[chunk], low, np.where(extent > 0, extent, 1.0))
    np.testing.assert_allclose(got["points"], points.numpy(), atol=1e-5)
    np.testing.assert_allclose(got["features"], features.numpy(), atol=1e-4)


@pytest.mark.parametrize(
    "name, options",
    [
        ("pointnet", ["data.use_color=false", "data.geometric_features=false"]),  # T-Nets, no feature input
        ("acnn", ["data.use_color=false", "data.geometric_features=false"]),  # a global level, estimated normals
        ("acnn", ["data.room_coords=true", "model.block_preset=true"]),
    ],
)
def test_every_model_variant_exports(name, options, tmp_path):
    """Untrained variants the tiny checkpoints do not cover, on a generated room's blocks."""
    from pcseg.checkpoint import build_model_from_config
    from pcseg.config import load_config

    cfg = load_config(
        None,
        [
            f"model.name={name}",
            "data.num_points=128",
            "data.block_size=2.0",
            "data.eval_stride=2.0",
            "model.width_multiplier=0.125",
            *options,
        ],
    )
    torch.manual_seed(0)
    model = build_model_from_config(cfg).eval()
    room = generate_room(5, 2000)
    blocks = room_block_features(cfg.data, room["coord"], room["color"])[:4]
    expected = torch_logits(model, cfg.data, blocks)
    for fmt in ("onnx", "torchscript"):
        summary = export_model(model, cfg, tmp_path / f"model.{fmt}", fmt)
        assert ("features" in summary["inputs"]) == bool(model.in_channels)
        got = exported_logits(tmp_path / f"model.{fmt}", fmt, model, cfg.data, blocks)
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0, err_msg=fmt)
