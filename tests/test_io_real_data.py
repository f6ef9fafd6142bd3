"""pcseg.io on the real sample files in ../shared/data, and Open3D interoperability."""

import numpy as np
import pytest

from pcseg.io import read_point_cloud, write_predictions
from pcseg.utils.open3d import from_open3d, import_open3d, to_open3d, view_point_cloud


def test_kitti_scan_keeps_remission_as_intensity(shared_data):
    path = shared_data / "kitti" / "000000" / "velodyne.bin"
    raw = np.fromfile(path, dtype="<f4").reshape(-1, 4)
    cloud = read_point_cloud(path)
    assert cloud["coord"].shape == (115_384, 3) and cloud["coord"].dtype == np.float32
    np.testing.assert_array_equal(cloud["coord"], raw[:, :3])
    np.testing.assert_array_equal(cloud["intensity"], raw[:, 3])
    assert cloud["color"] is None and cloud["label"] is None


def test_semantickitti_predictions_go_back_to_raw_ids(tmp_path, shared_data):
    from pcseg.data.kitti import SemanticKittiConfig, read_semantickitti_scan

    folder = shared_data / "semantickitti"
    config = SemanticKittiConfig.from_yaml(folder / "semantic-kitti.yaml")
    scan = read_semantickitti_scan(folder / "000000.bin", folder / "000000.label", config)
    cloud = read_point_cloud(folder / "000000.bin")
    np.testing.assert_array_equal(cloud["coord"], scan["coord"])
    np.testing.assert_array_equal(cloud["intensity"], scan["remission"])
    out = write_predictions(
        tmp_path / "000000.label",
        cloud["coord"],
        scan["label"],
        None,
        num_classes=config.num_classes,
        learning_map_inv=config.learning_map_inv,
    )
    written = read_semantickitti_scan(folder / "000000.bin", out, config)
    np.testing.assert_array_equal(written["label"], scan["label"])  # raw ids map back to the same classes
    assert set(np.unique(written["raw_label"])) <= set(config.learning_map_inv.values())


@pytest.fixture()
def s3dis_sample(shared_data):
    folder = shared_data / "s3dis" / "mmdet3d_sample"
    points = np.fromfile(folder / "points" / "Area_1_office_2.bin", dtype=np.float32).reshape(-1, 6)
    labels = np.fromfile(folder / "semantic_mask" / "Area_1_office_2.bin", dtype=np.int64)
    return points, labels


def test_s3dis_sample_as_text_and_in_every_prediction_format(tmp_path, s3dis_sample):
    from pcseg.data import S3DIS_CLASS_COLORS

    points, labels = s3dis_sample
    np.savetxt(tmp_path / "office_2.txt", points, fmt="%.3f %.3f %.3f %d %d %d")
    cloud = read_point_cloud(tmp_path / "office_2.txt")
    np.testing.assert_allclose(cloud["coord"], points[:, :3], atol=1e-3)
    np.testing.assert_allclose(cloud["color"], points[:, 3:] / 255.0, atol=1e-6)
    confidence = np.linspace(0, 1, len(points), dtype=np.float32)
    for suffix in (".ply", ".pcd", ".las", ".laz"):
        path = write_predictions(tmp_path / f"office_2{suffix}", points[:, :3], labels, confidence, S3DIS_CLASS_COLORS)
        back = read_point_cloud(path)
        np.testing.assert_allclose(back["coord"], points[:, :3], atol=5e-4 + 1e-6)
        np.testing.assert_allclose(back["color"] * 255, np.asarray(S3DIS_CLASS_COLORS)[labels], atol=1e-3)
        np.testing.assert_array_equal(back["classification"] if suffix in (".las", ".laz") else back["label"], labels)


def test_sunrgbd_mat(shared_data):
    cloud = read_point_cloud(shared_data / "sunrgbd" / "votenet" / "depth" / "000001.mat")
    assert cloud["coord"].shape == (280_961, 3)
    assert cloud["color"].shape == (280_961, 3) and 0 <= cloud["color"].min() and cloud["color"].max() <= 1


@pytest.fixture(scope="module")
def tum_cloud(shared_data):
    """A real RGB-D frame (TUM) back-projected by Open3D."""
    open3d = import_open3d()
    folder = shared_data / "open3d_formats"
    rgbd = open3d.geometry.RGBDImage.create_from_tum_format(
        open3d.io.read_image(str(folder / "TUM_color.png")),
        open3d.io.read_image(str(folder / "TUM_depth.png")),
        convert_rgb_to_intensity=False,
    )
    intrinsic = open3d.camera.PinholeCameraIntrinsic(open3d.camera.PinholeCameraIntrinsicParameters.PrimeSenseDefault)
    cloud = open3d.geometry.PointCloud.create_from_rgbd_image(rgbd, intrinsic)
    return cloud.random_down_sample(0.05)


