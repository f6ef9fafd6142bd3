"""Issue #12 on the data side: S3DIS annotations with xyz only are read (documented mid-grey
colour, a warning with the file and the count), damaged caches name their file, caches are
written atomically and keep map coordinates, training blocks do not depend on where a room
lies, and the SemanticKITTI label config and class count are checked before any scan is read."""

import warnings

import numpy as np
import pytest

from pcseg.cli import main
from pcseg.config import load_config
from pcseg.data import generate_room, s3dis
from pcseg.data.kitti import SemanticKittiConfig
from pcseg.data.loading import check_data
from pcseg.train import build_block_pool

SMALL_BLOCKS = ["data.num_points=64", "data.block_size=2.0", "data.neighbours=8"]


def raw_room_with_a_colourless_chair(root):
    annotations = root / "Area_1" / "office_1" / "Annotations"
    annotations.mkdir(parents=True)
    rng = np.random.default_rng(0)
    floor = np.concatenate([rng.uniform(0, 3, (40, 3)), rng.integers(0, 256, (40, 3))], 1)
    np.savetxt(annotations / "floor_1.txt", floor, fmt="%.3f %.3f %.3f %d %d %d")
    chair = rng.uniform(0, 3, (25, 3))
    np.savetxt(annotations / "chair_1.txt", chair, fmt="%.3f %.3f %.3f")
    return annotations, floor, chair


def test_xyz_only_annotation_is_kept_with_mid_grey_and_a_warning(tmp_path, capsys):
    annotations, floor, chair = raw_room_with_a_colourless_chair(tmp_path / "raw")
    with pytest.warns(s3dis.S3DISFormatWarning) as caught:
        assert main(["prepare", "s3dis", str(tmp_path / "raw"), str(tmp_path / "cache")]) == 0
    messages = [str(w.message) for w in caught]
    assert messages == [
        f"{annotations / 'chair_1.txt'}: 25 points have xyz only (3 columns); their colour is "
        "unknown and set to mid-grey (128, 128, 128)"
    ]
    room = s3dis.load_room(tmp_path / "cache" / "Area_1" / "office_1.npz")
    chair_rows = room["label"] == s3dis.S3DIS_CLASS_NAMES.index("chair")
    assert chair_rows.sum() == 25 and len(room["label"]) == 65
    assert (room["color"][chair_rows] == 128).all()
    np.testing.assert_allclose(np.sort(room["coord"][chair_rows], 0), np.sort(np.round(chair, 3), 0), atol=1e-5)


def test_a_file_mixing_xyz_and_xyzrgb_lines(tmp_path):
    path = tmp_path / "table_1.txt"
    path.write_text("1 2 3 10 20 30\n4 5 6\n7 8 9 40 50 60\n")
    with pytest.warns(s3dis.S3DISFormatWarning, match=f"{path}: 1 points have xyz only"):
        points = s3dis.read_points_txt(path)
    np.testing.assert_array_equal(points, [[1, 2, 3, 10, 20, 30], [4, 5, 6, 128, 128, 128], [7, 8, 9, 40, 50, 60]])


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_damaged_cache_names_its_file(tmp_path, damage):
    path = tmp_path / "Area_5" / "office_1.npz"
    room = {"coord": np.zeros((10, 3)), "color": np.zeros((10, 3)), "label": np.zeros(10), "instance": np.zeros(10)}
    s3dis.save_room(path, room)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"PK\x03\x04" + b"x" * 50}[damage])
    with pytest.raises(ValueError, match=f"{path}: truncated or damaged S3DIS room cache .*run pcseg prepare s3dis"):
        s3dis.load_room(path)


def test_training_on_a_truncated_cache_is_one_line_naming_it(tmp_path, capsys):
    cache = tmp_path / "cache"
    room = generate_room(0, 500)
    room = {**room, "instance": np.zeros(len(room["label"]))}
    s3dis.save_room(cache / "Area_1" / "office_1.npz", room)
    s3dis.save_room(cache / "Area_5" / "office_1.npz", room)
    bad = cache / "Area_1" / "office_1.npz"
    bad.write_bytes(bad.read_bytes()[:300])
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  dataset: s3dis\n  root: {cache}\n")
    sets = [
        a
        for item in [*SMALL_BLOCKS, "data.blocks_per_room=2", f"train.out_dir={tmp_path / 'run'}"]
        for a in ("--set", item)
    ]
    assert main(["train", "--config", str(config), *sets]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"pcseg train: error: {bad}: truncated or damaged S3DIS room cache")


