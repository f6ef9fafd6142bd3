"""The pcseg command end to end on tiny settings: train -> eval -> predict, real scans, errors."""

import json

import numpy as np
import pytest

from pcseg.cli import main
from pcseg.data import generate_room
from pcseg.io import read_point_cloud, write_labelled_ply
from pcseg.segmenter import Segmenter
from pcseg.testing import TINY_TRAINING

TINY = [*TINY_TRAINING, "data.train_rooms=2", "data.val_rooms=1", "train.epochs=2"]


def sets(*items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny checkpoint trained through the CLI (shared by the tests of this file)."""
    root = tmp_path_factory.mktemp("cli")
    config = root / "tiny.yaml"
    config.write_text("model:\n  name: pointnet_sem_seg\n")
    assert main(["train", "--config", str(config), *sets(*TINY, f"train.out_dir={root / 'run'}")]) == 0
    return root, config


def test_train_writes_run_folder(trained):
    root, _ = trained
    for name in ("config.yaml", "best.pt", "last.pt", "log.jsonl", "log.csv", "curve.png"):
        assert (root / "run" / name).is_file(), name


def test_eval_prints_and_writes_metrics(trained, capsys):
    root, config = trained
    assert (
        main(
            [
                "eval",
                "--config",
                str(config),
                "--checkpoint",
                str(root / "run" / "best.pt"),
                "--out",
                str(root / "eval"),
                *sets(*TINY),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert f"mIoU {metrics['miou']:.3f}" in out and "ceiling" in out
    assert 0 <= metrics["miou"] <= 1 and set(metrics["iou"]) >= {"ceiling", "floor", "wall"}
    assert (root / "eval" / "confusion_matrix.png").stat().st_size > 1000


def test_eval_of_other_class_count_is_a_clear_error(trained, capsys):
    root, config = trained
    code = main(
        [
            "eval",
            "--config",
            str(config),
            "--checkpoint",
            str(root / "run" / "best.pt"),
            *sets(*TINY, "data.num_classes=5"),
        ]
    )
    assert code == 2
    assert "trained for 13 classes, the config asks for 5" in capsys.readouterr().err


def test_unknown_config_key_is_a_clear_error(trained, capsys):
    _, config = trained
    assert main(["train", "--config", str(config), "--set", "train.epoch=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown key train.epoch" in err and "'epochs'" in err


@pytest.mark.parametrize("suffix", [".ply", ".npy", ".pcd", ".txt"])
def test_predict_round_trip(trained, tmp_path, suffix):
    import open3d

    root, _ = trained
    room = generate_room(7, 5000)
    coord = room["coord"]
    source = tmp_path / f"room{suffix}"
    if suffix == ".npy":
        np.save(source, np.concatenate([coord, room["color"] / 255.0], 1))
    elif suffix == ".pcd":
        cloud = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(coord.astype(np.float64)))
        cloud.colors = open3d.utility.Vector3dVector(room["color"] / 255.0)
        assert open3d.io.write_point_cloud(str(source), cloud)
    elif suffix == ".txt":
        # an S3DIS room file: "x y z r g b" a line, millimetre coordinates, colours 0..255
        coord = np.round(coord.astype(np.float64), 3).astype(np.float32)
        np.savetxt(source, np.concatenate([coord, room["color"]], 1), fmt="%.3f %.3f %.3f %d %d %d")
    else:
        write_labelled_ply(source, coord, room["label"], np.asarray(room["color"][:13]))
    if suffix != ".ply":  # the labelled PLY's colours are the palette's, not the room's
        np.testing.assert_allclose(read_point_cloud(source)["color"], room["color"] / 255.0, atol=1e-6)
    out = tmp_path / "labelled.ply"
    assert main(["predict", str(source), "--checkpoint", str(root / "run" / "best.pt"), "--out", str(out)]) == 0
    cloud = open3d.io.read_point_cloud(str(out))
    assert len(cloud.points) == 5000
    np.testing.assert_allclose(np.asarray(cloud.points), coord, atol=1e-6)
    assert cloud.has_colors()
    vertex = _ply_labels(out, 5000)
    assert vertex["label"].min() >= 0 and vertex["label"].max() < 13
    assert read_point_cloud(out)["coord"].shape == (5000, 3)


def _ply_labels(path, count):
    """The int label property of pcseg's labelled PLY (header, then packed vertices)."""
    data = path.read_bytes()
    body = data[data.index(b"end_header\n") + len(b"end_header\n") :]
    vertex = np.frombuffer(body, dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3), ("label", "<i4"), ("confidence", "<f4")])
    assert len(vertex) == count
    return vertex


