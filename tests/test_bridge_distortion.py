"""Lens distortion in PinholeCamera: OpenCV's projectPoints / fisheye.projectPoints as the oracle."""

import numpy as np
import pytest
import torch

from pcseg.bridge import PinholeCamera, backproject_depth, paint_points, project_points, render_labels

cv2 = pytest.importorskip("cv2")

WIDTH, HEIGHT = 640, 480
# Coefficients of the size real calibrations have (a RealSense / a wide-angle / a fisheye lens).
CAMERAS = {
    "plumb_bob": PinholeCamera(
        500.0, 505.0, 321.3, 238.7, WIDTH, HEIGHT, distortion=(-0.28, 0.09, 0.001, -0.0008, -0.012)
    ),
    "rational_polynomial": PinholeCamera(
        480.0,
        482.0,
        318.2,
        242.1,
        WIDTH,
        HEIGHT,
        distortion=(0.42, -0.05, 0.0006, 0.0011, -0.003, 0.78, 0.02, -0.01),
        distortion_model="rational_polynomial",
    ),
    "equidistant": PinholeCamera(
        285.0,
        286.0,
        322.0,
        240.5,
        WIDTH,
        HEIGHT,
        distortion=(-0.012, 0.045, -0.041, 0.0075),
        distortion_model="equidistant",
    ),
}


def _rays_through_whole_image(camera: PinholeCamera, depth: np.ndarray) -> np.ndarray:
    """(H*W, 3) float64 camera-frame points whose projections cover every pixel of the image
    (the pixel centres, back-projected by OpenCV's own undistortion), at depths `depth`."""
    columns, rows = np.meshgrid(np.arange(camera.width, dtype=np.float64), np.arange(camera.height, dtype=np.float64))
    pixels = np.stack([columns.ravel(), rows.ravel()], axis=1)[:, None, :]
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)
    coefficients = np.array(camera.distortion)
    if camera.distortion_model == "equidistant":
        normalised = cv2.fisheye.undistortPoints(pixels, camera.matrix, coefficients, criteria=criteria)
    else:
        normalised = cv2.undistortPoints(pixels, camera.matrix, coefficients, None, None, None, criteria)
    normalised = normalised.reshape(-1, 2)
    return np.concatenate([normalised * depth[:, None], depth[:, None]], axis=1)


def _opencv_pixels(points: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    zero = np.zeros(3)
    coefficients = np.array(camera.distortion)
    if camera.distortion_model == "equidistant":
        pixels, _ = cv2.fisheye.projectPoints(points[:, None, :], zero, zero, camera.matrix, coefficients)
    else:
        pixels, _ = cv2.projectPoints(points, zero, zero, camera.matrix, coefficients)
    return pixels.reshape(-1, 2)


@pytest.mark.parametrize("model", sorted(CAMERAS))
def test_projection_matches_opencv_over_the_whole_image(model):
    camera = CAMERAS[model]
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 30.0, WIDTH * HEIGHT)
    points = _rays_through_whole_image(camera, depth)
    expected = _opencv_pixels(points, camera)
    # The points reach the image's corners: the test covers the whole image.
    assert expected.min(axis=0).tolist() == pytest.approx([0, 0], abs=0.01)
    assert expected.max(axis=0).tolist() == pytest.approx([WIDTH - 1, HEIGHT - 1], abs=0.01)
    for dtype in (np.float64, np.float32):
        projected = project_points(points.astype(dtype), camera)
        assert np.abs(projected.pixels.astype(np.float64) - expected).max() < 0.01
        assert projected.in_image.all()


@pytest.mark.parametrize("model", sorted(CAMERAS))
def test_backprojection_of_a_distorted_depth_image_inverts_projection(model):
    camera = CAMERAS[model]
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.5, 8.0, (HEIGHT, WIDTH))
    backprojected = backproject_depth(depth, camera, 1.0, 100.0)
    assert backprojected.valid.all()
    projected = project_points(backprojected.points, camera)
    assert np.abs(projected.pixels - backprojected.pixels).max() < 1e-4
    assert np.allclose(backprojected.points[:, 2], depth.ravel())
    # OpenCV agrees on the rays.
    expected = _rays_through_whole_image(camera, depth.ravel())
    assert np.abs(backprojected.points - expected).max() < 1e-6 * 8.0


def test_no_distortion_is_the_default_and_all_zero_coefficients_are_plain_pinhole():
    plain = PinholeCamera(500.0, 500.0, 319.5, 239.5, WIDTH, HEIGHT)
    zero = PinholeCamera(500.0, 500.0, 319.5, 239.5, WIDTH, HEIGHT, distortion=(0.0,) * 5)
    assert plain.distortion == () and not plain.is_distorted and not zero.is_distorted
    points = np.random.default_rng(2).normal(size=(100, 3)) + [0, 0, 5]
    assert np.array_equal(project_points(points, plain).pixels, project_points(points, zero).pixels)


def test_points_outside_the_field_of_view_are_not_folded_into_the_image():
    # Strong barrel distortion: 1 + k1 r^2 turns negative at r^2 > 2, where a plain
    # evaluation of the polynomial would map points far to the side back into the image.
    camera = PinholeCamera(300.0, 300.0, 319.5, 239.5, WIDTH, HEIGHT, distortion=(-0.5, 0.0, 0.0, 0.0, 0.0))
    sideways = np.array([[3.0, 0.1, 1.0], [-2.5, -0.2, 1.0], [0.0, 0.0, 1.0]])
    assert project_points(sideways, camera).in_image.tolist() == [False, False, True]


def test_derived_cameras_keep_their_distortion():
    camera = CAMERAS["plumb_bob"]
    assert camera.cropped(10, 20, 100, 100).distortion == camera.distortion
    scaled = camera.scaled(0.5)
    assert scaled.distortion_model == "plumb_bob" and scaled.distortion == camera.distortion
    with pytest.raises(ValueError, match="no lens distortion"):
        camera.to_open3d()


def test_paint_and_render_use_the_distortion():
    camera = CAMERAS["rational_polynomial"]
    depth = np.full((HEIGHT, WIDTH), 2.0)
    labels = (np.arange(WIDTH * HEIGHT) % 7).reshape(HEIGHT, WIDTH)
    backprojected = backproject_depth(depth, camera, 1.0, 10.0)
    painted = paint_points(backprojected.points, labels, camera, num_classes=7, occlusion="none")
    assert painted.visible.all()
    assert np.array_equal(painted.labels, backprojected.take(labels))
    rendered = render_labels(torch.from_numpy(backprojected.points), torch.from_numpy(painted.labels), camera)
    assert np.array_equal(rendered.labels.numpy(), labels)


@pytest.mark.parametrize(
    "distortion, model, match",
    [
        ((0.1, 0.2, 0.0, 0.0), "plumb_bob", "must have 5 coefficients"),
        ((0.1,) * 5, "rational_polynomial", "must have 8 coefficients"),
        ((0.1,) * 5, "equidistant", "must have 4 coefficients"),
        ((0.1,) * 5, "fisheye", "distortion_model must be one of"),
        ((float("nan"),) * 5, "plumb_bob", "finite"),
    ],
)
def test_bad_distortion_is_refused_naming_the_field(distortion, model, match):
    with pytest.raises(ValueError, match=match):
        PinholeCamera(500.0, 500.0, 319.5, 239.5, WIDTH, HEIGHT, distortion=distortion, distortion_model=model)
