"""Pseudo-labels from fused 2D segmentations: the thresholds, the data set `pcseg pseudolabel` writes."""

import json

import numpy as np
import pytest
import yaml

from pcseg import formats
from pcseg.cli import main
from pcseg.data.synthetic import build_room, render_view
from pcseg.demo.bridge import (
    NUM_CLASSES,
    NetworkErrorModel,
    demo_camera,
    demo_poses,
    object_confusions,
    simulate_2d_network,
)
from pcseg.demo.from_2d import From2DConfig, fuse_room
from pcseg.fuse_folder import write_frames_folder
from pcseg.pseudolabel import (
    FusedCloud,
    PseudoLabelThresholds,
    confident_mask,
    load_thresholds,
    pseudo_labels,
    threshold_report,
    thresholds_from_dict,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TINY_ROOM = From2DConfig(views_per_room=12, image_size=(80, 60), truth_points_per_room=30_000)


@pytest.fixture(scope="module")
def tiny_room():
    return fuse_room(0, TINY_ROOM)


def test_tightening_lowers_coverage_and_raises_accuracy(tiny_room):
    cloud, truth = tiny_room.cloud, tiny_room.truth
    steps = [
        PseudoLabelThresholds(0.0, 0, 0.0),
        PseudoLabelThresholds(0.5, 1, 0.5),
        PseudoLabelThresholds(0.9, 2, 0.6),
        PseudoLabelThresholds(0.99, 2, 0.8),
    ]
    reports = [threshold_report(cloud, step, truth)["all"] for step in steps]
    coverages = [report["coverage"] for report in reports]
    accuracies = [report["accuracy"] for report in reports]
    assert coverages[0] == 1.0 and all(a > b for a, b in zip(coverages, coverages[1:])), coverages
    assert all(a < b for a, b in zip(accuracies, accuracies[1:])), accuracies
    # each threshold alone also trades coverage for accuracy
    report = threshold_report(cloud, steps[-1], truth)
    for name in ("probability", "observations", "agreement"):
        assert report[name]["coverage"] < 1.0 and report[name]["accuracy"] > report["fused"]["accuracy"], name


def test_unconfident_points_get_the_ignore_label(tiny_room):
    cloud = tiny_room.cloud
    thresholds = PseudoLabelThresholds(0.9, 2, 0.6)
    labels = pseudo_labels(cloud, thresholds)
    keep = confident_mask(cloud, thresholds)
    assert labels.dtype == np.int64 and 0 < keep.sum() < len(keep)
    assert (labels[~keep] == -1).all() and (labels[keep] == cloud.labels[keep]).all()
    assert (cloud.observations[keep] >= 2).all() and (cloud.agreement[keep] >= 0.6).all()


def test_thresholds_are_checked_and_read_from_yaml(tmp_path):
    with pytest.raises(ValueError, match="min_agreement"):
        PseudoLabelThresholds(min_agreement=1.5)
    with pytest.raises(ValueError, match="min_observations"):
        PseudoLabelThresholds(min_observations=-1)
    with pytest.raises(ValueError, match="min_prob"):
        thresholds_from_dict({"min_prob": 0.5})
    path = tmp_path / "thresholds.yaml"
    path.write_text("pseudolabel:\n  min_probability: 0.8\n  min_observations: 3\n")
    assert load_thresholds(path) == PseudoLabelThresholds(0.8, 3, 0.6)
    path.write_text("min_agreement: 0.7\nmin_votes: 2\n")
    with pytest.raises(ValueError, match=r"thresholds.yaml.*min_votes"):
        load_thresholds(path)


def _frames_folder(folder, seed):
    rng = np.random.default_rng(seed)
    scene = build_room(seed)
    camera = demo_camera(64, 48)
    model = NetworkErrorModel()
    confusions = object_confusions(scene, model, rng)
    frames = []
    for pose in demo_poses(scene.size, 4, rng):
        view = render_view(scene, camera, pose)
        predicted, _ = simulate_2d_network(view, model, confusions, rng)
        frames.append({"depth": view["depth"], "color": view["color"], "segmentation": predicted, "pose": pose})
    return write_frames_folder(
        folder, frames, camera, num_classes=NUM_CLASSES, class_names=[f"c{k}" for k in range(NUM_CLASSES)]
    )


def _check_cloud(path):
    fields = formats.read_ply(path)
    assert list(fields) == ["x", "y", "z", "red", "green", "blue", "label"]
    assert fields["x"].dtype == np.float32 and fields["red"].dtype == np.uint8 and fields["label"].dtype == np.int32
    labels = fields["label"]
    assert len(labels) and labels.min() >= -1 and labels.max() < NUM_CLASSES
    return labels


def test_cli_pseudolabel_writes_a_folder_data_set(tmp_path, capsys):
    frames = [_frames_folder(tmp_path / f"frames{k}", k) for k in range(2)]
    out = tmp_path / "dataset"
    assert main(["pseudolabel", str(frames[0]), "--out", str(out), "--min-agreement", "0.7"]) == 0
    train, val = sorted((out / "train").glob("*.ply")), sorted((out / "val").glob("*.ply"))
    assert len(train) == 1 and len(val) == 1  # one folder: split in space
    labels = np.concatenate([_check_cloud(path) for path in train + val])
    assert (labels == -1).any() and (labels >= 0).any()
    classes = yaml.safe_load((out / "classes.yaml").read_text())
    assert classes["names"] == [f"c{k}" for k in range(NUM_CLASSES)] and classes["ignore_label"] == -1
    assert np.asarray(classes["colors"]).shape == (NUM_CLASSES, 3)
    report = json.loads((out / "pseudolabel_report.json").read_text())
    assert report["thresholds"]["min_agreement"] == 0.7
    assert "pseudo-labelled" in capsys.readouterr().out

    out2 = tmp_path / "dataset2"
    config = tmp_path / "thresholds.yaml"
    config.write_text("min_observations: 1\n")
    assert main(["pseudolabel", *map(str, frames), "--out", str(out2), "--config", str(config)]) == 0
    assert len(list((out2 / "train").glob("*.ply"))) == 1 and len(list((out2 / "val").glob("*.ply"))) == 1
    assert json.loads((out2 / "pseudolabel_report.json").read_text())["thresholds"]["min_observations"] == 1


def test_cli_pseudolabel_errors_name_the_input(tmp_path, capsys):
    assert main(["pseudolabel", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "FRAMES folder not found" in capsys.readouterr().err
    assert main(["pseudolabel", str(tmp_path), "--out", str(tmp_path / "out"), "--min-agreement", "2"]) == 2
    assert "min_agreement" in capsys.readouterr().err


def test_fused_cloud_subset_keeps_rows(tiny_room):
    cloud = tiny_room.cloud
    keep = np.zeros(len(cloud.points), dtype=bool)
    keep[::3] = True
    part = cloud.subset(keep)
    assert isinstance(part, FusedCloud) and len(part.points) == keep.sum()
    np.testing.assert_array_equal(part.labels, cloud.labels[keep])
