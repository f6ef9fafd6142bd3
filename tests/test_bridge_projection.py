"""project_points, paint_points and render_labels: hand cases, real frames, bad input."""

import json

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from pcseg.bridge import (
    KittiCalibration,
    PinholeCamera,
    backproject_depth,
    paint_points,
    project_points,
    read_sunrgbd_toolbox_calib,
    render_labels,
)
from pcseg.testing import DEVICES

# A 4x3 image seen by a camera at the origin looking down +z.
CAMERA = PinholeCamera(fx=2.0, fy=2.0, cx=1.5, cy=1.0, width=4, height=3)


def _point_at(u, v, depth):
    """The camera-frame point that projects to pixel (u, v) at `depth`."""
    return [(u - CAMERA.cx) / CAMERA.fx * depth, (v - CAMERA.cy) / CAMERA.fy * depth, depth]


# ----- project_points ------------------------------------------------------------------------
def test_project_points_hand_cases_and_pixel_borders():
    points = np.array(
        [
            _point_at(0.0, 0.0, 1.0),  # centre of the top-left pixel
            _point_at(3.49, 2.49, 2.0),  # just inside the bottom-right pixel
            _point_at(3.5, 1.0, 2.0),  # on the right border: outside (pixels are [c - 0.5, c + 0.5))
            _point_at(-0.5, 1.0, 2.0),  # on the left border: inside
            [0.0, 0.0, -1.0],  # behind the camera, would land on (cx, cy)
            [0.0, 0.0, 0.0],  # at the optical centre
        ]
    )
    pixels, depth, in_image = project_points(points, CAMERA)
    np.testing.assert_allclose(pixels[:4], [[0, 0], [3.49, 2.49], [3.5, 1.0], [-0.5, 1.0]], atol=1e-12)
    np.testing.assert_array_equal(depth, [1, 2, 2, 2, -1, 0])
    np.testing.assert_array_equal(in_image, [True, True, False, True, False, False])


@pytest.mark.parametrize("device", DEVICES)
def test_project_points_torch_in_torch_out_with_pose(device):
    T_camera_from_world = np.eye(4)
    T_camera_from_world[:3, 3] = [0.0, 0.0, 5.0]  # the world origin is 5 m in front
    points = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -6.0]], device=device)
    pixels, depth, in_image = project_points(points, CAMERA, T_camera_from_world)
    assert pixels.device.type == device and pixels.dtype == torch.float32
    torch.testing.assert_close(pixels[0], torch.tensor([1.5, 1.0], device=device))
    assert in_image.tolist() == [True, False]  # the second point is 1 m behind the camera
    torch.testing.assert_close(depth, torch.tensor([5.0, -1.0], device=device))


# ----- paint_points --------------------------------------------------------------------------
def test_paint_label_map_zbuffer_occlusion_and_tolerance():
    label_map = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]], dtype=np.int64)
    points = np.array(
        [
            _point_at(1, 1, 2.0),  # pixel (1, 1), label 5, nearest there
            _point_at(1, 1, 4.0),  # same pixel, 2 m behind: occluded
            _point_at(1, 1, 2.05),  # same pixel, within the 0.1 m + 1 % tolerance: visible
            _point_at(3, 2, 1.0),  # pixel (3, 2), label 11
            [0.0, 0.0, -2.0],  # behind the camera
            _point_at(9, 1, 1.0),  # right of the image
        ]
    )
    painted = paint_points(points, label_map, CAMERA, num_classes=12)
    np.testing.assert_array_equal(painted.labels, [5, -1, 5, 11, -1, -1])
    np.testing.assert_array_equal(painted.visible, [True, False, True, True, False, False])
    np.testing.assert_array_equal(painted.occluded, [False, True, False, False, False, False])
    np.testing.assert_array_equal(painted.in_image, [True, True, True, True, False, False])
    expected = np.zeros((6, 12), np.float32)
    expected[[0, 2], 5] = 1.0
    expected[3, 11] = 1.0
    np.testing.assert_array_equal(painted.probabilities, expected)
    # Without occlusion the hidden point takes the label of its pixel, as PointPainting does.
    unoccluded = paint_points(points, label_map, CAMERA, num_classes=12, occlusion="none")
    np.testing.assert_array_equal(unoccluded.labels, [5, 5, 5, 11, -1, -1])


def test_paint_zbuffer_radius_closes_gaps_between_sparse_points():
    scores = np.full((2, 3, 4), 0.5, dtype=np.float32)
    near = _point_at(1, 1, 1.0)
    behind_in_the_gap = _point_at(2, 1, 5.0)  # the next pixel, far behind the near point
    painted = paint_points(np.array([near, behind_in_the_gap]), scores, CAMERA)
    assert painted.visible.tolist() == [True, True]
    painted = paint_points(np.array([near, behind_in_the_gap]), scores, CAMERA, zbuffer_radius=1)
    assert painted.visible.tolist() == [True, False] and painted.occluded.tolist() == [False, True]


