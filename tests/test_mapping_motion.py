"""Moving and tilted sensors: de-skew of a LiDAR sweep taken at 10 m/s, gravity alignment
from an IMU vector or the ground plane (real KITTI and NYU frames)."""

import numpy as np
import pytest
from PIL import Image

from pcseg.bridge import (
    PinholeCamera,
    backproject_depth,
    deskew_points,
    gravity_alignment,
    interpolate_pose,
    paint_points,
)
from pcseg.bridge.gravity import rotation_between
from pcseg.data.kitti import read_velodyne_bin
from pcseg.data.nyu import read_nyu_frame
from pcseg.fuser import Fuser

pytestmark = pytest.mark.usefixtures("single_torch_thread")

SPEED = 10.0  # m/s along +x
SWEEP = 0.1  # s
STRIPE = 0.5  # m: the wall is painted in stripes of two alternating objects
CAMERA = PinholeCamera(300.0, 300.0, 319.5, 239.5, 640, 480)
# The camera looks to the vehicle's left (+y): camera x = LiDAR x, y = -z, z = +y.
T_CAMERA_FROM_LIDAR = np.array([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])


def _pose_at(time: float) -> np.ndarray:
    pose = np.eye(4)
    pose[0, 3] = SPEED * time
    return pose


def _stripe(x: np.ndarray) -> np.ndarray:
    return (np.floor(x / STRIPE) % 2).astype(np.int64)


@pytest.fixture(scope="module")
def moving_sweep():
    """A wall at y = 5 m seen by a LiDAR moving at 10 m/s; the camera image is taken at the
    end of the sweep: its label map is the stripe of the wall behind each pixel then."""
    rng = np.random.default_rng(0)
    world = np.stack([rng.uniform(-1.5, 3.5, 30000), np.full(30000, 5.0), rng.uniform(-1.5, 1.5, 30000)], axis=1)
    timestamps = rng.uniform(0.0, SWEEP, 30000)
    lidar = world - SPEED * timestamps[:, None] * np.array([1.0, 0.0, 0.0])  # each in its own instant's frame
    columns = np.arange(CAMERA.width)
    wall_x = SPEED * SWEEP + (columns - CAMERA.cx) / CAMERA.fx * 5.0
    label_map = np.broadcast_to(_stripe(wall_x)[None, :], (CAMERA.height, CAMERA.width)).copy()
    return {
        "world": world,
        "lidar": lidar,
        "timestamps": timestamps,
        "labels": label_map,
        "truth": _stripe(world[:, 0]),
    }


def test_painted_labels_land_on_the_right_object_only_with_deskew(moving_sweep):
    end = _pose_at(SWEEP)
    deskewed = deskew_points(moving_sweep["lidar"], moving_sweep["timestamps"], _pose_at(0.0), end, 0.0, SWEEP)
    np.testing.assert_allclose(deskewed, moving_sweep["world"], atol=1e-9)
    at_image_time = (deskewed - end[:3, 3]) @ end[:3, :3]
    with_deskew = paint_points(
        at_image_time, moving_sweep["labels"], CAMERA, T_CAMERA_FROM_LIDAR, num_classes=2, occlusion="none"
    )
    without = paint_points(
        moving_sweep["lidar"], moving_sweep["labels"], CAMERA, T_CAMERA_FROM_LIDAR, num_classes=2, occlusion="none"
    )
    assert with_deskew.visible.all() and without.visible.all()
    assert np.mean(with_deskew.labels == moving_sweep["truth"]) > 0.99
    assert np.mean(without.labels == moving_sweep["truth"]) < 0.6  # half a metre off on average


def test_fuser_deskews_a_moving_scan_before_painting_and_fusion(moving_sweep):
    fuser = Fuser(2, 0.05, "bayes")
    fuser.add_lidar(
        moving_sweep["lidar"],
        moving_sweep["labels"],
        (CAMERA, T_CAMERA_FROM_LIDAR),
        _pose_at(0.0),
        occlusion="none",
        timestamps=moving_sweep["timestamps"],
        pose_end=_pose_at(SWEEP),
        scan_time=(0.0, SWEEP),
        image_time=SWEEP,
    )
    labels = fuser.labels(moving_sweep["world"])
    assert np.mean(labels == moving_sweep["truth"]) > 0.97
    # The map is where the world is: every voxel's mean point lies on the wall's true extent.
    assert np.abs(fuser.voxel_points()[:, 1] - 5.0).max() < 1e-6
    assert fuser.voxel_points()[:, 0].min() > -1.5 - 1e-6
    with pytest.raises(ValueError, match="timestamps must be \\(N,\\) with N=30000"):
        fuser.add_lidar(
            moving_sweep["lidar"],
            moving_sweep["labels"],
            (CAMERA, T_CAMERA_FROM_LIDAR),
            timestamps=moving_sweep["timestamps"][:-1],
            pose_end=_pose_at(SWEEP),
        )
    with pytest.raises(ValueError, match="needs both timestamps"):
        fuser.add_lidar(
            moving_sweep["lidar"],
            moving_sweep["labels"],
            (CAMERA, T_CAMERA_FROM_LIDAR),
            timestamps=moving_sweep["timestamps"],
        )


