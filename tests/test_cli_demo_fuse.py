"""`pcseg demo` on tiny settings (every output written and consistent) and `pcseg fuse` on the
RGB-D frames folder the demo's bridge part writes."""

import json

import numpy as np
import pytest

from pcseg.cli import main
from pcseg.testing import TINY_TRAINING

TINY = [
    *TINY_TRAINING,
    "data.train_rooms=2",
    "data.val_rooms=1",
    "data.points_per_room=4000",
    "train.epochs=2",
    "train.time_budget_s=30",
]


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    args = ["demo", "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    return out


def test_demo_writes_every_output(demo_out, capsys):
    import open3d

    for name in (
        "prediction.ply",
        "prediction_vs_truth.png",
        "confusion_matrix.png",
        "metrics.json",
        "run/best.pt",
        "run/config.yaml",
        "run/curve.png",
        "run/log.jsonl",
        "bridge_metrics.json",
        "bridge_views.png",
        "bridge_fused_map.ply",
    ):
        assert (demo_out / name).is_file(), name
    metrics = json.loads((demo_out / "metrics.json").read_text())
    held_out = metrics["held_out"]
    assert 0 <= held_out["miou"] <= 1 and 0 <= held_out["overall_accuracy"] <= 1
    ious = [v for v in held_out["iou"].values() if v is not None]
    assert held_out["miou"] == pytest.approx(np.mean(ious))
    assert metrics["epochs"] == 2 and "fused_3d" in metrics["bridge"]
    # the PLY holds the first held-out room, every point labelled
    cloud = open3d.io.read_point_cloud(str(demo_out / "prediction.ply"))
    assert len(cloud.points) == 4000 and cloud.has_colors()


def test_fuse_folder_from_the_demo(demo_out, tmp_path, capsys):
    import open3d

    frames = demo_out / "bridge_frames"
    assert (frames / "frames.json").is_file()
    out = tmp_path / "fused.ply"
    assert main(["fuse", str(frames), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cloud = open3d.io.read_point_cloud(str(out))
    assert len(cloud.points) == summary["voxels"] > 0
    assert sum(summary["label_counts"]) == summary["voxels"]
