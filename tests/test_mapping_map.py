"""A map that lives: Fuser.save / load, free-space clearing (a parked car that leaves, a
person who walks away), a bounded local map, per-voxel counts and entropy, and 2D and 3D
evidence with per-source weights."""

import os

import numpy as np
import pytest
import torch

from pcseg.bridge import PinholeCamera, late_fusion
from pcseg.bridge.free_space import free_space_mask, free_space_mask_image
from pcseg.bridge.fusion import VoxelLabelMap
from pcseg.bridge.gravity import rotation_between
from pcseg.fuser import Fuser

pytestmark = pytest.mark.usefixtures("single_torch_thread")

GROUND, CAR, WALL = 0, 1, 2
SENSOR_HEIGHT = 1.73
CAR_BOX = (np.array([6.0, 3.0, 0.3]), np.array([10.0, 5.0, 1.6]))


def simulated_scan(position, car: bool, beams: int = 32, azimuths: int = 720):
    """A 32-beam LiDAR at `position` (x, y, z) in a street: ground z = 0, a wall at y = 9,
    and (when `car`) a parked car, an axis-aligned box. Returns world points (N, 3) and
    labels (N,); rays without a return within 40 m are dropped."""
    elevation = np.radians(np.linspace(-24.0, 2.0, beams))
    azimuth = np.radians(np.arange(azimuths) * 360.0 / azimuths)
    elevation, azimuth = np.meshgrid(elevation, azimuth, indexing="ij")
    directions = np.stack(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)], axis=-1
    ).reshape(-1, 3)
    origin = np.asarray(position, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        hits = np.full((len(directions), 3), np.inf)
        hits[:, GROUND] = np.where(directions[:, 2] < 0, -origin[2] / directions[:, 2], np.inf)
        hits[:, WALL] = np.where(directions[:, 1] > 0, (9.0 - origin[1]) / directions[:, 1], np.inf)
        if car:
            low = (CAR_BOX[0] - origin) / directions
            high = (CAR_BOX[1] - origin) / directions
            enter = np.nanmax(np.minimum(low, high), axis=1)
            leave = np.nanmin(np.maximum(low, high), axis=1)
            hits[:, CAR] = np.where((enter <= leave) & (enter > 0), enter, np.inf)
    labels = np.argmin(hits, axis=1)
    ranges = hits[np.arange(len(hits)), labels]
    keep = ranges < 40.0
    return origin + directions[keep] * ranges[keep, None], labels[keep]


def inside_car(points: np.ndarray) -> np.ndarray:
    return np.all((points >= CAR_BOX[0]) & (points <= CAR_BOX[1]), axis=1)


@pytest.mark.parametrize("clear", [True, False])
def test_a_parked_car_that_leaves_leaves_no_voxels_with_free_space_clearing(clear):
    fuser = Fuser(3, 0.2, "bayes", clear_free_space=clear)
    # Drive past the parked car, then on while it has gone.
    for step in range(12):
        position = (2.0 * step - 4.0, 0.0, SENSOR_HEIGHT)
        points, labels = simulated_scan(position, car=True)
        fuser.add_points(points, labels, sensor_origin=position)
    car_voxels = inside_car(fuser.voxel_points()).sum()
    assert car_voxels > 50 and (fuser.voxel_labels()[inside_car(fuser.voxel_points())] == CAR).mean() > 0.9
    static = fuser.voxel_points()[~inside_car(fuser.voxel_points())]
    for step in range(8):
        position = (4.0 + 1.0 * step, 0.0, SENSOR_HEIGHT)
        points, labels = simulated_scan(position, car=False)
        fuser.add_points(points, labels, sensor_origin=position)
    remaining = inside_car(fuser.voxel_points()).sum()
    if clear:
        assert remaining == 0
    else:
        assert remaining == car_voxels  # without clearing the car stays as a ghost
    # The street itself (ground and wall) survives the clearing.
    assert fuser.query(static).known.mean() > 0.97


@pytest.mark.parametrize(
    "distortion, model",
    [
        ((), "plumb_bob"),
        ((-0.28, 0.09, 0.001, -0.0008, -0.012), "plumb_bob"),
        ((-0.01, 0.04, -0.04, 0.007), "equidistant"),
    ],
)
def test_a_person_who_walks_away_is_cleared_from_rgbd_frames(distortion, model):
    camera = PinholeCamera(200.0, 200.0, 79.5, 59.5, 160, 120, distortion=distortion, distortion_model=model)
    pose = np.eye(4)  # the sensor origin and axes come from the pose
    pose[:3, :3] = rotation_between([0.0, 0.0, 1.0], [0.5, -0.3, 1.0])
    pose[:3, 3] = [0.5, -0.2, 0.0]
    wall = np.full((120, 160), 4.0, dtype=np.float32)
    with_person = wall.copy()
    with_person[20:120, 60:100] = 2.0
    labels = np.zeros((120, 160), np.int64)
    labels[20:120, 60:100] = 1
    fuser = Fuser(2, 0.05, "bayes", clear_free_space=True)
    for _ in range(5):
        fuser.add_rgbd(None, with_person, labels, camera, pose)
    person = fuser.voxel_labels() == 1
    assert person.sum() > 100
    wall_voxels = np.count_nonzero(~person)
    for frame in range(8):
        fuser.add_rgbd(None, wall, np.zeros_like(labels), camera, pose)
        if frame == 0:
            assert (fuser.voxel_labels() == 1).sum() > 0  # one frame is not enough evidence
    assert (fuser.voxel_labels() == 1).sum() == 0
    in_camera = (fuser.voxel_points() - pose[:3, 3]) @ pose[:3, :3]
    assert np.abs(in_camera[:, 2] - 4.0).max() < 0.1  # what is left is the wall, all of it
    assert fuser.num_voxels >= wall_voxels


def test_the_depth_image_test_agrees_with_the_spherical_range_image():
    # One frame of a box room seen by a camera; voxels scattered through the room. The image
    # test (the camera's pixel grid) and the spherical test of the same returns agree, up to
    # the voxels near a surface or the field of view's edge, where the two bin grids differ.
    camera = PinholeCamera(300.0, 300.0, 159.5, 119.5, 320, 240)
    rows, columns = np.mgrid[0:240, 0:320]
    rays = np.stack([(columns - camera.cx) / camera.fx, (rows - camera.cy) / camera.fy, np.ones((240, 320))], -1)
    depth = np.full((240, 320), 5.0)
    depth[60:200, 100:220] = 2.5  # a cupboard in front of the back wall
    depth[:40] = np.inf  # no return through an open window
    lengths = np.linalg.norm(rays, axis=-1)
    ranges = torch.from_numpy((depth * lengths).astype(np.float32))
    returns = (rays * depth[..., None]).reshape(-1, 3)[np.isfinite(depth).reshape(-1)]
    rng = np.random.default_rng(0)
    voxels = rng.uniform([-3.0, -2.5, 0.2], [3.0, 2.5, 6.0], size=(20000, 3))
    image = free_space_mask_image(torch.from_numpy(voxels), ranges, camera, 0.05).numpy()
    upright = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])  # (x, z, -y): z up
    spherical = free_space_mask(torch.from_numpy(voxels @ upright.T), torch.from_numpy(returns @ upright.T), 0.05)
    spherical = spherical.numpy()
    assert image.sum() > 1500 and (image == spherical).mean() > 0.97
    in_front = (voxels[:, 2] < 2.2) & (np.abs(voxels[:, 0] / voxels[:, 2]) < 0.4)
    in_front &= np.abs(voxels[:, 1] / voxels[:, 2]) < 0.25
    behind = (voxels[:, 2] > 2.6) & (np.abs(voxels[:, 0] / voxels[:, 2] - 0.067) < 0.15)
    behind &= np.abs(voxels[:, 1] / voxels[:, 2] - 0.1) < 0.1
    assert image[in_front].all() and not image[behind].any()  # before the cupboard; behind it
    window = voxels[:, 1] / voxels[:, 2] < -0.45
    assert not image[window].any()  # no return, nothing known


