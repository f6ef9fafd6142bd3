"""Round trips through every file format pcseg reads and writes (pcseg.io, pcseg.formats)."""

import os
import stat

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pcseg import formats
from pcseg.io import read_point_cloud, write_labelled_ply, write_predictions

PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], dtype=np.uint8)


def _cloud(n=50, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    points = rng.uniform(-20, 20, (n, 3)).astype(dtype)
    labels = rng.integers(0, len(PALETTE), n)
    confidence = rng.uniform(0, 1, n).astype(np.float32)
    return points, labels, confidence


finite32 = st.floats(-1e4, 1e4, width=32)
columns = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.float32, (n, 3), elements=finite32),
        hnp.arrays(np.uint8, (n, 3)),
        hnp.arrays(np.int32, n, elements=st.integers(-(2**31), 2**31 - 1)),
        hnp.arrays(np.float64, n, elements=st.floats(-1e6, 1e6)),
    )
)


@settings(max_examples=15, deadline=None)
@given(columns, st.booleans())
def test_ply_round_trip_keeps_every_field(tmp_path_factory, data, binary):
    points, rgb, label, time = data
    path = tmp_path_factory.mktemp("ply") / "cloud.ply"
    formats.write_ply(
        path,
        {
            "x": points[:, 0],
            "y": points[:, 1],
            "z": points[:, 2],
            "red": rgb[:, 0],
            "green": rgb[:, 1],
            "blue": rgb[:, 2],
            "label": label,
            "time": time,
        },
        binary=binary,
    )
    cloud = read_point_cloud(path)
    assert cloud["coord"].dtype == np.float32
    np.testing.assert_array_equal(cloud["coord"], points)
    np.testing.assert_allclose(cloud["color"], rgb / 255.0, atol=1e-7)
    np.testing.assert_array_equal(cloud["label"], label)
    assert cloud["intensity"] is None
    np.testing.assert_array_equal(cloud["time"], time)


@settings(max_examples=15, deadline=None)
@given(columns, st.sampled_from(formats.pcd.ENCODINGS))
def test_pcd_round_trip_in_every_encoding(tmp_path_factory, data, encoding):
    points, rgb, label, time = data
    path = tmp_path_factory.mktemp("pcd") / "cloud.pcd"
    normals = np.stack([points[:, 1], points[:, 2], points[:, 0]], axis=1)
    formats.write_pcd(
        path,
        {
            "x": points[:, 0],
            "y": points[:, 1],
            "z": points[:, 2],
            "intensity": points[:, 2],
            "red": rgb[:, 0],
            "green": rgb[:, 1],
            "blue": rgb[:, 2],
            "ring": label.astype(np.uint16),
            "normal": normals,
        },
        encoding=encoding,
    )
    cloud = read_point_cloud(path)
    atol = 1e-9 if encoding == "ascii" else 0  # ascii holds 10 decimals a value
    np.testing.assert_allclose(cloud["coord"], points, atol=atol, rtol=0)
    np.testing.assert_allclose(cloud["intensity"], points[:, 2], atol=atol, rtol=0)
    np.testing.assert_allclose(cloud["color"], rgb / 255.0, atol=1e-7)
    np.testing.assert_array_equal(cloud["ring"], label.astype(np.uint16))
    assert cloud["normal"].shape == (len(points), 3)
    np.testing.assert_allclose(cloud["normal"], normals, atol=atol, rtol=0)


@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_las_round_trip_keeps_scaled_coordinates_classification_colour_and_extra_fields(tmp_path, suffix):
    rng = np.random.default_rng(1)
    points = rng.uniform(-100, 100, (200, 3)) + [512_345.0, 5_412_345.0, 200.0]  # UTM-sized
    rgb = rng.integers(0, 256, (200, 3)).astype(np.uint8)
    classification = rng.integers(0, 256, 200)
    formats.write_las(
        tmp_path / f"a{suffix}",
        points,
        classification,
        color=rgb,
        intensity=np.arange(200) * 300,
        extra={"confidence": rng.uniform(size=200)},
    )
    cloud = read_point_cloud(tmp_path / f"a{suffix}")
    assert cloud["coord"].dtype == np.float64
    np.testing.assert_allclose(cloud["coord"], points, atol=0.0005 + 1e-9, rtol=0)
    np.testing.assert_array_equal(cloud["classification"], classification)
    np.testing.assert_allclose(cloud["color"], rgb / 255.0, atol=1e-6)
    np.testing.assert_array_equal(cloud["intensity"], np.arange(200) * 300)
    assert cloud["confidence"].dtype == np.float32 and cloud["label"] is None
    assert {"return_number", "gps_time", "point_source_id"} <= set(cloud)


