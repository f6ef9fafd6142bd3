"""`pcseg predict`: every output format, whole folders, LiDAR intensity as colour, empty inputs."""

import numpy as np
import pytest

from pcseg.cli import main
from pcseg.io import read_point_cloud


def _cloud_file(path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    np.save(path, np.concatenate([rng.uniform(0, 2, (n, 3)), rng.uniform(0, 1, (n, 3))], 1).astype(np.float32))
    return path


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("pcseg predict: error: "), lines
    return lines[-1]


@pytest.mark.parametrize("suffix", [".ply", ".pcd", ".las", ".laz", ".npy"])
def test_predict_writes_the_format_of_the_suffix(checkpoint, tmp_path, suffix, capsys):
    cloud = _cloud_file(tmp_path / "cloud.npy")
    out = tmp_path / f"pred{suffix}"
    assert main(["predict", str(cloud), "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    assert f"wrote {out}: 300 points" in capsys.readouterr().out
    reference = tmp_path / "reference.npy"
    assert main(["predict", str(cloud), "--checkpoint", str(checkpoint), "--out", str(reference)]) == 0
    labels = np.load(reference)
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(out), labels)
        return
    written = read_point_cloud(out)
    np.testing.assert_allclose(written["coord"], np.load(cloud)[:, :3], atol=1e-3)
    # LAS keeps the label as its classification code (class i -> code i without a class map)
    np.testing.assert_array_equal(written["classification"] if suffix in (".las", ".laz") else written["label"], labels)


def test_label_output_needs_a_raw_id_map(checkpoint, tmp_path, capsys):
    cloud = _cloud_file(tmp_path / "cloud.npy")
    assert main(["predict", str(cloud), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "p.label")]) == 2
    assert "learning_map_inv" in _error_line(capsys)
    assert not (tmp_path / "p.label").exists()


def test_predict_a_folder(checkpoint, tmp_path, capsys):
    source = tmp_path / "scans"
    (source / "a").mkdir(parents=True)
    _cloud_file(source / "one.npy", seed=1)
    _cloud_file(source / "a" / "two.npy", 200, seed=2)
    (source / "notes.md").write_text("not a cloud")
    out = tmp_path / "out"
    assert (
        main(["predict", str(source), "--checkpoint", str(checkpoint), "--out", str(out), "--out-format", "pcd"]) == 0
    )
    captured = capsys.readouterr()
    assert f"wrote 2 files under {out}: 500 points" in captured.out
    assert "predicting" in captured.err  # one progress line per file
    assert len(read_point_cloud(out / "one.pcd")["coord"]) == 300
    assert len(read_point_cloud(out / "a" / "two.pcd")["coord"]) == 200


def test_folder_error_names_the_file_and_keeps_earlier_outputs(checkpoint, tmp_path, capsys):
    source = tmp_path / "scans"
    source.mkdir()
    _cloud_file(source / "a.npy")
    (source / "b.npy").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["predict", str(source), "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert f"{source / 'b.npy'}: the file is empty" in _error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["a.ply"]


def test_folder_checks(checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(empty), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]) == 2
    assert f"input folder {empty} holds no point clouds" in _error_line(capsys)
    assert (
        main(
            [
                "predict",
                str(empty),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "o"),
                "--out-format",
                "xyz",
            ]
        )
        == 2
    )
    assert "--out-format must be one of" in _error_line(capsys)
    cloud = _cloud_file(tmp_path / "cloud.npy")
    assert (
        main(
            [
                "predict",
                str(cloud),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "o.ply"),
                "--input-format",
                "nope",
            ]
        )
        == 2
    )
    assert "--input-format must be one of" in _error_line(capsys)


@pytest.mark.parametrize("array", [None, np.zeros((0, 3), np.float32)], ids=["zero_bytes", "no_points"])
def test_empty_npy_is_an_error_naming_the_file(checkpoint, tmp_path, capsys, array):
    path = tmp_path / "empty.npy"
    if array is None:
        path.write_bytes(b"")
    else:
        np.save(path, array)
    assert main(["predict", str(path), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o.npy")]) == 2
    line = _error_line(capsys)
    assert str(path) in line and ("empty" in line or "no points" in line)
    assert not (tmp_path / "o.npy").exists()


def test_lidar_intensity_stands_in_for_colour(checkpoint, tmp_path, monkeypatch, caplog):
    import pcseg.predict

    rng = np.random.default_rng(0)
    scan = np.concatenate([rng.uniform(-5, 5, (400, 3)), rng.uniform(0, 1, (400, 1))], 1).astype(np.float32)
    scan.tofile(tmp_path / "000000.bin")
    seen = {}
    segment = pcseg.predict.segment_cloud

    def spy(model, cfg, points, colors, *args, **kwargs):
        seen["colors"] = colors
        return segment(model, cfg, points, colors, *args, **kwargs)

    monkeypatch.setattr(pcseg.predict, "segment_cloud", spy)
    with caplog.at_level("INFO"):
        assert (
            main(
                [
                    "predict",
                    str(tmp_path / "000000.bin"),
                    "--checkpoint",
                    str(checkpoint),
                    "--out",
                    str(tmp_path / "p.npy"),
                ]
            )
            == 0
        )
    # what read_point_cloud gave models before it returned intensity: the remission as grey
    np.testing.assert_array_equal(seen["colors"], np.repeat(np.clip(scan[:, 3:4], 0, 1), 3, 1))
    assert "intensity as grey colour" in caplog.text


def test_semantickitti_label_holds_raw_ids(checkpoint, tmp_path, shared_data):
    """A SemanticKITTI checkpoint's ``.label`` output: raw ids through ``learning_map_inv``."""
    import torch

    from pcseg.checkpoint import load_checkpoint
    from pcseg.data.kitti import SemanticKittiConfig, read_label_file

    label_config = shared_data / "semantickitti" / "semantic-kitti.yaml"
    saved = load_checkpoint(checkpoint)
    saved["config"]["data"].update(dataset="semantickitti", root=str(tmp_path), label_config=str(label_config))
    kitti_checkpoint = tmp_path / "kitti.pt"
    torch.save(saved, kitti_checkpoint)
    scan = np.fromfile(shared_data / "semantickitti" / "000000.bin", dtype="<f4").reshape(-1, 4)[:3000]
    scan.tofile(tmp_path / "000000.bin")
    for out in ("p.label", "p.npy"):
        assert (
            main(
                [
                    "predict",
                    str(tmp_path / "000000.bin"),
                    "--checkpoint",
                    str(kitti_checkpoint),
                    "--out",
                    str(tmp_path / out),
                ]
            )
            == 0
        )
    semantic, instance = read_label_file(tmp_path / "p.label", 3000)
    inverse = SemanticKittiConfig.from_yaml(label_config).learning_map_inv
    np.testing.assert_array_equal(semantic, [inverse[label] for label in np.load(tmp_path / "p.npy")])
    assert not instance.any()
