"""SUN RGB-D and NYU Depth v2 frames from the real samples: shapes, units, orientation."""

import shutil

import numpy as np
import pytest
from PIL import Image

from pcseg.bridge.projection import project_points
from pcseg.data.nyu import nyu_camera, read_nyu_frame
from pcseg.data.sunrgbd import read_sunrgbd_frame, read_sunrgbd_label, read_sunrgbd_toolbox_sample


def _sun_frame(shared_data):
    return next((shared_data / "sunrgbd" / "raw").iterdir())


def _floor_plane(points: np.ndarray) -> tuple[float, float]:
    """(tilt of the fitted floor plane from horizontal in degrees, residual std in metres):
    a least-squares plane z = a x + b y + c refined on the points within 2 cm of it,
    starting from the most populated height."""
    z = points[:, 2]
    counts, edges = np.histogram(z, bins=200)
    inliers = np.abs(z - edges[counts.argmax()]) < 0.03
    design = np.c_[points[:, :2], np.ones(len(points))]
    for _ in range(4):
        plane, *_ = np.linalg.lstsq(design[inliers], z[inliers], rcond=None)
        residual = z - design @ plane
        inliers = np.abs(residual) < 0.02
    return float(np.degrees(np.arctan(np.hypot(plane[0], plane[1])))), float(residual[inliers].std())


def test_sunrgbd_frame_is_upright_in_metres(shared_data):
    frame = read_sunrgbd_frame(_sun_frame(shared_data))
    assert frame["image"].shape == (530, 730, 3) and frame["depth"].shape == (530, 730)
    n = frame["valid"].sum()
    assert frame["coord"].shape == (n, 3) and frame["color"].shape == (n, 3) and n > 300_000
    # depth decoded from the bit-rotated PNG: an office seen from ~1.3 m, readings within 0.5..8 m
    assert 0.4 < frame["depth"][frame["valid"]].min() and frame["depth"].max() < 8.0
    tilt, flatness = _floor_plane(frame["coord"].astype(np.float64))
    # the camera is tilted ~20 deg down; after the extrinsics the floor is horizontal
    assert tilt < 2.0 and flatness < 0.01, (tilt, flatness)
    floor_height = np.percentile(frame["coord"][:, 2], 5)
    assert -1.6 < floor_height < -1.0  # the floor lies ~1.3 m below the camera
    camera_frame_points = frame["coord"] @ frame["T_world_from_camera"][:3, :3]  # rotate back
    tilt_raw, _ = _floor_plane(np.c_[camera_frame_points[:, 0], camera_frame_points[:, 2], -camera_frame_points[:, 1]])
    assert tilt_raw > 15.0  # without the extrinsics it is not


def test_sunrgbd_toolbox_points_project_onto_their_pixels(shared_data):
    sample = read_sunrgbd_toolbox_sample(shared_data / "sunrgbd" / "votenet", 1)
    assert sample["coord"].shape == (280_961, 3) and sample["image"].shape == (530, 730, 3)
    projected = project_points(
        sample["coord"][:2000].astype(np.float64), sample["camera"], sample["T_camera_from_upright"]
    )
    pixels = np.floor(projected.pixels + 0.5).astype(int)
    assert projected.in_image.all()
    colours = sample["image"][pixels[:, 1], pixels[:, 0]] / 255.0
    # the export's colours are the pixels' colours (README: exact to 1e-8)
    np.testing.assert_allclose(colours, sample["color"][:2000], atol=1e-6)


def test_nyu_1407_frame(shared_data):
    folder = shared_data / "nyu1407"
    frame = read_nyu_frame(
        folder / "images.png", folder / "depth.png", folder / "DERIVED_class13_1407_crop425x560.png", num_classes=13
    )
    assert frame["camera"] == nyu_camera(cropped=True)
    assert frame["camera"].cx == pytest.approx(285.58244941119034 - 1.0)
    # the filled depth has a reading at every pixel: one point per pixel, in metres
    assert frame["coord"].shape == (425 * 560, 3)
    z = frame["coord"][:, 2]
    assert 1.9 < z.min() and z.max() < 9.5
    depth_png = np.array(Image.open(folder / "depth.png"))
    np.testing.assert_allclose(z, depth_png.reshape(-1) / 1000.0, rtol=1e-6)
    labels = frame["label"]
    assert labels.shape == (425 * 560,) and labels.max() <= 13
    # camera frame, y down: the "floor" (label 5) lies below the camera and below the "wall" (12) points
    floor_y = frame["coord"][labels == 5, 1].mean()
    wall_y = frame["coord"][labels == 12, 1].mean()
    assert floor_y > 0.5 and floor_y > wall_y + 0.5


