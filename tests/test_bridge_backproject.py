"""backproject_depth against hand computation, Open3D and real frames."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pcseg.bridge import PinholeCamera, backproject_depth, decode_sunrgbd_depth, read_sunrgbd_extrinsics


def _nyu1407(shared_data):
    folder = shared_data / "nyu1407"
    depth = np.array(Image.open(folder / "depth.png"))
    color = np.array(Image.open(folder / "images.png"))
    crop = json.loads((folder / "DERIVED_intrinsics.json").read_text())["cropped_560x425"]
    camera = PinholeCamera.from_one_based(crop["fx"], crop["fy"], crop["cx"], crop["cy"], 560, 425)
    return depth, color, camera


def test_hand_computed_points_pixels_and_mask():
    camera = PinholeCamera(2.0, 4.0, 1.0, 0.5, 3, 2)
    # 3500 is exactly depth_trunc: Open3D drops it, so do we.
    depth = np.array([[1000, 0, 2000], [3500, 3000, 500]], dtype=np.uint16)
    points, pixels, valid = backproject_depth(depth, camera, depth_scale=1000.0, depth_trunc=3.5)
    np.testing.assert_array_equal(valid, [[True, False, True], [False, True, True]])
    np.testing.assert_array_equal(pixels, [[0, 0], [2, 0], [1, 1], [2, 1]])
    expected = [
        [(0 - 1.0) * 1.0 / 2.0, (0 - 0.5) * 1.0 / 4.0, 1.0],
        [(2 - 1.0) * 2.0 / 2.0, (0 - 0.5) * 2.0 / 4.0, 2.0],
        [(1 - 1.0) * 3.0 / 2.0, (1 - 0.5) * 3.0 / 4.0, 3.0],
        [(2 - 1.0) * 0.5 / 2.0, (1 - 0.5) * 0.5 / 4.0, 0.5],
    ]
    np.testing.assert_allclose(points, expected, rtol=1e-6)
    assert points.dtype == np.float32 and pixels.dtype == np.int64


def test_float_depth_with_nan_and_pose_in_torch():
    camera = PinholeCamera(1.0, 1.0, 0.0, 0.0, 2, 1)
    depth = torch.tensor([[2.0, float("nan")]], dtype=torch.float64)
    pose = np.eye(4)
    pose[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90 degrees about z
    pose[:3, 3] = [10, 20, 30]
    points, pixels, valid = backproject_depth(depth, camera, 1.0, float("inf"), pose=pose)
    assert isinstance(points, torch.Tensor) and points.dtype == torch.float64
    assert valid.tolist() == [[True, False]]
    # camera point (0, 0, 2) -> world (10, 20, 32)
    torch.testing.assert_close(points, torch.tensor([[10.0, 20.0, 32.0]], dtype=torch.float64))


def test_matches_open3d_on_nyu1407(shared_data):
    import open3d

    depth, color, camera = _nyu1407(shared_data)
    pose = np.eye(4)
    pose[:3, :3] = [[0.6, -0.8, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]]
    pose[:3, 3] = [1.0, -2.0, 0.5]
    points, pixels, valid = backproject_depth(depth, camera, 1000.0, 5.0, pose=pose)
    rgbd = open3d.geometry.RGBDImage.create_from_color_and_depth(
        open3d.geometry.Image(np.ascontiguousarray(color)), open3d.geometry.Image(depth), 1000.0, 5.0, False
    )
    # Open3D takes the extrinsic camera_from_world.
    cloud = open3d.geometry.PointCloud.create_from_rgbd_image(rgbd, camera.to_open3d(), np.linalg.inv(pose))
    reference = np.asarray(cloud.points)
    assert points.shape == reference.shape and 100_000 < len(points) < depth.size  # depth_trunc cut some
    assert np.abs(points - reference).max() < 1e-5
    # The colour transfer through `valid` is Open3D's colour transfer.
    np.testing.assert_allclose(color[valid] / 255.0, np.asarray(cloud.colors), atol=1e-12)
    np.testing.assert_array_equal(color[pixels[:, 1], pixels[:, 0]], color[valid])


def test_take_transfers_pixel_data_in_point_order(shared_data):
    depth, color, camera = _nyu1407(shared_data)
    depth = np.array(Image.open(shared_data / "nyu1407" / "rawdepth.png"))  # with holes
    result = backproject_depth(depth, camera, 1000.0, 10.0)
    assert not result.valid.all()
    np.testing.assert_array_equal(result.take(color), color[result.valid])
    labels = np.array(Image.open(shared_data / "nyu1407" / "DERIVED_class13_1407_crop425x560.png"))
    np.testing.assert_array_equal(result.take(labels), labels[result.valid])
    scores = np.random.default_rng(0).random((4,) + depth.shape, dtype=np.float32)
    np.testing.assert_array_equal(result.take(scores, channels_first=True), scores[:, result.valid].T)
    torch_result = backproject_depth(torch.from_numpy(depth.astype(np.int32)), camera, 1000.0, 10.0)
    taken = torch_result.take(torch.from_numpy(color))
    assert isinstance(taken, torch.Tensor)
    np.testing.assert_array_equal(taken.numpy(), color[result.valid])
    with pytest.raises(ValueError, match="image must be"):
        result.take(color[:10])


def test_sunrgbd_raw_frame_floor_is_horizontal(shared_data):
    frame = next((shared_data / "sunrgbd" / "raw").iterdir())
    depth = decode_sunrgbd_depth(np.array(Image.open(next((frame / "depth").glob("*.png")))))
    height, width = depth.shape
    camera = PinholeCamera.from_sunrgbd_intrinsics(frame / "intrinsics.txt", width, height)
    pose = read_sunrgbd_extrinsics(next((frame / "extrinsics").glob("*.txt")))
    points, _, _ = backproject_depth(depth, camera, 1000.0, 8.0, pose=pose)
    heights = points[:, 2].astype(np.float64)
    # The camera looks down at the floor: the lowest tenth of the points is floor.
    floor = points[heights < np.quantile(heights, 0.1)].astype(np.float64)
    assert len(floor) > 10_000
    centred = floor - floor.mean(axis=0)
    normal = np.linalg.svd(centred, full_matrices=False)[2][2]
    tilt_degrees = np.degrees(np.arccos(abs(normal[2])))
    # The file's rotation applied before the axis swap instead of after gives 0.62 degrees
    # and 7.3 mm here; the toolbox's order gives 0.52 degrees and 6.4 mm (README: 4-7 mm).
    assert tilt_degrees < 0.58, tilt_degrees
    assert np.std(centred[:, 2]) < 0.007
    assert np.std(centred @ normal) < 0.0065


def test_bad_input_raises_named_errors():
    camera = PinholeCamera(500.0, 500.0, 319.5, 239.5, 640, 480)
    with pytest.raises(ValueError, match=r"depth has shape \(480, 320\).*640x480"):
        backproject_depth(np.ones((480, 320), np.uint16), camera, 1000.0, 3.0)
    with pytest.raises(ValueError, match="depth must be a 2D"):
        backproject_depth(np.ones((480, 640, 1), np.uint16), camera, 1000.0, 3.0)
    pose = np.eye(4)
    pose[0, 3] = np.inf
    with pytest.raises(ValueError, match=r"pose \(T_world_from_camera\) has non-finite"):
        backproject_depth(np.ones((480, 640), np.uint16), camera, 1000.0, 3.0, pose=pose)
    with pytest.raises(ValueError, match="depth_scale"):
        backproject_depth(np.ones((480, 640), np.uint16), camera, 0.0, 3.0)


def test_pose_keyword_is_T_world_from_camera():
    # The signature of the issue: backproject_depth(depth, camera, depth_scale, depth_trunc, pose=None).
    camera = PinholeCamera(2.0, 2.0, 0.5, 0.5, 2, 2)
    depth = np.full((2, 2), 2.0, np.float32)
    T_world_from_camera = np.eye(4)
    T_world_from_camera[:3, 3] = [10.0, 0.0, 0.0]
    in_camera = backproject_depth(depth, camera, 1.0, 5.0).points
    in_world = backproject_depth(depth, camera, 1.0, 5.0, pose=T_world_from_camera).points
    np.testing.assert_allclose(in_world, in_camera + [10.0, 0.0, 0.0])
    positional = backproject_depth(depth, camera, 1.0, 5.0, T_world_from_camera).points
    np.testing.assert_array_equal(positional, in_world)
    with pytest.raises(TypeError):
        backproject_depth(depth, camera, 1.0, 5.0, T_world_from_camera=T_world_from_camera)