@pytest.mark.parametrize(
    "name, write_ascii, compressed",
    [
        ("ascii.ply", True, False),
        ("binary.ply", False, False),
        ("ascii.pcd", True, False),
        ("binary.pcd", False, False),
        ("compressed.pcd", False, True),
    ],
)
def test_files_written_by_open3d(tmp_path, tum_cloud, name, write_ascii, compressed):
    open3d = import_open3d()
    assert open3d.io.write_point_cloud(str(tmp_path / name), tum_cloud, write_ascii=write_ascii, compressed=compressed)
    cloud = read_point_cloud(tmp_path / name)
    # Open3D writes ascii files with 6 significant digits
    atol = 1e-5 if write_ascii else 1e-6
    np.testing.assert_allclose(cloud["coord"], np.asarray(tum_cloud.points), atol=atol)
    np.testing.assert_allclose(cloud["color"], np.asarray(tum_cloud.colors), atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize("suffix", [".ply", ".pcd"])
def test_open3d_reads_what_pcseg_writes(tmp_path, tum_cloud, suffix):
    open3d = import_open3d()
    points = np.asarray(tum_cloud.points)
    labels = np.arange(len(points)) % 3
    palette = np.array([[255, 0, 0], [0, 128, 0], [0, 0, 255]], np.uint8)
    write_predictions(tmp_path / f"pred{suffix}", points, labels, None, palette)
    back = open3d.io.read_point_cloud(str(tmp_path / f"pred{suffix}"))
    np.testing.assert_allclose(np.asarray(back.points), points, atol=1e-5)
    np.testing.assert_allclose(np.asarray(back.colors), palette[labels] / 255.0, atol=1e-6)


def test_to_and_from_open3d_legacy_and_tensor(tum_cloud):
    cloud = from_open3d(tum_cloud)
    assert cloud["color"].dtype == np.float32 and cloud["label"] is None
    n = len(cloud["coord"])
    cloud.update(label=np.arange(n) % 4, confidence=np.linspace(0, 1, n), intensity=np.full(n, 7.0))
    legacy = to_open3d(cloud)
    np.testing.assert_allclose(np.asarray(legacy.points), cloud["coord"])
    tensor = to_open3d(cloud, tensor=True)
    assert tensor.point["label"].shape == (n, 1)
    back = from_open3d(tensor)
    np.testing.assert_array_equal(back["label"], cloud["label"])
    np.testing.assert_allclose(back["confidence"], cloud["confidence"], atol=1e-7)
    np.testing.assert_array_equal(back["intensity"], cloud["intensity"])
    np.testing.assert_allclose(back["color"], cloud["color"])
    by_label = to_open3d(cloud, palette=[[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0]])
    np.testing.assert_allclose(np.asarray(by_label.colors)[:4], [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"cloud\['label'\] has 3 rows"):
        to_open3d({"coord": cloud["coord"], "label": np.zeros(3)})


def test_view_without_a_display_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from pcseg.cli import main

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    write_predictions(tmp_path / "pred.ply", np.zeros((3, 3)), np.arange(3), None)
    with pytest.raises(RuntimeError, match=r"pred\.ply: no display"):
        view_point_cloud(tmp_path / "pred.ply")
    assert main(["view", str(tmp_path / "pred.ply")]) == 1
    assert "pcseg view: error: cannot open a viewer" in capsys.readouterr().err


def test_view_colours_a_labelled_cloud_by_label_or_by_its_file_colours(tmp_path, monkeypatch):
    open3d = import_open3d()
    shown = []
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(open3d.visualization, "draw_geometries", lambda clouds, **kw: shown.extend(clouds))
    palette = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    write_predictions(tmp_path / "pred.pcd", np.zeros((2, 3)), np.array([0, 1]), None, palette)
    view_point_cloud(tmp_path / "pred.pcd", color_by="file")
    np.testing.assert_allclose(np.asarray(shown[-1].colors), [[1, 0, 0], [0, 0, 1]])
    view_point_cloud(tmp_path / "pred.pcd", palette=[[0, 255, 0], [0, 0, 0]])
    np.testing.assert_allclose(np.asarray(shown[-1].colors), [[0, 1, 0], [0, 0, 0]])