def test_save_and_load_resume_mapping_with_identical_queries(tmp_path):
    rng = np.random.default_rng(0)
    fuser = Fuser(4, 0.1, "bayes", ignore_label=3, clear_free_space=True, max_distance=50.0)
    for step in range(3):
        position = (float(step), 0.0, SENSOR_HEIGHT)
        points, labels = simulated_scan(position, car=True, beams=16, azimuths=360)
        fuser.add_points(
            points,
            labels,
            colors=rng.integers(0, 255, (len(points), 3), dtype=np.uint8),
            sensor_origin=position,
            timestamp=10.0 + step,
        )
    path = fuser.save(tmp_path / "map.pt")
    loaded = Fuser.load(path)
    probes = rng.uniform([-10, -10, -0.5], [20, 10, 3], size=(20000, 3))
    probes = np.concatenate([probes, fuser.voxel_points()])
    for name in ("labels", "probabilities", "known"):
        np.testing.assert_array_equal(getattr(loaded.query(probes), name), getattr(fuser.query(probes), name))
    for name in ("voxel_points", "voxel_labels", "voxel_counts", "voxel_entropy", "voxel_colors", "voxel_observations"):
        np.testing.assert_array_equal(getattr(loaded, name)(), getattr(fuser, name)())
    assert (loaded.num_frames, loaded.ignore_label, loaded.max_distance) == (3, 3, 50.0)
    # Both go on identically.
    points, labels = simulated_scan((3.0, 0.0, SENSOR_HEIGHT), car=False, beams=16, azimuths=360)
    for each in (fuser, loaded):
        each.add_points(points, labels, sensor_origin=(3.0, 0.0, SENSOR_HEIGHT), timestamp=13.0)
    np.testing.assert_array_equal(loaded.query(probes).probabilities, fuser.query(probes).probabilities)
    # No temporary file is left behind.
    assert sorted(os.listdir(tmp_path)) == ["map.pt"]


