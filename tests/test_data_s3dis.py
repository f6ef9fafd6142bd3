"""S3DIS raw layout -> prepare -> cache -> blocks, built from the real 100-point sample."""

import os

import h5py
import numpy as np
import pytest

from pcseg.data import s3dis
from pcseg.data.blocks import room_to_blocks
from pcseg.data.classes import S3DIS_CLASS_NAMES


def _sorted_rows(coord, color, label):
    rows = np.concatenate([np.round(coord, 3), color.astype(np.float64), label[:, None].astype(np.float64)], 1)
    return rows[np.lexsort(rows.T[::-1])]


def test_prepare_round_trip_matches_the_real_sample(raw_s3dis, tmp_path):
    raw, points, semantic, _ = raw_s3dis
    out = tmp_path / "cache"
    paths = s3dis.prepare_s3dis(raw, out, progress=False)
    assert [p.relative_to(out).as_posix() for p in paths] == ["Area_1/office_2.npz", "Area_5/hallway_6.npz"]
    room = s3dis.load_room(paths[0])
    assert room["coord"].dtype == np.float32 and room["color"].dtype == np.uint8
    assert len(room["coord"]) == 100
    # the cache holds exactly the sample's points (to the 1 mm of the text format) and labels
    expected = _sorted_rows(points[:, :3], np.round(points[:, 3:]), semantic)
    np.testing.assert_allclose(_sorted_rows(room["coord"], room["color"], room["label"]), expected, atol=1.1e-3)
    # one instance id per annotation file, each of a single class
    for inst in np.unique(room["instance"]):
        assert len(np.unique(room["label"][room["instance"] == inst])) == 1
    hallway = s3dis.load_room(paths[1])
    clutter, floor = S3DIS_CLASS_NAMES.index("clutter"), S3DIS_CLASS_NAMES.index("floor")
    # annotation files are read in sorted order: floor_1 then stairs_1
    np.testing.assert_array_equal(hallway["label"], [floor] * 10 + [clutter] * 10)

    # cache -> blocks: 1 m blocks of 32 points keep colours and labels of the points they pick
    blocks = room_to_blocks(room, block_size=1.0, stride=1.0, num_points=32, min_points=1, seed=0)
    features, index = blocks["features"], blocks["index"]
    assert features.shape[1:] == (32, 9) and features.dtype == np.float32
    np.testing.assert_allclose(features[..., 3:6], room["color"][index] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(blocks["label"], room["label"][index])
    np.testing.assert_allclose(features[..., 2], room["coord"][index, 2] - room["coord"][:, 2].min(), atol=1e-5)
    assert features[..., 6:9].min() >= 0.0 and features[..., 6:9].max() <= 1.0 + 1e-6
    assert np.abs(features[..., 0:2]).max() <= 0.5 + 1e-5  # centred in a 1 m block


def test_prepare_is_resumable_and_atomic(raw_s3dis, tmp_path, monkeypatch):
    raw = raw_s3dis[0]
    out = tmp_path / "cache"
    real_read = s3dis.read_raw_room
    calls = []

    def interrupted(room_dir):
        calls.append(room_dir.name)
        if room_dir.name == "hallway_6":
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the second room
        return real_read(room_dir)

    monkeypatch.setattr(s3dis, "read_raw_room", interrupted)
    with pytest.raises(KeyboardInterrupt):
        s3dis.prepare_s3dis(raw, out, progress=False)
    assert (out / "Area_1" / "office_2.npz").is_file()
    assert not (out / "Area_5" / "hallway_6.npz").exists()
    first_mtime = os.stat(out / "Area_1" / "office_2.npz").st_mtime_ns

    monkeypatch.setattr(s3dis, "read_raw_room", lambda d: (calls.append(d.name), real_read(d))[1])
    calls.clear()
    s3dis.prepare_s3dis(raw, out, progress=False)
    assert calls == ["hallway_6"]  # the finished room was skipped
    assert os.stat(out / "Area_1" / "office_2.npz").st_mtime_ns == first_mtime
    assert len(s3dis.load_room(out / "Area_5" / "hallway_6.npz")["label"]) == 20
    assert not list(out.rglob("*.tmp"))


def test_malformed_lines_are_repaired_or_skipped_with_file_and_line(tmp_path):
    path = tmp_path / "ceiling_1.txt"
    # line 2 carries a stray control byte (as Area_5/hallway_6/Annotations/ceiling_1.txt),
    # line 3 is cut short
    path.write_bytes(b"1.0 2.0 3.0 10 20 30\n4.0 5.0 6.0 40 50\x10 60\n7.0 8.0\n9.0 9.5 9.9 1 2 3\n")
    with pytest.warns(s3dis.S3DISFormatWarning) as record:
        points = s3dis.read_points_txt(path)
    messages = [str(w.message) for w in record]
    assert any(f"{path}:2: repaired" in m for m in messages)
    assert any(f"{path}:3: skipped" in m for m in messages)
    np.testing.assert_allclose(points, [[1, 2, 3, 10, 20, 30], [4, 5, 6, 40, 50, 60], [9, 9.5, 9.9, 1, 2, 3]])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        s3dis.read_points_txt(tmp_path / "missing.txt")


def test_non_finite_lines_are_skipped_and_colours_clipped_with_file_and_line(tmp_path):
    path = tmp_path / "chair_1.txt"
    # every line parses as 6 floats, so numpy's fast path would accept them all silently;
    # the blank line 2 checks that the reported numbers are file lines, not row numbers
    path.write_text(
        "1.0 2.0 3.0 10 20 30\n\nnan 5.0 6.0 1 2 3\n4.0 inf 6.0 1 2 3\n"
        "7.0 8.0 9.0 300 -4 128\n1.5 2.5 3.5 0 0 nan\n9.0 9.5 9.9 255 0 0\n"
    )
    with pytest.warns(s3dis.S3DISFormatWarning) as record:
        points = s3dis.read_points_txt(path)
    messages = [str(w.message) for w in record]
    for line in (3, 4, 6):
        assert any(f"{path}:{line}: skipped line with a non-finite value" in m for m in messages), line
    assert any(f"{path}:5: clipped colour" in m for m in messages)
    assert len(messages) == 4
    np.testing.assert_allclose(points, [[1, 2, 3, 10, 20, 30], [7, 8, 9, 255, 0, 128], [9, 9.5, 9.9, 255, 0, 0]])


def test_a_bad_colour_no_longer_aborts_prepare(raw_s3dis, tmp_path):
    raw = raw_s3dis[0]
    floor = raw / "Area_5" / "hallway_6" / "Annotations" / "floor_1.txt"
    lines = floor.read_text().splitlines()
    lines[3] = "0.5 0.5 0.1 256 -1 12"
    floor.write_text("\n".join(lines) + "\n")
    with pytest.warns(s3dis.S3DISFormatWarning, match=f"{floor}:4: clipped colour"):
        paths = s3dis.prepare_s3dis(raw, tmp_path / "cache", progress=False)
    assert len(paths) == 2 and not paths.failed
    hallway = s3dis.load_room(paths[1])
    assert len(hallway["coord"]) == 20
    np.testing.assert_array_equal(hallway["color"][3], [255, 0, 12])


def test_a_failed_room_is_reported_and_the_others_are_prepared(raw_s3dis, tmp_path):
    raw = raw_s3dis[0]
    (raw / "Area_2" / "storage_1" / "Annotations").mkdir(parents=True)  # empty Annotations
    junk = raw / "Area_3" / "WC_1" / "Annotations"
    junk.mkdir(parents=True)
    (junk / "clutter_1.txt").write_text("not a point\n1 2\n")  # no valid point
    out = tmp_path / "cache"
    with pytest.warns(s3dis.S3DISFormatWarning) as record:
        paths = s3dis.prepare_s3dis(raw, out, progress=False)
    messages = [str(w.message) for w in record]
    assert any("Area_2/storage_1 skipped" in m and "no annotation files" in m for m in messages)
    assert any("Area_3/WC_1 skipped" in m and "no valid point" in m for m in messages)
    assert any("2 of 4 S3DIS rooms" in m and "Area_2/storage_1, Area_3/WC_1" in m for m in messages)
    # the rooms before and after the failures were converted
    assert [p.relative_to(out).as_posix() for p in paths] == ["Area_1/office_2.npz", "Area_5/hallway_6.npz"]
    assert all(p.is_file() for p in paths)
    assert [(room.area, room.name) for room, _ in paths.failed] == [(2, "storage_1"), (3, "WC_1")]
    assert not (out / "Area_2").exists() and not (out / "Area_3").exists()


def test_bad_cache_and_missing_folders_name_the_path(tmp_path):
    bad = tmp_path / "Area_1" / "office_1.npz"
    bad.parent.mkdir(parents=True)
    s3dis.save_room(
        bad, {"coord": np.zeros((2, 3)), "color": np.zeros((2, 3)), "label": np.array([0, 13]), "instance": np.zeros(2)}
    )
    with pytest.raises(ValueError, match="office_1.npz.*out of range"):
        s3dis.load_room(bad)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        s3dis.prepare_s3dis(tmp_path / "nowhere", tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match="run prepare_s3dis first"):
        s3dis.S3DISRooms(tmp_path, split="test", test_area=5)


def test_splits_and_room_dataset(raw_s3dis, tmp_path):
    assert s3dis.split_areas("train", 5) == [1, 2, 3, 4, 6]
    assert s3dis.split_areas("test", 5) == [5]
    folds = s3dis.six_fold_splits()
    assert [test for _, test in folds] == [[1], [2], [3], [4], [5], [6]]
    assert all(set(train) | set(test) == set(range(1, 7)) and not set(train) & set(test) for train, test in folds)
    with pytest.raises(ValueError, match="test_area"):
        s3dis.split_areas("train", 7)
    out = tmp_path / "cache"
    # pointing at the folder the archive was unpacked into works too
    s3dis.prepare_s3dis(raw_s3dis[0].parent, out, progress=False)
    train = s3dis.S3DISRooms(out, "train", test_area=5)
    test = s3dis.S3DISRooms(out, "test", test_area=5)
    assert len(train) == 1 and len(test) == 1
    item = train[0]
    assert item["name"] == "Area_1/office_2"
    assert item["color"].dtype == np.float32 and item["color"].max() <= 1.0
    assert item["label"].dtype == np.int64


def test_pointnet_hdf5_blocks_and_room_filelist(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.random((5, 16, 9)).astype(np.float32)
    label = rng.integers(0, 13, (5, 16)).astype(np.uint8)
    for i, rows in enumerate([slice(0, 3), slice(3, 5)]):
        with h5py.File(tmp_path / f"ply_data_all_{i}.h5", "w") as handle:
            handle["data"] = data[rows]
            handle["label"] = label[rows]
    (tmp_path / "all_files.txt").write_text(
        "indoor3d_sem_seg_hdf5_data/ply_data_all_0.h5\nindoor3d_sem_seg_hdf5_data/ply_data_all_1.h5\n"
    )
    rooms = ["Area_1_office_1", "Area_5_office_2", "Area_5_office_2", "Area_6_lobby_1", "Area_1_WC_1"]
    (tmp_path / "room_filelist.txt").write_text("\n".join(rooms) + "\n")
    test_data, test_label, test_rooms = s3dis.load_indoor3d_blocks(tmp_path, "test", test_area=5)
    np.testing.assert_array_equal(test_data, data[1:3])
    np.testing.assert_array_equal(test_label, label[1:3])
    assert test_rooms == rooms[1:3]
    train_data, _, train_rooms = s3dis.load_indoor3d_blocks(tmp_path, "train", test_area=5)
    np.testing.assert_array_equal(train_data, data[[0, 3, 4]])
    with h5py.File(tmp_path / "bad.h5", "w") as handle:
        handle["data"] = data
        handle["label"] = np.full((5, 16), 13)
    with pytest.raises(ValueError, match="bad.h5.*labels"):
        s3dis.read_indoor3d_hdf5(tmp_path / "bad.h5")
