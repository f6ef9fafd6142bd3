"""PinholeCamera conversions and calibration-file readers, checked by hand and on real files."""

import json

import numpy as np
import pytest

from pcseg.bridge import KittiCalibration, PinholeCamera, read_sunrgbd_toolbox_calib


def test_matrix_round_trip_and_one_based_shift():
    camera = PinholeCamera(500.0, 510.0, 319.5, 239.5, 640, 480)
    assert PinholeCamera.from_matrix(camera.matrix, 640, 480) == camera
    # MATLAB publishes the same camera with the principal point one pixel larger.
    np.testing.assert_array_equal(camera.matrix_one_based[:2, 2], [320.5, 240.5])
    assert PinholeCamera.from_matrix_one_based(camera.matrix_one_based, 640, 480) == camera
    assert PinholeCamera.from_one_based(500.0, 510.0, 320.5, 240.5, 640, 480) == camera


def test_open3d_round_trip():
    camera = PinholeCamera(525.0, 526.0, 319.5, 239.5, 640, 480)
    intrinsic = camera.to_open3d()
    assert (intrinsic.width, intrinsic.height) == (640, 480)
    np.testing.assert_array_equal(np.asarray(intrinsic.intrinsic_matrix), camera.matrix)
    assert PinholeCamera.from_open3d(intrinsic) == camera


def test_cropped_camera_matches_published_nyu_crop(shared_data):
    published = json.loads((shared_data / "nyu1407" / "DERIVED_intrinsics.json").read_text())
    full, crop = published["full_640x480"], published["cropped_560x425"]
    full_camera = PinholeCamera.from_one_based(full["fx"], full["fy"], full["cx"], full["cy"], 640, 480)
    # cropIt.m keeps rows 46:470 and columns 41:600 (1-based): 0-based top=45, left=40.
    cropped = full_camera.cropped(left=40, top=45, width=560, height=425)
    expected = PinholeCamera.from_one_based(crop["fx"], crop["fy"], crop["cx"], crop["cy"], 560, 425)
    assert cropped == expected


def test_scaled_camera_keeps_image_edges():
    camera = PinholeCamera(500.0, 500.0, 319.5, 239.5, 640, 480)
    half = camera.scaled(0.5)
    assert (half.width, half.height, half.fx) == (320, 240, 250.0)
    # The centre of the image stays the centre: (W - 1) / 2 in both.
    assert (half.cx, half.cy) == (159.5, 119.5)


def test_sunrgbd_intrinsics_file_is_one_based(shared_data):
    frame = next((shared_data / "sunrgbd" / "raw").iterdir())
    camera = PinholeCamera.from_sunrgbd_intrinsics(frame / "intrinsics.txt", 730, 530)
    # The file says cx = 365, cy = 265 for MATLAB's 1-based pixels.
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == (529.5, 529.5, 364.0, 264.0)


def test_sunrgbd_intrinsics_round_trip(tmp_path):
    camera = PinholeCamera(529.5, 529.5, 364.0, 264.0, 730, 530)
    camera.to_sunrgbd_intrinsics(tmp_path / "intrinsics.txt")
    assert (tmp_path / "intrinsics.txt").read_text().split()[:3] == ["529.500000", "0.000000", "365.000000"]
    assert PinholeCamera.from_sunrgbd_intrinsics(tmp_path / "intrinsics.txt", 730, 530) == camera


def test_sunrgbd_toolbox_calib_is_column_major(shared_data):
    camera, T_camera_from_upright = read_sunrgbd_toolbox_calib(
        shared_data / "sunrgbd" / "votenet" / "calib" / "000001.txt", 730, 530
    )
    assert (camera.fx, camera.cx, camera.cy) == (529.5, 364.0, 264.0)
    rotation = T_camera_from_upright[:3, :3]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-4)
    # The upright z axis (up) must point roughly along the camera's -y (image up).
    assert (rotation @ np.array([0.0, 0.0, 1.0]))[1] < -0.9