def test_a_failed_cache_write_keeps_the_previous_cache(tmp_path, monkeypatch):
    path = tmp_path / "Area_1" / "office_1.npz"
    room = {"coord": np.ones((5, 3)), "color": np.zeros((5, 3)), "label": np.ones(5), "instance": np.zeros(5)}
    s3dis.save_room(path, room)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(s3dis.np, "savez", disk_full)
    with pytest.raises(OSError, match="No space left"):
        s3dis.save_room(path, {**room, "label": np.zeros(5)})
    monkeypatch.undo()
    np.testing.assert_array_equal(s3dis.load_room(path)["label"], np.ones(5))
    assert [p.name for p in path.parent.iterdir()] == ["office_1.npz"]


def test_map_coordinates_survive_the_cache(tmp_path):
    offset = np.array([5e5, 5e6, 0.0])
    coord = np.random.default_rng(0).uniform(0, 5, (100, 3)) + offset
    room = {"coord": coord, "color": np.zeros((100, 3)), "label": np.zeros(100), "instance": np.zeros(100)}
    s3dis.save_room(tmp_path / "big.npz", room)
    s3dis.save_room(tmp_path / "small.npz", {**room, "coord": coord - offset})
    big, small = s3dis.load_room(tmp_path / "big.npz"), s3dis.load_room(tmp_path / "small.npz")
    assert big["coord"].dtype == np.float64 and small["coord"].dtype == np.float32
    np.testing.assert_array_equal(big["coord"], coord)


def test_training_blocks_do_not_depend_on_where_the_room_lies():
    """Rooms in a map frame (float64, 5e6 m offsets) give the blocks of the same rooms at the origin."""
    data = load_config(None, SMALL_BLOCKS).data
    rooms = [generate_room(seed, 2000) for seed in (0, 1)]
    offset = np.array([5e5, 5e6, 0.0])
    shifted = [{**room, "coord": room["coord"].astype(np.float64) - room["coord"].min(0) + offset} for room in rooms]
    at_origin = [{**room, "coord": (room["coord"] - room["coord"].min(0)).astype(np.float32)} for room in rooms]
    pool = build_block_pool(at_origin, data, 4, seed=0)
    pool_shifted = build_block_pool(shifted, data, 4, seed=0)
    assert pool_shifted.points.dtype == pool.points.dtype
    np.testing.assert_array_equal(pool_shifted.label.numpy(), pool.label.numpy())
    np.testing.assert_allclose(pool_shifted.points.numpy(), pool.points.numpy(), atol=1e-5)
    np.testing.assert_allclose(pool_shifted.features.numpy(), pool.features.numpy(), atol=1e-4)


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "the SemanticKITTI config is empty"),
        ("- 1\n- 2\n", "the SemanticKITTI config is a list, not a mapping"),
        ("labels: {0: a\n", "not a valid semantic-kitti.yaml"),
        ("labels: {0: unlabeled}\nlearning_map: {0: 0}\n", "missing 'learning_map_inv'"),
        (
            "labels: {0: unlabeled}\nlearning_map: {0: 0}\nlearning_map_inv: {0: 0, 1: 7}\n",
            "inconsistent SemanticKITTI config (KeyError: 7)",
        ),
    ],
)
def test_semantic_kitti_yaml_errors_name_the_file(tmp_path, text, words):
    path = tmp_path / "semantic-kitti.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        SemanticKittiConfig.from_yaml(path)
    assert str(error.value).startswith(f"{path}: ") and words in str(error.value)


def test_class_count_is_checked_against_the_data(shared_data, tmp_path):
    label_config = shared_data / "semantickitti" / "semantic-kitti.yaml"
    kitti = load_config(
        None,
        [
            "data.dataset=semantickitti",
            f"data.root={tmp_path}",
            f"data.label_config={label_config}",
            "data.num_classes=5",
        ],
    )
    with pytest.raises(ValueError, match="data.num_classes is 5 but the semantickitti labels have 20 classes"):
        check_data(kitti.data)
    with pytest.raises(ValueError, match="data.num_classes is 12 but the synthetic labels have 13 classes"):
        check_data(load_config(None, ["data.num_classes=12"]).data)
    kitti.data.num_classes = 20
    with pytest.raises(FileNotFoundError, match="SemanticKITTI sequence folder not found"):
        check_data(kitti.data)


def test_warnings_are_not_errors_for_good_files(tmp_path):
    path = tmp_path / "wall_1.txt"
    path.write_text("1 2 3 10 20 30\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert s3dis.read_points_txt(path).shape == (1, 6)