def test_load_refuses_another_version_class_count_or_voxel_size(tmp_path):
    fuser = Fuser(3, 0.2)
    fuser.add_points(np.array([[0.0, 0.0, 0.0]]), np.array([1]))
    path = fuser.save(tmp_path / "map.pt")
    with pytest.raises(ValueError, match="map of 3 classes, not num_classes=5"):
        Fuser.load(path, num_classes=5)
    with pytest.raises(ValueError, match="voxel_size=0.2, not voxel_size=0.1"):
        Fuser.load(path, voxel_size=0.1)
    state = torch.load(path, weights_only=True)
    state["version"] = 999
    torch.save(state, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="version 999, written by another pcseg"):
        Fuser.load(tmp_path / "future.pt")
    state["version"] = Fuser.FILE_VERSION
    state["map"]["version"] = 999
    torch.save(state, tmp_path / "future_map.pt")
    with pytest.raises(ValueError, match="state version 999"):
        Fuser.load(tmp_path / "future_map.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a map")
    with pytest.raises(ValueError, match="junk.pt is not a saved pcseg Fuser"):
        Fuser.load(tmp_path / "junk.pt")


def test_an_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    fuser = Fuser(3, 0.2)
    fuser.add_points(np.array([[0.0, 0.0, 0.0]]), np.array([1]))
    path = fuser.save(tmp_path / "map.pt")
    before = path.read_bytes()
    fuser.add_points(np.array([[5.0, 0.0, 0.0]]), np.array([2]))

    def disk_full(state, handle):
        handle.write(b"half a map")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        fuser.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["map.pt"]
    monkeypatch.undo()
    assert Fuser.load(path).num_voxels == 1


def test_bounded_local_map_forgets_by_distance_frames_and_seconds():
    by_distance = Fuser(3, 0.5, max_distance=15.0)
    by_frames = Fuser(3, 0.5, max_age_frames=3)
    by_seconds = Fuser(3, 0.5, max_age_seconds=2.5)
    for step in range(20):
        position = (5.0 * step, 0.0, SENSOR_HEIGHT)
        points, labels = simulated_scan(position, car=False, beams=8, azimuths=180)
        points = points[np.linalg.norm(points - position, axis=1) < 10.0]
        for fuser in (by_distance, by_frames, by_seconds):
            fuser.add_points(points, labels[: len(points)] * 0, sensor_origin=position, timestamp=float(step))
    latest = np.array([95.0, 0.0, SENSOR_HEIGHT])
    assert np.linalg.norm(by_distance.voxel_points() - latest, axis=1).max() <= 15.0
    assert by_frames.voxel_points()[:, 0].min() > 95.0 - 3 * 5.0 - 10.0
    assert by_seconds.voxel_points()[:, 0].min() > 95.0 - 3 * 5.0 - 10.0
    assert by_frames.num_voxels == by_seconds.num_voxels > 0


