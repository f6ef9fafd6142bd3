"""`pcseg demo --from-2d` on tiny settings: it runs end to end and writes its three mIoUs."""

import json

import numpy as np
import pytest
import yaml

from pcseg.cli import main
from pcseg.demo.from_2d import split_overrides
from pcseg.testing import TINY_TRAINING

TINY = [
    "from_2d.train_rooms=2",
    "from_2d.heldout_rooms=1",
    "from_2d.views_per_room=3",
    "from_2d.image_size=[64,48]",
    "from_2d.time_budget_s=5",
    "from_2d.eval_points_per_room=4000",
    "from_2d.truth_points_per_room=10000",
    "from_2d.confusion_rooms=2",
    "from_2d.confusion_views_per_room=2",
    *TINY_TRAINING,  # its data.points_per_room is unused: the rooms come from the fused views
    "data.blocks_per_room=4",
]


def test_demo_from_2d_writes_the_metrics(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["demo", "--from-2d", "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    metrics = json.loads((out / "metrics_from_2d.json").read_text())
    for key in ("painted_miou", "pseudo_miou", "supervised_miou", "painted_coverage"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["models"]["pseudo"]["epochs"] == 1 and (out / "run_pseudo" / "last.pt").is_file()
    assert (out / "run_supervised" / "last.pt").is_file()
    # Per-class IoU of the painted labels and of both models, by class name.
    for iou in (metrics["painted_iou"], metrics["models"]["pseudo"]["iou"], metrics["models"]["supervised"]["iou"]):
        assert "wall" in iou and all(value is None or 0.0 <= value <= 1.0 for value in iou.values())
    assert "pseudo-label model" in capsys.readouterr().out
    # The 2D network's confusion matrix, measured on other rooms, corrects the pseudo model's loss only.
    confusion = np.load(out / "network_confusion.npy")
    assert confusion.shape == (13, 13) and confusion.sum() > 0 and np.trace(confusion) > confusion.sum() / 2
    assert metrics["noise_correction"] is True and np.array_equal(metrics["network_confusion"], confusion)
    pseudo_config = yaml.safe_load((out / "run_pseudo" / "config.yaml").read_text())
    supervised_config = yaml.safe_load((out / "run_supervised" / "config.yaml").read_text())
    assert pseudo_config["train"]["label_transition"] == str(out / "network_confusion.npy")
    assert supervised_config["train"]["label_transition"] == ""


def test_demo_from_2d_scores_the_models_on_the_painted_points(tmp_path):
    """The models' second score is theirs on exactly the held-out points the painted labels cover."""
    import torch

    from pcseg.checkpoint import model_from_checkpoint
    from pcseg.data.synthetic import generate_room
    from pcseg.demo.from_2d import fuse_room
    from pcseg.evaluate import evaluate_rooms
    from pcseg.metrics import ConfusionMatrix

    out = tmp_path / "out"
    args = ["demo", "--from-2d", "--out", str(out), "--set", "from_2d.noise_correction=false"]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    metrics = json.loads((out / "metrics_from_2d.json").read_text())
    config, _ = split_overrides(TINY)
    room = generate_room(100_000, config.eval_points_per_room)
    covered = fuse_room(100_000, config, 1).fuser.query(room["coord"]).known
    assert 0 < covered.sum() < len(covered)
    for name in ("pseudo", "supervised"):
        model, cfg, _ = model_from_checkpoint(out / f"run_{name}" / "last.pt", "cpu")
        prediction = evaluate_rooms(model, cfg, [room], progress=False)["predictions"][0]
        expected = ConfusionMatrix(13)
        expected.update(torch.from_numpy(prediction[covered]), torch.from_numpy(room["label"][covered]))
        assert metrics[f"{name}_miou_on_painted_points"] == pytest.approx(expected.compute().miou, abs=1e-4)


def test_overrides_reach_their_sections():
    config, rest = split_overrides(
        ["network.blob_fraction=0.2", "pseudolabel.min_agreement=0.8", "from_2d.train_rooms=3", "train.lr=0.1"]
    )
    assert config.network.blob_fraction == 0.2 and config.thresholds.min_agreement == 0.8
    assert config.train_rooms == 3 and rest == ["train.lr=0.1"]
    with pytest.raises(ValueError, match="network.blob"):
        split_overrides(["network.blob=1"])
    with pytest.raises(ValueError, match="confusions"):
        split_overrides(["network.confusions=[[board, sky]]"])