def test_paint_against_depth_image():
    depth_image = np.full((3, 4), 3.0, dtype=np.float32)
    depth_image[0, 0] = 0.0  # no depth measured: occludes nothing
    points = np.array([_point_at(1, 1, 2.0), _point_at(2, 2, 3.5), _point_at(0, 0, 50.0)])
    scores = np.random.default_rng(0).random((5, 3, 4)).astype(np.float32)
    painted = paint_points(points, scores, CAMERA, occlusion="depth", depth_image=depth_image)
    assert painted.visible.tolist() == [True, False, True]
    np.testing.assert_array_equal(painted.probabilities[0], scores[:, 1, 1])
    np.testing.assert_array_equal(painted.probabilities[2], scores[:, 0, 0])


def test_paint_logits_bilinear_matches_hand_interpolation():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 3, 4)).astype(np.float64)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=0)
    u, v = 1.25, 0.5
    painted = paint_points(
        np.array([_point_at(u, v, 2.0)]), logits, CAMERA, scores="logits", sampling="bilinear", occlusion="none"
    )
    expected = (
        0.75 * 0.5 * probabilities[:, 0, 1]
        + 0.25 * 0.5 * probabilities[:, 0, 2]
        + 0.75 * 0.5 * probabilities[:, 1, 1]
        + 0.25 * 0.5 * probabilities[:, 1, 2]
    )
    assert painted.probabilities.dtype == np.float64
    np.testing.assert_allclose(painted.probabilities[0], expected, atol=1e-12)
    assert painted.labels[0] == np.argmax(expected)
    # Nearest sampling of logits: the softmax of the pixel the point falls in; v = 0.5 is
    # the border between rows 0 and 1 and belongs to row 1 (pixels span [r - 0.5, r + 0.5)).
    nearest = paint_points(np.array([_point_at(u, v, 2.0)]), logits, CAMERA, scores="logits")
    np.testing.assert_allclose(nearest.probabilities[0], probabilities[:, 1, 1], atol=1e-12)


def test_paint_bad_input_raises_named_errors():
    points = np.array([_point_at(1, 1, 2.0)])
    with pytest.raises(ValueError, match=r"segmentation has shape \(3, 5\)"):
        paint_points(points, np.zeros((3, 5), np.int64), CAMERA, num_classes=2)
    with pytest.raises(ValueError, match="num_classes is required"):
        paint_points(points, np.zeros((3, 4), np.int64), CAMERA)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        paint_points(points, np.full((3, 4), 7), CAMERA, num_classes=2)
    with pytest.raises(ValueError, match="points is empty"):
        paint_points(np.zeros((0, 3)), np.zeros((3, 4), np.int64), CAMERA, num_classes=2)
    with pytest.raises(ValueError, match=r"points must be \(N, 3\)"):
        project_points(np.zeros((5, 2)), CAMERA)
    pose = np.eye(4)
    pose[1, 1] = np.nan
    with pytest.raises(ValueError, match="T_camera_from_points has non-finite"):
        project_points(points, CAMERA, pose)
    projective = np.eye(4)
    projective[3, 2] = 1.0
    with pytest.raises(ValueError, match=r"must have last row \[0, 0, 0, 1\]"):
        project_points(points, CAMERA, projective)
    # A pose that went through inversions carries rounding noise in its last row: accepted.
    noisy = np.eye(4)
    noisy[3, :3] = 1e-12
    assert project_points(points, CAMERA, noisy).in_image.all()
    with pytest.raises(ValueError, match=r"depth_image has shape \(4, 3\)"):
        paint_points(points, np.zeros((2, 3, 4), np.float32), CAMERA, occlusion="depth", depth_image=np.ones((4, 3)))
    with pytest.raises(ValueError, match="occlusion must be"):
        paint_points(points, np.zeros((2, 3, 4), np.float32), CAMERA, occlusion="zbufer")


