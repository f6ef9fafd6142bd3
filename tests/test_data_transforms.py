"""Augmentations, grid subsampling with majority labels, padded collate."""

import math

import numpy as np
import pytest
import torch

from pcseg.data.transforms import (
    IGNORE_INDEX,
    ColorDrop,
    ColorJitter,
    Compose,
    GridSubsample,
    NormalizeCoord,
    RandomJitter,
    RandomPointDropout,
    RandomRotateZ,
    RandomScale,
    collate,
    grid_subsample,
)


def _sample(n=200, seed=0):
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(n, 3)).astype(np.float32)
    return {
        "coord": rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        "color": rng.uniform(0, 1, (n, 3)).astype(np.float32),
        "normal": normal / np.linalg.norm(normal, axis=1, keepdims=True),
        "label": rng.integers(0, 13, n),
        "instance": rng.integers(0, 5, n),
    }


def test_rotation_about_z_keeps_heights_and_distances():
    sample = _sample()
    out = RandomRotateZ()(sample, np.random.default_rng(1))
    np.testing.assert_allclose(out["coord"][:, 2], sample["coord"][:, 2])
    np.testing.assert_allclose(
        np.linalg.norm(out["coord"][:, :2], axis=1), np.linalg.norm(sample["coord"][:, :2], axis=1), rtol=1e-5
    )
    # the normal turns with the points: n . p is invariant
    np.testing.assert_allclose(
        (out["coord"] * out["normal"]).sum(1), (sample["coord"] * sample["normal"]).sum(1), atol=1e-5
    )
    angle = np.random.default_rng(1).uniform(-math.pi, math.pi)
    expected_x = sample["coord"][:, 0] * math.cos(angle) - sample["coord"][:, 1] * math.sin(angle)
    np.testing.assert_allclose(out["coord"][:, 0], expected_x, atol=1e-5)


def test_scale_jitter_colour_and_dropout():
    sample = _sample()
    rng = np.random.default_rng(3)
    scaled = RandomScale(2.0, 2.0)(sample, rng)
    np.testing.assert_allclose(scaled["coord"], sample["coord"] * 2.0)
    jittered = RandomJitter(sigma=0.01, clip=0.02)(sample, rng)
    assert 0 < np.abs(jittered["coord"] - sample["coord"]).max() <= 0.02 + 1e-6
    colored = ColorJitter(std=0.1, brightness=0.2)(sample, rng)
    assert colored["color"].min() >= 0 and colored["color"].max() <= 1
    assert not np.allclose(colored["color"], sample["color"])
    dropped = ColorDrop(p=1.0, value=0.5)(sample, rng)
    assert (dropped["color"] == 0.5).all()
    assert ColorDrop(p=0.0)(sample, rng) is sample
    kept = RandomPointDropout(max_ratio=0.9)(sample, np.random.default_rng(5))
    n = len(kept["coord"])
    assert 0 < n < 200 and all(len(kept[k]) == n for k in ("color", "normal", "label", "instance"))
    # points keep their own attributes
    rows = [np.flatnonzero((sample["coord"] == c).all(1))[0] for c in kept["coord"]]
    np.testing.assert_array_equal(kept["label"], sample["label"][rows])
    normalised = NormalizeCoord(center="floor", unit_sphere=True)(sample)
    assert abs(normalised["coord"][:, 2].min()) < 1e-6
    assert np.linalg.norm(normalised["coord"], axis=1).max() == pytest.approx(1.0, rel=1e-5)
    again = Compose([RandomRotateZ(), RandomScale()])(sample, np.random.default_rng(9))
    np.testing.assert_array_equal(
        again["coord"], Compose([RandomRotateZ(), RandomScale()])(sample, np.random.default_rng(9))["coord"]
    )