def test_interpolated_pose_rotates_along_the_geodesic():
    end = np.eye(4)
    end[:3, :3] = rotation_between([1.0, 0.0, 0.0], [0.0, 1.0, 0.0])  # 90 degrees about z
    end[:3, 3] = [2.0, 0.0, 0.0]
    half = interpolate_pose(np.eye(4), end, 0.5)
    np.testing.assert_allclose(half[:3, :3] @ [1.0, 0.0, 0.0], [np.sqrt(0.5), np.sqrt(0.5), 0.0], atol=1e-12)
    np.testing.assert_allclose(half[:3, 3], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(interpolate_pose(np.eye(4), end, 1.0), end, atol=1e-12)
    with pytest.raises(ValueError, match="timestamps must be \\(N,\\)"):
        deskew_points(np.zeros((3, 3)), np.zeros(2), np.eye(4), end, 0.0, 1.0)


def _normal_angle_to_z(points: np.ndarray) -> float:
    """Degrees between +z and the least-squares normal of points on a plane."""
    normal = np.linalg.svd(points - points.mean(axis=0), full_matrices=False)[2][2]
    return float(np.degrees(np.arccos(abs(normal[2]))))


def test_gravity_from_an_imu_vector():
    tilt = rotation_between([0.0, 0.0, 1.0], [0.3, -0.2, 1.0])  # the sensor's up, seen in its frame
    T_up_from_sensor = gravity_alignment(imu_acceleration=tilt @ [0.0, 0.0, 9.81])
    np.testing.assert_allclose(T_up_from_sensor[:3, :3] @ tilt, np.eye(3), atol=1e-12)
    np.testing.assert_array_equal(T_up_from_sensor[:3, 3], 0.0)
    with pytest.raises(ValueError, match="exactly one of imu_acceleration"):
        gravity_alignment()
    with pytest.raises(ValueError, match="imu_acceleration must be a finite non-zero"):
        gravity_alignment(imu_acceleration=[0.0, 0.0, 0.0])


@pytest.mark.parametrize("tilt", [(0.0, 0.0, 1.0), (0.2, 0.1, 1.0), (-0.3, 0.25, 1.0)])
def test_gravity_from_the_road_of_a_real_kitti_scan(shared_data, tilt):
    scan = read_velodyne_bin(shared_data / "kitti" / "000000" / "velodyne.bin")[:, :3].astype(np.float64)
    # KITTI's Velodyne is level: the road, 1.73 m below it, is the ground truth.
    road = (np.abs(scan[:, 2] + 1.73) < 0.15) & (np.hypot(scan[:, 0], scan[:, 1]) < 20.0)
    assert road.sum() > 10000 and _normal_angle_to_z(scan[road]) < 1.0
    tilted = scan @ rotation_between([0.0, 0.0, 1.0], tilt).T  # a sensor mounted up to 20 degrees off
    T_up_from_sensor = gravity_alignment(points=tilted)
    aligned = tilted @ T_up_from_sensor[:3, :3].T
    assert _normal_angle_to_z(aligned[road]) < 2.0


def test_gravity_from_the_floor_of_a_real_nyu_frame(shared_data):
    folder = shared_data / "nyu1407"
    frame = read_nyu_frame(folder / "images.png", folder / "depth.png", folder / "DERIVED_class13_1407_crop425x560.png")
    backprojected = backproject_depth(np.array(Image.open(folder / "depth.png")), frame["camera"], 1000.0, 10.0)
    floor = backprojected.take(frame["label_image"]) == 5  # class 5 = floor
    assert floor.sum() > 10000
    # A hand-held camera: x right, y down, z forward, pitched down at the floor.
    T_up_from_camera = gravity_alignment(points=backprojected.points, up_hint=(0.0, -1.0, 0.0))
    aligned = backprojected.points @ T_up_from_camera[:3, :3].T
    assert _normal_angle_to_z(aligned[floor]) < 2.0
    assert np.median(aligned[floor][:, 2]) < np.median(aligned[~floor][:, 2])  # the floor is below the rest