def test_paint_refuses_tolerances_and_depth_images_that_would_silently_mislead():
    points = np.array([_point_at(1, 1, 2.0)])
    scores = np.zeros((2, 3, 4), np.float32)
    # A negative tolerance would let the only point of a pixel occlude itself.
    for option in ("occlusion_tolerance", "occlusion_tolerance_relative"):
        with pytest.raises(ValueError, match=f"{option} must be a finite number >= 0"):
            paint_points(points, scores, CAMERA, **{option: -0.05})
        with pytest.raises(ValueError, match=f"{option} must be a finite number >= 0"):
            paint_points(points, scores, CAMERA, **{option: float("nan")})
    assert paint_points(points, scores, CAMERA, occlusion_tolerance=0.0, occlusion_tolerance_relative=0.0).visible.all()
    with pytest.raises(ValueError, match="zbuffer_radius must be an integer >= 0"):
        paint_points(points, scores, CAMERA, zbuffer_radius=-1)
    # Raw uint16 millimetres read as metres would put every pixel 1000x too far: no occlusion at all.
    depth_mm = np.full((3, 4), 1000, np.uint16)  # 1 m, in front of the point at 2 m
    with pytest.raises(ValueError, match=r"depth_image must be float metres, got uint16 .*depth_mm / 1000.0"):
        paint_points(points, scores, CAMERA, occlusion="depth", depth_image=depth_mm)
    assert paint_points(points, scores, CAMERA, occlusion="depth", depth_image=depth_mm / 1000.0).occluded.all()
    # A depth image with another occlusion mode would be ignored.
    for occlusion in ("zbuffer", "none"):
        with pytest.raises(
            ValueError, match=f"depth_image is only used with occlusion='depth', got occlusion='{occlusion}'"
        ):
            paint_points(points, scores, CAMERA, occlusion=occlusion, depth_image=depth_mm / 1000.0)


# ----- render_labels -------------------------------------------------------------------------
def test_render_labels_keeps_the_nearest_point():
    points = np.array([_point_at(1, 1, 3.0), _point_at(1, 1, 2.0), _point_at(0, 2, 1.0), [0, 0, -1.0]])
    rendered = render_labels(points, np.array([7, 8, 9, 4]), CAMERA)
    expected = np.full((3, 4), -1)
    expected[1, 1], expected[2, 0] = 8, 9
    np.testing.assert_array_equal(rendered.labels, expected)
    assert rendered.point_index[1, 1] == 1 and rendered.depth[1, 1] == 2.0
    assert np.isinf(rendered.depth[0, 0]) and rendered.point_index[0, 0] == -1


# ----- real frames ---------------------------------------------------------------------------
def test_nyu1407_round_trip_reproduces_every_valid_label(shared_data):
    folder = shared_data / "nyu1407"
    depth = np.array(Image.open(folder / "rawdepth.png"))  # raw depth: has holes
    label_map = np.array(Image.open(folder / "DERIVED_class13_1407_crop425x560.png")).astype(np.int64)
    crop = json.loads((folder / "DERIVED_intrinsics.json").read_text())["cropped_560x425"]
    camera = PinholeCamera.from_one_based(crop["fx"], crop["fy"], crop["cx"], crop["cy"], 560, 425)
    points, pixels, valid = backproject_depth(depth, camera, 1000.0, 10.0)
    assert 0.5 * depth.size < valid.sum() < depth.size  # a real mix of holes and depth
    painted = paint_points(points, label_map, camera, num_classes=14)
    assert painted.visible.all()  # one point per pixel: nothing occludes anything
    np.testing.assert_array_equal(painted.labels, label_map[valid])
    rendered = render_labels(points, painted.labels, camera)
    np.testing.assert_array_equal(rendered.labels[valid], label_map[valid])
    assert (rendered.labels[~valid] == -1).all()
    np.testing.assert_array_equal(rendered.point_index[pixels[:, 1], pixels[:, 0]], np.arange(len(points)))


def test_sunrgbd_toolbox_points_land_on_their_colour(shared_data):
    folder = shared_data / "sunrgbd" / "votenet"
    cloud = scipy.io.loadmat(folder / "depth" / "000001.mat")["instance"]
    image = np.array(Image.open(folder / "image" / "000001.jpg"))
    camera, T_camera_from_upright = read_sunrgbd_toolbox_calib(
        folder / "calib" / "000001.txt", image.shape[1], image.shape[0]
    )
    pixels, depth, in_image = project_points(cloud[:, :3].astype(np.float64), camera, T_camera_from_upright)
    assert in_image.all() and (depth > 0).all()
    nearest = np.floor(pixels + 0.5).astype(np.int64)
    # The export samples pixel centres: projections land on integer 0-based coordinates.
    assert np.abs(pixels - nearest).max() < 0.01
    colours = image[nearest[:, 1], nearest[:, 0]] / 255.0
    assert np.abs(colours - cloud[:, 3:]).max() < 1e-6
    # With 1-based intrinsics used as if 0-based, most points would land on a neighbour pixel.
    shifted = image[
        np.clip(nearest[:, 1] + 1, 0, image.shape[0] - 1), np.clip(nearest[:, 0] + 1, 0, image.shape[1] - 1)
    ]
    assert np.mean(np.abs(shifted / 255.0 - cloud[:, 3:]).max(axis=1) < 1e-6) < 0.5