def test_grid_subsample_majority_label_by_hand():
    coord = np.array(
        [
            # voxel (0,0,0): labels 3, 7, 7
            [0.01, 0.01, 0.01],
            [0.02, 0.03, 0.01],
            [0.04, 0.02, 0.03],
            # voxel (1,0,0): labels 2, 5 (tie -> 2)
            [0.15, 0.01, 0.01],
            [0.16, 0.02, 0.02],
            # voxel (0,1,0): only ignored
            [0.01, 0.12, 0.01],
        ],
        dtype=np.float32,
    )
    color = np.array([[0, 0, 0], [30, 30, 30], [60, 60, 60], [100, 0, 0], [200, 0, 0], [9, 9, 9]], dtype=np.uint8)
    label = np.array([3, 7, 7, 2, 5, IGNORE_INDEX])
    out = grid_subsample({"coord": coord - coord.min(0) + 0.0, "color": color, "label": label}, 0.1, num_classes=13)
    # voxels are keyed from the cloud's minimum corner
    assert len(out["coord"]) == 3
    order = np.lexsort(np.floor((out["coord"] - 0) / 0.1).T[::-1])
    by_voxel = {tuple(np.floor(out["coord"][i] / 0.1).astype(int)): i for i in order}
    first = by_voxel[(0, 0, 0)]
    assert out["label"][first] == 7
    np.testing.assert_array_equal(out["color"][first], [30, 30, 30])
    np.testing.assert_allclose(out["coord"][first], (coord[:3] - coord.min(0)).mean(0), atol=1e-6)
    assert out["label"][by_voxel[(1, 0, 0)]] == 2
    assert out["label"][by_voxel[(0, 1, 0)]] == IGNORE_INDEX
    np.testing.assert_array_equal(out["voxel_of_point"][:3], [first] * 3)
    transformed = GridSubsample(0.1, 13)({"coord": coord, "label": label})
    assert "voxel_of_point" not in transformed and len(transformed["coord"]) == 3
    with pytest.raises(ValueError, match="voxel_size"):
        grid_subsample({"coord": coord}, 0.0)


def test_collate_pads_with_lengths_and_ignore_label():
    a, b = _sample(5, 1), _sample(3, 2)
    a["name"], b["name"] = "a", "b"
    batch = collate([a, b])
    assert batch["lengths"].tolist() == [5, 3]
    assert batch["coord"].shape == (2, 5, 3) and batch["coord"].dtype == torch.float32
    assert torch.equal(batch["coord"][1, :3], torch.from_numpy(b["coord"]))
    assert (batch["coord"][1, 3:] == 0).all()
    assert batch["label"].dtype == torch.int64 and (batch["label"][1, 3:] == IGNORE_INDEX).all()
    assert torch.equal(batch["label"][0], torch.from_numpy(a["label"]))
    assert batch["name"] == ["a", "b"]
    del b["name"]
    with pytest.raises(ValueError, match="keys"):
        collate([a, b])


def test_grid_subsample_rejects_labels_outside_num_classes():
    # voxel 0 holds label 13 of 13 classes: its vote would be counted as voxel 1's class 0
    coord = np.array([[0.01, 0.0, 0.0], [0.15, 0.0, 0.0]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"sample\['label'\] holds label 13.*num_classes=13"):
        grid_subsample({"coord": coord, "label": np.array([13, 4])}, 0.1, num_classes=13)
    with pytest.raises(ValueError, match="num_classes must be positive"):
        grid_subsample({"coord": coord, "label": np.array([1, 4])}, 0.1, num_classes=0)
    # negative labels are ignored, not an error; without num_classes any label is in range
    out = grid_subsample({"coord": coord, "label": np.array([-1, 4])}, 0.1, num_classes=13)
    assert out["label"].tolist() == [IGNORE_INDEX, 4]
    assert grid_subsample({"coord": coord, "label": np.array([13, 40])}, 0.1)["label"].tolist() == [13, 40]


def test_collate_pads_uint8_labels_in_int64():
    a, b = _sample(5, 1), _sample(3, 2)
    a["label"], b["label"] = a["label"].astype(np.uint8), b["label"].astype(np.uint8)
    batch = collate([a, b])
    assert batch["label"].dtype == torch.int64
    assert batch["label"][0].tolist() == a["label"].tolist()
    assert batch["label"][1, :3].tolist() == b["label"].tolist() and (batch["label"][1, 3:] == IGNORE_INDEX).all()
    assert batch["instance"].dtype == torch.from_numpy(a["instance"]).dtype  # other keys keep their dtype
    a["label"] = a["label"].astype(np.float32)
    with pytest.raises(ValueError, match="sample 0: 'label' must hold integers"):
        collate([a, b])
