"""``pcseg demo --lidar`` end to end, tiny: every output file and the json keys."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from pcseg.cli import main
from pcseg.data.kitti import read_label_file
from pcseg.data.lidar_sim import HDL64E, write_simulated_semantickitti
from pcseg.demo.lidar import run_lidar_demo
from pcseg.io import read_point_cloud
from pcseg.predict import predict_file

TINY = [
    "train.time_budget_s=2",
    "train.epochs=1",
    "train.batch_size=4",
    "train.val_every=1",
    "train.device=cpu",
    "data.blocks_per_room=4",
    "data.val_blocks_per_room=2",
    "data.num_points=128",
]
# a sensor with a coarse azimuth step: scans of a few thousand points
COARSE = dataclasses.replace(HDL64E, azimuth_steps=200)


def test_tiny_lidar_demo_writes_every_output(tmp_path):
    # a labelled "real" scan from another simulated street stands in for the shared sample
    write_simulated_semantickitti(tmp_path / "other", [7], [], spec=COARSE)
    real = tmp_path / "real"
    real.mkdir()
    shutil.copy(tmp_path / "other/sequences/00/velodyne/000000.bin", real / "000000.bin")
    shutil.copy(tmp_path / "other/sequences/00/labels/000000.label", real / "000000.label")
    out = tmp_path / "out"
    metrics = run_lidar_demo(
        out, TINY, train_streets=1, val_streets=1, real_scan=real / "000000.bin", progress=False, spec=COARSE, votes=2
    )
    assert json.loads((out / "metrics_lidar.json").read_text()).keys() == metrics.keys()
    for key in (
        "sim_miou",
        "sim_iou",
        "real_miou",
        "real_iou",
        "real_miou_transfer_classes",
        "sim_miou_votes",
        "real_miou_transfer_classes_votes",
        "sim_miou_votes_crf",
        "real_miou_transfer_classes_votes_crf",
        "real_predict_s",
        "train_s",
        "config",
    ):
        assert key in metrics, key
    assert 0.0 <= metrics["sim_miou"] <= 1.0 and "unlabeled" not in metrics["sim_iou"]
    assert metrics["votes"] == 2 and 0.0 <= metrics["sim_miou_votes"] <= 1.0
    assert 0.0 <= metrics["sim_miou_votes_crf"] <= 1.0
    assert metrics["config"]["refine"]["position_sigma"] == 0.5 and not metrics["config"]["refine"]["normals"]
    assert metrics["config"]["data"]["use_intensity"] and not metrics["config"]["data"]["use_color"]
    assert metrics["config"]["data"]["multiscale_features"]  # the scan's features reach training and predict
    cloud = read_point_cloud(out / "lidar_prediction.ply")
    assert len(cloud["coord"]) > 1000 and cloud["label"] is not None
    assert (out / "lidar_bev.png").stat().st_size > 5_000
    labels = sorted((out / "labels").rglob("*.label"))
    assert [p.relative_to(out / "labels").as_posix() for p in labels] == ["01/000000.label", "real/000000.label"]
    semantic, _ = read_label_file(labels[1])
    assert len(semantic) == len(np.fromfile(real / "000000.label", np.uint32))
    assert (out / "run" / "last.pt").is_file()
    # pcseg predict gives the LiDAR checkpoint the .bin's remission as its intensity channel
    summary = predict_file(real / "000000.bin", out / "run" / "last.pt", tmp_path / "predicted.label")
    assert summary["points"] == len(semantic)
    assert len(read_label_file(tmp_path / "predicted.label")[0]) == len(semantic)


def test_cli_lidar_flag(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr("pcseg.demo.lidar.run_lidar_demo", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert main(["demo", "--lidar", "--real-scan", "scan.bin", "--set", "train.epochs=1"]) == 0
    assert calls == [(("demo_lidar_out", ["train.epochs=1"]), {"seed": 0, "real_scan": "scan.bin"})]
    with pytest.raises(SystemExit, match="--real-scan needs --lidar"):
        main(["demo", "--real-scan", "scan.bin"])
    with pytest.raises(FileNotFoundError, match="absent.bin not found"):
        run_lidar_demo(tmp_path, real_scan=tmp_path / "absent.bin")