def _kitti(shared_data):
    folder = shared_data / "kitti" / "000000"
    scan = np.fromfile(folder / "velodyne.bin", dtype=np.float32).reshape(-1, 4)
    image = np.array(Image.open(folder / "image_2.png"))
    calibration = KittiCalibration.from_file(folder / "calib.txt")
    camera, T_cam_from_velo = calibration.camera(2, image.shape[1], image.shape[0])
    return scan[:, :3], image, camera, T_cam_from_velo, calibration


def test_kitti_points_in_image_and_never_from_behind(shared_data):
    points, image, camera, T_cam_from_velo, calibration = _kitti(shared_data)
    assert len(points) == 115_384
    pixels, depth, in_image = project_points(points, camera, T_cam_from_velo)
    assert 19_000 < in_image.sum() < 21_000
    assert (depth[in_image] > 0).all()
    # Every point behind the camera would land inside the image through the plain formula
    # for some of them (PointPainting's bug); none may be reported in it.
    homogeneous = np.concatenate([points, np.ones((len(points), 1), np.float32)], axis=1).astype(np.float64)
    direct = homogeneous @ calibration.projection_from_velo(2).T
    naive_u, naive_v = direct[:, 0] / direct[:, 2], direct[:, 1] / direct[:, 2]
    naive_inside = (
        (naive_u >= -0.5) & (naive_u < image.shape[1] - 0.5) & (naive_v >= -0.5) & (naive_v < image.shape[0] - 0.5)
    )
    behind = direct[:, 2] <= 0
    assert (naive_inside & behind).sum() > 1000
    assert not in_image[behind].any()
    np.testing.assert_array_equal(in_image, naive_inside & ~behind)


def test_kitti_zbuffer_reports_occluded_points(shared_data):
    points, image, camera, T_cam_from_velo, _ = _kitti(shared_data)
    scores = np.random.default_rng(0).random((20, image.shape[0], image.shape[1]), dtype=np.float32)
    painted = paint_points(points, scores, camera, T_cam_from_velo)
    assert painted.occluded.sum() > 10
    assert (painted.visible | painted.occluded | ~painted.in_image).all()
    assert not (painted.visible & painted.occluded).any()
    # Each occluded point shares its pixel with a visible point nearer by more than the tolerance.
    pixels, depth, in_image = project_points(points, camera, T_cam_from_velo)
    flat = (np.floor(pixels[:, 1] + 0.5) * image.shape[1] + np.floor(pixels[:, 0] + 0.5)).astype(np.int64)
    nearest = np.full(image.shape[0] * image.shape[1], np.inf)
    np.minimum.at(nearest, flat[in_image], depth[in_image])
    occluded = painted.occluded
    assert (depth[occluded] > nearest[flat[occluded]] + 0.1 + 0.01 * nearest[flat[occluded]]).all()
    np.testing.assert_array_equal(
        painted.probabilities[painted.visible].argmax(axis=1), painted.labels[painted.visible]
    )
    # A wider z-buffer footprint hides more of the background seen through LiDAR gaps.
    wider = paint_points(points, scores, camera, T_cam_from_velo, zbuffer_radius=2)
    assert wider.occluded.sum() > painted.occluded.sum()


@pytest.mark.parametrize("device", DEVICES)
def test_torch_device_results_equal_numpy_results(device, shared_data):
    points, image, camera, T_cam_from_velo, _ = _kitti(shared_data)
    scores = np.random.default_rng(0).random((4, image.shape[0], image.shape[1]), dtype=np.float32)
    expected = paint_points(points, scores, camera, T_cam_from_velo, zbuffer_radius=1)
    painted = paint_points(
        torch.from_numpy(points).to(device),
        torch.from_numpy(scores).to(device),
        camera,
        T_cam_from_velo,
        zbuffer_radius=1,
    )
    assert painted.probabilities.device.type == device
    for name in ("visible", "occluded", "in_image", "labels"):
        np.testing.assert_array_equal(getattr(painted, name).cpu().numpy(), getattr(expected, name), err_msg=name)
    rendered = render_labels(torch.from_numpy(points).to(device), painted.labels.clamp(min=0), camera, T_cam_from_velo)
    expected_render = render_labels(points, np.clip(expected.labels, 0, None), camera, T_cam_from_velo)
    np.testing.assert_array_equal(rendered.labels.cpu().numpy(), expected_render.labels)