def test_predict_semantickitti_scan(trained, tmp_path, shared_data):
    import open3d

    root, _ = trained
    scan = shared_data / "semantickitti" / "000000.bin"
    out = tmp_path / "kitti.ply"
    assert main(["predict", str(scan), "--checkpoint", str(root / "run" / "best.pt"), "--out", str(out)]) == 0
    assert len(open3d.io.read_point_cloud(str(out)).points) == 124_668
    vertex = _ply_labels(out, 124_668)
    assert vertex["label"].min() >= 0 and vertex["label"].max() < 13
    assert ((vertex["confidence"] > 0) & (vertex["confidence"] <= 1)).all()
    raw = np.fromfile(scan, dtype="<f4").reshape(-1, 4)
    np.testing.assert_array_equal(vertex["xyz"], raw[:, :3])


def test_predict_sunrgbd_points(trained, tmp_path, shared_data):
    import open3d

    root, _ = trained
    out = tmp_path / "sun.ply"
    source = shared_data / "sunrgbd" / "votenet" / "depth" / "000001.mat"
    assert main(["predict", str(source), "--checkpoint", str(root / "run" / "best.pt"), "--out", str(out)]) == 0
    assert len(open3d.io.read_point_cloud(str(out)).points) == 280_961


def test_predict_votes_match_the_numpy_api(trained, tmp_path, capsys):
    root, _ = trained
    room = generate_room(7, 4000)
    source = tmp_path / "room.npy"
    np.save(source, np.concatenate([room["coord"], room["color"] / 255.0], 1))
    checkpoint = str(root / "run" / "best.pt")
    out = tmp_path / "labels.npy"
    assert main(["predict", str(source), "--checkpoint", checkpoint, "--out", str(out), "--votes", "3"]) == 0
    labels, _ = Segmenter.from_checkpoint(checkpoint, votes=3).predict(room["coord"], room["color"])
    assert (np.load(out) == labels).mean() > 0.999  # ties within float rounding only
    assert main(["predict", str(source), "--checkpoint", checkpoint, "--out", str(out), "--votes", "0"]) == 2
    assert "--votes must be >= 1, got 0" in capsys.readouterr().err


def test_predict_unsupported_input(trained, tmp_path, capsys):
    root, _ = trained
    bad = tmp_path / "scan.xyz"
    bad.write_text("0 0 0\n")
    assert (
        main(["predict", str(bad), "--checkpoint", str(root / "run" / "best.pt"), "--out", str(tmp_path / "o.ply")])
        == 2
    )
    assert "unsupported point cloud format '.xyz'" in capsys.readouterr().err


def test_train_and_eval_on_semantickitti_layout(tmp_path, shared_data, capsys):
    """The SemanticKITTI config path: a sequences/ tree holding the real scan (as sequence 00
    for training and 08 for validation), 20 classes with 0 = unlabelled ignored."""
    source = shared_data / "semantickitti"
    for seq in ("00", "08"):
        (tmp_path / "sequences" / seq / "velodyne").mkdir(parents=True)
        (tmp_path / "sequences" / seq / "labels").mkdir()
        (tmp_path / "sequences" / seq / "velodyne" / "000000.bin").symlink_to(source / "000000.bin")
        (tmp_path / "sequences" / seq / "labels" / "000000.label").symlink_to(source / "000000.label")
    import yaml

    labels = yaml.safe_load((source / "semantic-kitti.yaml").read_text())
    labels["split"] = {"train": [0], "valid": [8], "test": [11]}  # the one scan we have
    (tmp_path / "semantic-kitti.yaml").write_text(yaml.safe_dump(labels))
    config = tmp_path / "kitti.yaml"
    config.write_text(
        f"data:\n  dataset: semantickitti\n  root: {tmp_path}\n"
        f"  label_config: {tmp_path / 'semantic-kitti.yaml'}\n  num_classes: 20\n  ignore_index: 0\n"
    )
    overrides = sets(
        "data.block_size=4.0",
        "data.eval_stride=4.0",
        "data.num_points=128",
        "data.blocks_per_room=16",
        "data.val_blocks_per_room=4",
        "data.neighbours=8",
        "model.width_multiplier=0.125",
        "train.batch_size=4",
        "train.epochs=1",
        "train.amp=none",
        f"train.out_dir={tmp_path / 'run'}",
    )
    assert main(["train", "--config", str(config), *overrides]) == 0
    assert (
        main(
            [
                "eval",
                "--config",
                str(config),
                "--checkpoint",
                str(tmp_path / "run" / "best.pt"),
                "--out",
                str(tmp_path / "eval"),
                *overrides,
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "car" in metrics["iou"] and "road" in metrics["iou"]
    # class 0 (unlabelled) is ignored in the truth: its recall is undefined
    assert metrics["accuracy"]["unlabeled"] is None and metrics["iou"]["unlabeled"] is None
    ious = [v for v in metrics["iou"].values() if v is not None]
    assert metrics["miou"] == pytest.approx(sum(ious) / len(ious))
    assert 0 <= metrics["overall_accuracy"] <= 1
