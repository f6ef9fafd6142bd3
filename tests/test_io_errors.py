"""Bad point cloud files give one clear error that names the file (issue #16, point 5)."""

import numpy as np
import pytest

from pcseg import formats
from pcseg.io import read_point_cloud, write_predictions


def _xyz(n=4):
    return {name: np.arange(n, dtype=np.float32) for name in "xyz"}


def test_ply_without_a_vertex_element(tmp_path):
    path = tmp_path / "mesh.ply"
    path.write_text(
        "ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n3 0 1 2\n"
    )
    with pytest.raises(ValueError, match=r"mesh\.ply: no 'vertex' element \(the file has \['face'\]\)"):
        read_point_cloud(path)


def test_truncated_binary_ply_names_where_it_stops(tmp_path):
    path = tmp_path / "cut.ply"
    formats.write_ply(path, {**_xyz(), "label": np.arange(4, dtype=np.int32)})
    path.write_bytes(path.read_bytes()[:-6])
    with pytest.raises(ValueError, match=r"cut\.ply: truncated .* element 'vertex': row 3: property 'z'"):
        read_point_cloud(path)


def test_not_a_ply_file(tmp_path):
    (tmp_path / "text.ply").write_text("hello\n")
    with pytest.raises(ValueError, match=r"text\.ply: not a readable PLY file"):
        read_point_cloud(tmp_path / "text.ply")


def test_pcd_with_an_unknown_field_type(tmp_path):
    path = tmp_path / "odd.pcd"
    path.write_text(
        "VERSION 0.7\nFIELDS x y z t\nSIZE 4 4 4 2\nTYPE F F F F\nCOUNT 1 1 1 1\nWIDTH 1\nHEIGHT 1\n"
        "VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 1\nDATA ascii\n1 2 3 4\n"
    )
    with pytest.raises(ValueError, match=r"odd\.pcd: field 't' has an unknown type F2"):
        read_point_cloud(path)


def test_truncated_binary_pcd(tmp_path):
    path = tmp_path / "cut.pcd"
    formats.write_pcd(path, _xyz(4))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"cut\.pcd: truncated PCD: the header says 4 points .* after 3 whole"):
        read_point_cloud(path)


def test_las_without_points(tmp_path):
    import laspy

    laspy.LasData(laspy.LasHeader(point_format=3, version="1.2")).write(tmp_path / "empty.las")
    with pytest.raises(ValueError, match=r"empty\.las: the LAS file has no points"):
        read_point_cloud(tmp_path / "empty.las")
    with pytest.raises(ValueError, match="N > 0"):
        formats.write_las(tmp_path / "none.las", np.zeros((0, 3)), np.zeros(0, np.uint8))
    assert not (tmp_path / "none.las").exists()


def test_broken_las(tmp_path):
    (tmp_path / "short.laz").write_bytes(b"LASF" + bytes(20))
    with pytest.raises(ValueError, match=r"short\.laz: not a readable LAS / LAZ file"):
        read_point_cloud(tmp_path / "short.laz")


def test_txt_with_a_column_count_of_no_layout(tmp_path):
    np.savetxt(tmp_path / "five.txt", np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"five\.txt: 5 columns match no documented layout .*3: x y z"):
        read_point_cloud(tmp_path / "five.txt")
    (tmp_path / "named.txt").write_text("x y z label\n1 2 3\n")
    with pytest.raises(ValueError, match=r"named\.txt: the first line names 4 columns but the rows have 3"):
        read_point_cloud(tmp_path / "named.txt")
    (tmp_path / "words.txt").write_text("1 2 3\n4 five 6\n")
    with pytest.raises(ValueError, match=r"words\.txt: could not convert .*five"):
        read_point_cloud(tmp_path / "words.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"empty\.txt: the text file holds no points"):
        read_point_cloud(tmp_path / "empty.txt")


def test_npy_npz_without_points(tmp_path):
    np.save(tmp_path / "flat.npy", np.ones(5))
    with pytest.raises(ValueError, match=r"flat\.npy: expected an \(N, K >= 3\) table"):
        read_point_cloud(tmp_path / "flat.npy")
    np.savez(tmp_path / "labels.npz", label=np.ones(5))
    with pytest.raises(ValueError, match=r"labels\.npz: no \(N, 3\) 'coord', 'points' or 'xyz' array"):
        read_point_cloud(tmp_path / "labels.npz")
    np.savez(tmp_path / "ragged.npz", coord=np.ones((5, 3)), label=np.ones(4))
    with pytest.raises(ValueError, match=r"ragged\.npz: array 'label' has shape \(4,\)"):
        read_point_cloud(tmp_path / "ragged.npz")


def test_lidar_bin_of_the_other_layout_says_which_input_format(tmp_path):
    np.zeros((3, 5), np.float32).tofile(tmp_path / "sweep.bin")
    with pytest.raises(ValueError, match=r"sweep\.bin: 60 bytes .* input_format='nuscenes'"):
        read_point_cloud(tmp_path / "sweep.bin")
    cloud = read_point_cloud(tmp_path / "sweep.bin", input_format="nuscenes")
    assert cloud["coord"].shape == (3, 3) and cloud["ring"].shape == (3,)


def test_missing_file_bad_suffix_and_bad_input_format(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.ply"):
        read_point_cloud(tmp_path / "nothing.ply")
    (tmp_path / "cloud.xyzrgb").write_text("1 2 3\n")
    with pytest.raises(ValueError, match=r"cloud\.xyzrgb: unsupported point cloud format '\.xyzrgb'"):
        read_point_cloud(tmp_path / "cloud.xyzrgb")
    with pytest.raises(ValueError, match="input_format must be one of"):
        read_point_cloud(tmp_path / "cloud.xyzrgb", input_format="xyzrgb")


def test_fields_without_coordinates_or_finite_values(tmp_path):
    formats.write_ply(tmp_path / "noxyz.ply", {"a": np.ones(3, np.float32)})
    with pytest.raises(ValueError, match=r"noxyz\.ply: no x, y, z fields \(fields: \['a'\]\)"):
        read_point_cloud(tmp_path / "noxyz.ply")
    formats.write_ply(tmp_path / "nan.ply", {**_xyz(3), "x": np.array([0, np.nan, 1], np.float32)})
    with pytest.raises(ValueError, match=r"nan\.ply: 1 points have non-finite coordinates .*drop_non_finite"):
        read_point_cloud(tmp_path / "nan.ply")


def test_write_predictions_rejects_bad_suffix_and_shapes(tmp_path):
    points = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"pred\.obj: cannot write predictions as '\.obj'"):
        write_predictions(tmp_path / "pred.obj", points, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"labels must be \(4,\) integers"):
        write_predictions(tmp_path / "pred.ply", points, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"confidence must be \(4,\) values"):
        write_predictions(tmp_path / "pred.pcd", points, np.zeros(4, np.int64), np.zeros(2))
    with pytest.raises(ValueError, match=r"labels \[7\] are not in learning_map_inv"):
        formats.write_semantickitti_label(tmp_path / "a.label", np.array([0, 7]), {0: 0, 1: 10})
    assert sorted(p.name for p in tmp_path.iterdir()) == []