def test_memory_stays_flat_over_an_endless_drive():
    fuser = Fuser(3, 0.5, max_distance=20.0, clear_free_space=True)
    capacities = []
    for step in range(150):
        position = (2.0 * step, 0.0, SENSOR_HEIGHT)
        points, labels = simulated_scan(position, car=False, beams=8, azimuths=180)
        fuser.add_points(points, labels, sensor_origin=position)
        capacities.append((fuser.map._observations.shape[0], fuser.map._table.shape[0], fuser.num_voxels))
    assert capacities[-1][:2] == capacities[50][:2]  # no growth after warm-up
    assert max(count for _, _, count in capacities[50:]) < 1.5 * min(count for _, _, count in capacities[50:])


def test_counts_and_entropy_per_voxel_and_in_the_exports(tmp_path):
    fuser = Fuser(4, 1.0, "bayes")
    certain, mixed = [0.5, 0.5, 0.5], [5.5, 0.5, 0.5]
    for label in (2, 2, 2):
        fuser.add_points(np.array([certain]), np.array([label]))
    fuser.add_points(np.array([mixed]), probabilities=np.full((1, 4), 0.25, np.float32))
    np.testing.assert_array_equal(fuser.voxel_counts(), [3, 1])
    entropy = fuser.voxel_entropy()
    assert entropy[0] < 0.01 and entropy[1] == pytest.approx(np.log(4), rel=1e-5)
    exported = np.load(fuser.export(tmp_path / "map.npz"))
    np.testing.assert_array_equal(exported["counts"], [3, 1])
    np.testing.assert_allclose(exported["entropy"], entropy)
    open3d = pytest.importorskip("open3d")
    fuser.export(tmp_path / "map.ply")
    mesh = open3d.t.io.read_point_cloud(str(tmp_path / "map.ply"))
    np.testing.assert_allclose(mesh.point["entropy"].numpy().ravel(), entropy, rtol=1e-6)
    np.testing.assert_array_equal(mesh.point["count"].numpy().ravel(), [3, 1])


def test_3d_and_2d_evidence_fuse_with_per_source_weights_like_late_fusion():
    rng = np.random.default_rng(4)
    logits_3d = rng.normal(size=(50, 5)).astype(np.float32)
    probabilities_3d = torch.softmax(torch.from_numpy(logits_3d), dim=1).numpy()
    probabilities_2d = rng.dirichlet(np.ones(5), size=50).astype(np.float32)
    points = np.arange(50)[:, None] * np.array([[1.0, 0.0, 0.0]]) + 0.5  # one voxel each
    fuser = Fuser(5, 1.0, "bayes", min_probability=1e-6)
    fuser.add_points(points, probabilities=probabilities_3d, weight=0.7)  # e.g. Segmenter output
    fuser.add_points(points, probabilities=probabilities_2d, weight=1.5)  # painted from a camera
    expected = late_fusion(logits_3d, probabilities_2d, weight_3d=0.7, weight_2d=1.5, min_probability=1e-6)
    np.testing.assert_allclose(fuser.probabilities(points), expected.probabilities, atol=1e-5)
    np.testing.assert_array_equal(fuser.labels(points), expected.labels)
    # "mean" weighs the average.
    mean = Fuser(5, 1.0, "mean")
    mean.add_points(points, probabilities=probabilities_3d, weight=3.0)
    mean.add_points(points, probabilities=probabilities_2d, weight=1.0)
    np.testing.assert_allclose(mean.probabilities(points), 0.75 * probabilities_3d + 0.25 * probabilities_2d, atol=1e-6)
    with pytest.raises(ValueError, match="weight must be a positive"):
        fuser.add_points(points, probabilities=probabilities_2d, weight=0.0)
    with pytest.raises(ValueError, match="sensor_origin must be 3 finite numbers"):
        fuser.add_points(points, probabilities=probabilities_2d, sensor_origin=(0.0, 1.0))


def test_voxel_map_remove_keeps_the_other_voxels_and_their_lookups():
    fusion_map = VoxelLabelMap(0.5, 3)
    points = np.random.default_rng(5).uniform(-20, 20, size=(5000, 3))
    fusion_map.integrate(points, labels=np.arange(5000) % 3)
    before = fusion_map.query(points)
    voxels = fusion_map.voxel_points()
    drop = voxels[:, 0] < 0
    assert fusion_map.remove(drop) == drop.sum()
    after = fusion_map.query(points)
    kept = np.floor(points[:, 0] / 0.5) >= 0
    np.testing.assert_array_equal(after.labels[kept], before.labels[kept])
    assert not after.known[~kept].any()
    np.testing.assert_array_equal(fusion_map.voxel_points(), voxels[~drop])