def test_las_written_by_laspy_with_8_bit_colour_in_16_bit_fields(tmp_path):
    import laspy

    las = laspy.LasData(laspy.LasHeader(point_format=2, version="1.2"))
    las.x, las.y, las.z = np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([5.0, 6.0])
    las.red, las.green, las.blue = np.array([255, 0]), np.array([0, 128]), np.array([0, 0])
    las.write(tmp_path / "eight_bit.las")
    np.testing.assert_allclose(read_point_cloud(tmp_path / "eight_bit.las")["color"], [[1, 0, 0], [0, 128 / 255, 0]])


def test_e57_round_trip(tmp_path):
    pye57 = pytest.importorskip("pye57")
    points, _, confidence = _cloud(30)
    e57 = pye57.E57(str(tmp_path / "scan.e57"), mode="w")
    e57.write_scan_raw(
        {
            "cartesianX": points[:, 0].astype(np.float64),
            "cartesianY": points[:, 1].astype(np.float64),
            "cartesianZ": points[:, 2].astype(np.float64),
            "intensity": confidence.astype(np.float64),
            "colorRed": np.arange(30, dtype=np.uint8),
            "colorGreen": np.zeros(30, np.uint8),
            "colorBlue": np.full(30, 255, np.uint8),
        }
    )
    e57.close()
    cloud = read_point_cloud(tmp_path / "scan.e57")
    np.testing.assert_allclose(cloud["coord"], points, atol=1e-6)
    np.testing.assert_allclose(cloud["intensity"], confidence, atol=1e-6)
    np.testing.assert_allclose(cloud["color"][:, 0], np.arange(30) / 255.0, atol=1e-7)


def test_npy_npz_and_txt_layouts(tmp_path):
    points, labels, confidence = _cloud(20, dtype=np.float64)
    rgb = np.random.default_rng(2).integers(0, 256, (20, 3)).astype(np.float64)
    np.save(tmp_path / "xyz.npy", points)
    np.save(tmp_path / "xyzi.npy", np.column_stack([points, confidence]))
    np.save(tmp_path / "xyzrgbl.npy", np.column_stack([points, rgb, labels]))
    np.save(tmp_path / "xyz_two_more.npy", np.column_stack([points, labels, labels]))
    assert read_point_cloud(tmp_path / "xyz.npy")["color"] is None
    np.testing.assert_allclose(read_point_cloud(tmp_path / "xyzi.npy")["intensity"], confidence, atol=1e-7)
    wide = read_point_cloud(tmp_path / "xyzrgbl.npy")
    np.testing.assert_allclose(wide["color"], rgb / 255.0, atol=1e-7)
    np.testing.assert_array_equal(wide["column_6"], labels)
    assert read_point_cloud(tmp_path / "xyz_two_more.npy")["color"] is None
    np.testing.assert_array_equal(read_point_cloud(tmp_path / "xyz_two_more.npy")["column_4"], labels)
    structured = np.zeros(20, dtype=[("x", "f8"), ("y", "f8"), ("z", "f8"), ("label", "i2"), ("ring", "u1")])
    structured["x"], structured["label"], structured["ring"] = points[:, 0], labels, 7
    np.save(tmp_path / "structured.npy", structured)
    cloud = read_point_cloud(tmp_path / "structured.npy")
    np.testing.assert_array_equal(cloud["label"], labels)
    assert cloud["ring"].dtype == np.uint8 and cloud["coord"].dtype == np.float64
    np.savez(tmp_path / "cloud.npz", coord=points, color=rgb / 255.0, label=labels, confidence=confidence)
    cloud = read_point_cloud(tmp_path / "cloud.npz")
    np.testing.assert_array_equal(cloud["label"], labels)
    np.testing.assert_array_equal(cloud["confidence"], confidence)
    np.savetxt(tmp_path / "semantic3d.txt", np.column_stack([points, confidence, rgb]), fmt="%.6f")
    cloud = read_point_cloud(tmp_path / "semantic3d.txt")
    np.testing.assert_allclose(cloud["intensity"], confidence, atol=1e-6)
    np.testing.assert_allclose(cloud["color"], rgb / 255.0, atol=1e-6)
    np.savetxt(
        tmp_path / "named.txt",
        np.column_stack([points, labels, confidence]),
        fmt="%.6f",
        header="//X,Y,Z,Label,Scalar_Confidence",
        delimiter=",",
        comments="",
    )
    cloud = read_point_cloud(tmp_path / "named.txt")
    np.testing.assert_array_equal(cloud["label"], labels)
    np.savetxt(tmp_path / "spaced.txt", np.column_stack([points, rgb]), fmt="%.6f", header="x y z r g b", comments="")
    np.testing.assert_allclose(read_point_cloud(tmp_path / "spaced.txt")["color"], rgb / 255.0, atol=1e-6)
    np.testing.assert_allclose(cloud["scalar_confidence"], confidence, atol=1e-6)