def test_bad_frames_name_the_file(shared_data, tmp_path):
    folder = shared_data / "nyu1407"
    # depth and colour of different sizes
    small = tmp_path / "depth_small.png"
    Image.fromarray(np.array(Image.open(folder / "depth.png"))[:400]).save(small)
    with pytest.raises(ValueError, match="depth_small.png is 560x400 but .*images.png is 560x425"):
        read_nyu_frame(folder / "images.png", small)
    # labels out of range for the 13-class set
    bad_label = tmp_path / "label.png"
    Image.fromarray(np.full((425, 560), 14, dtype=np.uint8)).save(bad_label)
    with pytest.raises(ValueError, match="label.png: labels must be in 0..13"):
        read_nyu_frame(folder / "images.png", folder / "depth.png", bad_label)
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        read_nyu_frame(folder / "images.png", tmp_path / "nothing.png")
    # a SUN RGB-D frame whose depth lost its bottom rows
    frame = tmp_path / "frame"
    shutil.copytree(_sun_frame(shared_data), frame)
    depth_file = next((frame / "depth").glob("*.png"))
    Image.fromarray(np.array(Image.open(depth_file))[:500]).save(depth_file)
    with pytest.raises(ValueError, match=f"{depth_file.name} is 730x500"):
        read_sunrgbd_frame(frame)
    with pytest.raises(FileNotFoundError, match="missing_frame"):
        read_sunrgbd_frame(tmp_path / "missing_frame")
    label = tmp_path / "label37.png"
    Image.fromarray(np.full((530, 730), 38, dtype=np.uint8)).save(label)
    with pytest.raises(ValueError, match="label37.png: labels must be in 0..37"):
        read_sunrgbd_label(label, (530, 730))


def _write_sunrgbd2dseg(path, labels):
    """A file laid out like the toolbox's SUNRGBD2Dseg.mat (MATLAB v7.3 = HDF5): the struct
    array's `seglabel` field is a column of object references to (W, H) arrays in #refs#."""
    import h5py

    with h5py.File(path, "w") as f:
        refs_group = f.create_group("#refs#")
        refs = [refs_group.create_dataset(f"l{i}", data=label.T.astype(np.uint8)).ref for i, label in enumerate(labels)]
        group = f.create_group("SUNRGBD2Dseg")
        column = group.create_dataset("seglabel", (len(labels), 1), dtype=h5py.ref_dtype)
        for i, ref in enumerate(refs):
            column[i, 0] = ref


def test_sunrgbd2dseg_reads_one_frame_of_the_toolbox_file(tmp_path):
    from pcseg.data.sunrgbd import read_sunrgbd2dseg_label

    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 38, (4, 6)), rng.integers(0, 38, (5, 3))]
    path = tmp_path / "SUNRGBD2Dseg.mat"
    _write_sunrgbd2dseg(path, labels)
    for i, label in enumerate(labels):
        got = read_sunrgbd2dseg_label(path, i)
        assert got.dtype == np.int64 and np.array_equal(got, label)
    with pytest.raises(IndexError, match="frame index 2 is outside 0..1"):
        read_sunrgbd2dseg_label(path, 2)
    with pytest.raises(ValueError, match="is 6x4 but the colour image is 5x4"):
        read_sunrgbd2dseg_label(path, 0, (4, 5))
    _write_sunrgbd2dseg(path, [np.full((2, 2), 38)])
    with pytest.raises(ValueError, match=str(path)):
        read_sunrgbd2dseg_label(path, 0)


def test_a_frames_own_seg_mat_is_refused_not_misread(tmp_path):
    import scipy.io

    path = tmp_path / "seg.mat"
    scipy.io.savemat(
        path, {"seglabel": np.ones((4, 6), np.uint16), "names": np.array([["wall"], ["lamp shade"]], dtype=object)}
    )
    with pytest.raises(ValueError, match="per-frame seg.mat: its seglabel indexes the frame's own `names`"):
        read_sunrgbd_label(path)
