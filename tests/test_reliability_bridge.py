"""Bad bridge input is refused where it enters (issue #12): non-rigid poses, NaN or out-of-range
scores, each error naming the argument."""

import numpy as np
import pytest

from pcseg.bridge import PinholeCamera
from pcseg.fuser import Fuser

CAMERA = PinholeCamera(fx=50.0, fy=50.0, cx=16.0, cy=12.0, width=32, height=24)
DEPTH = np.full((24, 32), 2000, dtype=np.uint16)
COLOR = np.zeros((24, 32, 3), dtype=np.uint8)
LABELS = np.ones((24, 32), dtype=np.int64)


def _pose(rotation):
    pose = np.eye(4)
    pose[:3, :3] = rotation
    return pose


@pytest.mark.parametrize(
    "pose, words",
    [
        (_pose(np.diag([3.0, 3.0, 3.0])), "not orthonormal"),
        (_pose(np.diag([1.0, 1.0, -1.0])), "reflection"),
        (_pose(np.array([[1.0, 0.2, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])), "not orthonormal"),
        (_pose(np.zeros((3, 3))), "not orthonormal"),
    ],
    ids=["scale", "reflection", "shear", "singular"],
)
def test_add_rgbd_refuses_non_rigid_poses(pose, words):
    fuser = Fuser(num_classes=3, voxel_size=0.1)
    with pytest.raises(ValueError, match=rf"pose \(T_world_from_camera\) must be a rigid transform: .*{words}"):
        fuser.add_rgbd(COLOR, DEPTH, LABELS, CAMERA, pose)
    assert fuser.num_voxels == 0  # nothing was fused


def test_a_rotation_with_calibration_rounding_is_accepted():
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    fuser = Fuser(num_classes=3, voxel_size=0.1)
    fuser.add_rgbd(COLOR, DEPTH, LABELS, CAMERA, _pose(np.round(rotation, 6)))  # six digits, as in calib files
    assert fuser.labels(np.zeros((1, 3))).shape == (1,)


@pytest.mark.parametrize(
    "scores, kind, words",
    [
        (np.full((3, 24, 32), np.nan, dtype=np.float32), "probabilities", "NaN or infinite"),
        (np.full((3, 24, 32), -0.5, dtype=np.float32), "probabilities", r"values in \[-0.5, -0.5\].*logits"),
        (np.full((3, 24, 32), 4.0, dtype=np.float32), "probabilities", r"values in \[4, 4\]"),
        (np.full((3, 24, 32), np.inf, dtype=np.float32), "logits", "NaN or infinite"),
    ],
    ids=["nan", "negative", "above-one", "inf-logits"],
)
def test_add_rgbd_refuses_bad_scores(scores, kind, words):
    fuser = Fuser(num_classes=3, voxel_size=0.1)
    with pytest.raises(ValueError, match=rf"score segmentation .*{words}"):
        fuser.add_rgbd(COLOR, DEPTH, scores, CAMERA, np.eye(4), scores=kind)


def test_logits_outside_zero_one_are_fine_as_logits():
    fuser = Fuser(num_classes=3, voxel_size=0.1)
    logits = np.zeros((3, 24, 32), dtype=np.float32)
    logits[2] = 5.0
    fuser.add_rgbd(COLOR, DEPTH, logits, CAMERA, np.eye(4), scores="logits")
    assert fuser.num_voxels > 0
    assert (fuser.labels(fuser.voxel_points()) == 2).all()


@pytest.mark.parametrize(
    "color, words",
    [
        (np.full((24, 32, 3), 200.0), "look like 0..255"),
        (np.full((24, 32, 3), np.nan), "NaN or inf"),
        (np.full((24, 32, 3), 3, dtype=np.int64), "dtype int64"),
    ],
    ids=["float-0-255", "nan", "int64"],
)
def test_add_rgbd_refuses_colours_outside_the_rule(color, words):
    fuser = Fuser(num_classes=3, voxel_size=0.1)
    with pytest.raises(ValueError, match=rf"color.*{words}"):
        fuser.add_rgbd(color, DEPTH, LABELS, CAMERA, np.eye(4))
    assert fuser.num_voxels == 0


def test_add_points_refuses_float_colours_in_0_255():
    fuser = Fuser(num_classes=3, voxel_size=0.1)
    points = np.zeros((4, 3))
    with pytest.raises(ValueError, match="float colors must lie in .0, 1., got 255..255: they look like 0..255"):
        fuser.add_points(points, labels=np.array([0, 1, 2, 0]), colors=np.full((4, 3), 255.0))
    assert fuser.num_voxels == 0


def test_a_failed_npz_export_keeps_the_previous_map(tmp_path, monkeypatch):
    fuser = Fuser(num_classes=3, voxel_size=0.1)
    fuser.add_rgbd(COLOR, DEPTH, LABELS, CAMERA, np.eye(4))
    path = fuser.export(tmp_path / "map.npz")
    before = path.read_bytes()

    def full_disk(handle, **arrays):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pcseg.fuser.np.savez_compressed", full_disk)
    with pytest.raises(OSError, match="No space left"):
        fuser.export(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.npz"]