@pytest.mark.parametrize("suffix", [".ply", ".pcd", ".las", ".laz", ".npy"])
def test_write_predictions_reads_back_in_every_format(tmp_path, suffix):
    points, labels, confidence = _cloud(60)
    uncertainty = 1.0 - confidence
    path = write_predictions(tmp_path / f"pred{suffix}", points, labels, confidence, PALETTE, uncertainty=uncertainty)
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(path), labels)
        return
    cloud = read_point_cloud(path)
    np.testing.assert_allclose(cloud["coord"], points, atol=0.0005 + 1e-6)
    np.testing.assert_allclose(cloud["color"], PALETTE[labels] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(cloud["label" if suffix in (".ply", ".pcd") else "classification"], labels)
    np.testing.assert_array_equal(cloud["confidence"], confidence)
    np.testing.assert_array_equal(cloud["uncertainty"], uncertainty)


def test_write_predictions_las_class_map(tmp_path):
    points, labels, confidence = _cloud(40)
    codes = np.array([2, 6, 5, 9])  # ground, building, high vegetation, water
    write_predictions(tmp_path / "pred.las", points, labels, confidence, PALETTE, las_class_map=codes)
    np.testing.assert_array_equal(read_point_cloud(tmp_path / "pred.las")["classification"], codes[labels])
    with pytest.raises(ValueError, match="las_class_map has 2 codes"):
        write_predictions(tmp_path / "bad.las", points, labels, confidence, PALETTE, las_class_map=codes[:2])


def test_write_predictions_semantickitti_label_in_raw_ids(tmp_path, shared_data):
    from pcseg.data.kitti import SemanticKittiConfig, read_label_file

    config = SemanticKittiConfig.from_yaml(shared_data / "semantickitti" / "semantic-kitti.yaml")
    points, _, confidence = _cloud(config.num_classes * 3)
    labels = np.arange(len(points)) % config.num_classes
    write_predictions(
        tmp_path / "000000.label",
        points,
        labels,
        confidence,
        num_classes=config.num_classes,
        learning_map_inv=config.learning_map_inv,
    )
    raw, instance = read_label_file(tmp_path / "000000.label", num_points=len(points))
    np.testing.assert_array_equal(raw, [config.learning_map_inv[label] for label in labels])
    np.testing.assert_array_equal(config.map_labels(raw), labels)
    assert not instance.any()
    with pytest.raises(ValueError, match="learning_map_inv"):
        write_predictions(tmp_path / "x.label", points, labels, confidence, num_classes=config.num_classes)


def test_labelled_ply_keeps_its_layout_and_reads_back(tmp_path):
    points, labels, confidence = _cloud(10)
    write_labelled_ply(
        tmp_path / "a.ply",
        points,
        labels,
        PALETTE,
        confidence,
        uncertainty=confidence / 2,
        properties={"entropy": confidence * 3},
    )
    header = (tmp_path / "a.ply").read_bytes().split(b"end_header")[0].decode()
    assert [line.split()[-1] for line in header.splitlines() if line.startswith("property")] == [
        "x",
        "y",
        "z",
        "red",
        "green",
        "blue",
        "label",
        "confidence",
        "uncertainty",
        "entropy",
    ]
    cloud = read_point_cloud(tmp_path / "a.ply")
    np.testing.assert_array_equal(cloud["entropy"], confidence * 3)


def test_atomic_write_keeps_the_previous_file_on_failure(tmp_path):
    target = tmp_path / "pred.npy"
    write_predictions(target, *_cloud(5)[:2])
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with formats.atomic_write(target) as handle:
            handle.write(b"half a file")
            raise RuntimeError("disk full")
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["pred.npy"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_failed_prediction_write_leaves_previous_file_and_no_temporary(tmp_path, monkeypatch):
    import plyfile

    points, labels, confidence = _cloud(8)
    write_predictions(tmp_path / "pred.ply", points, labels, confidence, PALETTE)
    before = (tmp_path / "pred.ply").read_bytes()

    def fail(self, stream):
        stream.write(b"ply\nformat")
        raise OSError("no space left on device")

    monkeypatch.setattr(plyfile.PlyData, "write", fail)
    with pytest.raises(OSError, match="no space"):
        write_predictions(tmp_path / "pred.ply", points, labels, confidence, PALETTE)
    assert (tmp_path / "pred.ply").read_bytes() == before
    assert os.listdir(tmp_path) == ["pred.ply"]


def test_organised_lidar_pcd_without_returns_drops_them_on_request(tmp_path):
    x = np.array([[1.0, np.nan], [2.0, 3.0]], dtype=np.float32).ravel()  # 2 x 2 organised, one NaN
    formats.write_pcd(
        tmp_path / "scan.pcd",
        {
            "x": x,
            "y": x,
            "z": x,
            "intensity": np.arange(4, dtype=np.float32),
            "ring": np.array([0, 0, 1, 1], np.uint16),
        },
    )
    with pytest.raises(ValueError, match="1 points have non-finite"):
        read_point_cloud(tmp_path / "scan.pcd")
    cloud = read_point_cloud(tmp_path / "scan.pcd", drop_non_finite=True)
    np.testing.assert_array_equal(cloud["intensity"], [0, 2, 3])
    np.testing.assert_array_equal(cloud["ring"], [0, 1, 1])


def test_pcl_pcd_with_padding_fields_and_packed_rgba(tmp_path):
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z _ rgba _ label\n"
        "SIZE 4 4 4 1 4 1 4\nTYPE F F F U U U U\nCOUNT 1 1 1 4 1 4 1\nWIDTH 3\nHEIGHT 1\n"
        "VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 3\nDATA binary\n"
    )
    rows = np.zeros(
        3,
        dtype=[
            ("x", "<f4"),
            ("y", "<f4"),
            ("z", "<f4"),
            ("pad", "u1", 4),
            ("rgba", "<u4"),
            ("pad2", "u1", 4),
            ("label", "<u4"),
        ],
    )
    rows["x"], rows["rgba"], rows["label"] = [1, 2, 3], [0xFF102030, 0x80FF0000, 0], [5, 6, 7]
    (tmp_path / "pcl.pcd").write_bytes(header.encode() + rows.tobytes())
    cloud = read_point_cloud(tmp_path / "pcl.pcd")
    np.testing.assert_allclose(cloud["color"] * 255, [[0x10, 0x20, 0x30], [255, 0, 0], [0, 0, 0]], atol=1e-4)
    np.testing.assert_array_equal(cloud["alpha"], [255, 128, 0])
    np.testing.assert_array_equal(cloud["label"], [5, 6, 7])
    assert set(cloud) == {"coord", "color", "intensity", "label", "alpha"}