def test_kitti_calibration_matches_direct_projection(shared_data):
    calibration = KittiCalibration.from_file(shared_data / "kitti" / "000000" / "calib.txt")
    assert calibration.P.shape == (4, 3, 4)
    assert calibration.R0_rect[3, 3] == 1.0 and calibration.T_cam0_from_velo[3, 3] == 1.0
    rng = np.random.default_rng(0)
    points = rng.uniform([5, -10, -2], [40, 10, 2], size=(50, 3))
    homogeneous = np.concatenate([points, np.ones((50, 1))], axis=1)
    for index in range(4):
        direct = homogeneous @ calibration.projection_from_velo(index).T
        direct_pixels = direct[:, :2] / direct[:, 2:]
        camera, T_cam_from_velo = calibration.camera(index, 1242, 375)
        in_camera = homogeneous @ T_cam_from_velo.T
        pixels = in_camera[:, :2] / in_camera[:, 2:3] * [camera.fx, camera.fy] + [camera.cx, camera.cy]
        np.testing.assert_allclose(pixels, direct_pixels, atol=1e-9)
        # The pose stays rigid: the baseline is a translation only.
        np.testing.assert_allclose(T_cam_from_velo[:3, :3] @ T_cam_from_velo[:3, :3].T, np.eye(3), atol=1e-5)


def test_bad_intrinsics_raise_named_errors(tmp_path):
    with pytest.raises(ValueError, match="intrinsics must be a 3x3"):
        PinholeCamera.from_matrix(np.eye(2), 10, 10)
    with pytest.raises(ValueError, match="no skew"):
        PinholeCamera.from_matrix([[500, 3, 10], [0, 500, 10], [0, 0, 1]], 20, 20)
    with pytest.raises(ValueError, match="width and height"):
        PinholeCamera(500, 500, 10, 10, 0, 20)
    with pytest.raises(ValueError, match="fx must be finite"):
        PinholeCamera(float("nan"), 500, 10, 10, 20, 20)
    bad = tmp_path / "calib.txt"
    bad.write_text("P0: 1 2 3\n")
    with pytest.raises(ValueError, match="P0 must have 12 numbers"):
        KittiCalibration.from_file(bad)


def test_principal_point_outside_the_image_is_refused_where_intrinsics_meet_a_size(shared_data):
    # Intrinsics of a 6000x4000 sensor paired with a 640x480 image.
    with pytest.raises(ValueError, match=r"principal point \(cx, cy\) = \(3000, 2000\) lies outside the 640x480"):
        PinholeCamera(500, 500, 3000, 2000, 640, 480)
    with pytest.raises(ValueError, match="outside the 640x480 image"):
        PinholeCamera.from_matrix([[500, 0, -10], [0, 500, 240], [0, 0, 1]], 640, 480)
    with pytest.raises(ValueError, match="outside the 160x120 image"):
        PinholeCamera.from_one_based(500, 500, 320.5, 240.5, 160, 120)  # 640x480 K, quarter-size image
    # The image edges themselves are allowed (a 1-pixel camera, half-pixel conventions).
    assert PinholeCamera(1.0, 1.0, 0.0, 0.0, 2, 1).cx == 0.0
    assert PinholeCamera(1.0, 1.0, 2.0, 1.0, 2, 1).cy == 1.0
    # Derived cameras may legitimately move it out: the right half of a 640x480 image.
    camera = PinholeCamera(500.0, 500.0, 319.5, 239.5, 640, 480)
    right = camera.cropped(left=400, top=0, width=240, height=480)
    assert right.cx == -80.5 and right == PinholeCamera._derived(500.0, 500.0, -80.5, 239.5, 240, 480)
    assert right.scaled(0.5).cx == (-80.5 + 0.5) * 0.5 - 0.5
    assert repr(right).startswith("PinholeCamera(fx=500.0")
    # KITTI's P2 fits its image (the SUN RGB-D readers are checked by the tests above).
    folder = shared_data / "kitti" / "000000"
    calibration = KittiCalibration.from_file(folder / "calib.txt")
    calibration.camera(2, 1224, 370)
    with pytest.raises(ValueError, match="outside the 600x185 image"):
        calibration.camera(2, 600, 185)  # cx = 604 from the full-size calibration
