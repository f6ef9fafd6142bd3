"""``data.dataset: folder``: your own labelled clouds (PLY, PCD, LAS) and a classes.yaml."""

import numpy as np
import pytest
import yaml

from pcseg import formats
from pcseg.cli import main
from pcseg.config import ConfigError, load_config
from pcseg.data.kitti import read_label_file
from pcseg.data.loading import check_data, data_classes, load_rooms
from pcseg.io import read_point_cloud
from pcseg.testing import TINY_TRAINING

# LAS-style codes in the files: 1 unclassified (ignored), 2 ground, 5 high vegetation, 6 building
CLASSES = {
    "names": ["ground", "vegetation", "building"],
    "colors": [[160, 110, 50], [40, 160, 40], [200, 60, 60]],
    "ignore_label": 1,
    "label_map": {2: 0, 5: 1, 6: 2},
}


def _scan(seed: int, n: int = 3000):
    """A scan: ground plane, a tree-like blob and a box-like building; codes 2, 5, 6, a few 1."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, n)
    points = np.where(
        kind[:, None] == 0,
        rng.uniform([0, 0, 0], [4, 4, 0.05], (n, 3)),
        np.where(
            kind[:, None] == 1, rng.normal([1, 1, 1.5], 0.3, (n, 3)), rng.uniform([2.5, 2.5, 0], [3.5, 3.5, 2], (n, 3))
        ),
    )
    codes = np.array([2, 5, 6])[kind].astype(np.uint8)
    codes[rng.random(n) < 0.02] = 1
    colors = np.array([[120, 90, 40], [30, 140, 30], [180, 180, 180]], dtype=np.uint8)[kind]
    return points, codes, colors


def _write(path, seed, label_field="classification"):
    points, codes, colors = _scan(seed)
    if path.suffix == ".las":
        formats.write_las(path, points, codes, color=colors)
        return
    fields = {
        "x": points[:, 0].astype(np.float32),
        "y": points[:, 1].astype(np.float32),
        "z": points[:, 2].astype(np.float32),
        "red": colors[:, 0],
        "green": colors[:, 1],
        "blue": colors[:, 2],
        label_field: codes.astype(np.int32),
    }
    (formats.write_ply if path.suffix == ".ply" else formats.write_pcd)(path, fields)


@pytest.fixture
def own_data(tmp_path):
    root = tmp_path / "my_scans"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    (root / "classes.yaml").write_text(yaml.safe_dump(CLASSES))
    for seed, name in enumerate(["a.ply", "b.pcd", "c.las"]):
        _write(root / "train" / name, seed)
    _write(root / "val" / "d.ply", 10)
    config = tmp_path / "own.yaml"
    config.write_text(
        yaml.safe_dump(
            {"data": {"dataset": "folder", "root": str(root), "num_classes": 3, "label_field": "classification"}}
        )
    )
    return root, config


def test_train_eval_predict_on_a_folder_of_ply_pcd_las(own_data, tmp_path, capsys):
    root, config = own_data
    run = tmp_path / "run"
    tiny = [arg for item in [*TINY_TRAINING, f"train.out_dir={run}"] for arg in ("--set", item)]
    assert main(["train", "--config", str(config), *tiny]) == 0
    assert (run / "best.pt").is_file()
    assert main(["eval", "--config", str(config), "--checkpoint", str(run / "best.pt"), *tiny]) == 0
    out = tmp_path / "predictions"
    assert (
        main(
            [
                "predict",
                str(root / "val"),
                "--checkpoint",
                str(run / "best.pt"),
                "--out",
                str(out),
                "--out-format",
                "las",
            ]
        )
        == 0
    )
    predicted = read_point_cloud(out / "d.las")
    # the classes go back to the data set's own codes through classes.yaml's label_map
    assert set(np.unique(predicted["classification"]).tolist()) <= {2, 5, 6}
    assert len(predicted["coord"]) == 3000
    velodyne = tmp_path / "sequences" / "08" / "velodyne"
    velodyne.mkdir(parents=True)
    (velodyne / "000000.ply").write_bytes((root / "val" / "d.ply").read_bytes())
    (velodyne.parent / "calib.txt").write_text("P0: 1 0 0\n")
    assert (
        main(
            [
                "predict",
                str(tmp_path / "sequences"),
                "--checkpoint",
                str(run / "best.pt"),
                "--out",
                str(tmp_path / "submission"),
                "--out-format",
                "label",
                "--input-format",
                "ply",
            ]
        )
        == 0
    )
    semantic, _ = read_label_file(tmp_path / "submission" / "08" / "predictions" / "000000.label", 3000)
    np.testing.assert_array_equal(semantic, predicted["classification"])
    assert (
        main(
            [
                "predict",
                str(root / "val" / "d.ply"),
                "--checkpoint",
                str(run / "best.pt"),
                "--out",
                str(tmp_path / "d.ply"),
            ]
        )
        == 0
    )
    colors = read_point_cloud(tmp_path / "d.ply")["color"]
    palette = np.array(CLASSES["colors"]) / 255.0
    assert np.isclose(colors[:, None, :], palette[None], atol=1e-3).all(2).any(1).all()  # classes.yaml colours


def test_rooms_are_mapped_classes_with_ignored_points(own_data):
    root, config = own_data
    cfg = load_config(config)
    check_data(cfg.data)
    assert data_classes(cfg.data) == 3
    rooms = load_rooms(cfg.data, "train")
    assert len(rooms) == 3
    for room in rooms:
        assert set(np.unique(room["label"]).tolist()) == {cfg.data.ignore_index, 0, 1, 2}
        assert room["color"].shape == (3000, 3) and room["color"].max() <= 1.0


def test_split_file(own_data, tmp_path):
    root, config = own_data
    listing = tmp_path / "splits.yaml"
    listing.write_text(yaml.safe_dump({"train": ["train/a.ply", "val/d.ply"], "val": ["train/c.las"]}))
    cfg = load_config(config, [f"data.split_file={listing}"])
    assert len(load_rooms(cfg.data, "train")) == 2 and len(load_rooms(cfg.data, "val")) == 1


def test_label_field_missing_from_a_file_names_it(own_data):
    root, config = own_data
    _write(root / "train" / "e.ply", 5, label_field="class")
    rooms = load_rooms(load_config(config).data, "train")
    with pytest.raises(ValueError, match=r"e\.ply: no label field 'classification'"):
        [rooms[i] for i in range(len(rooms))]


def test_classes_yaml_that_does_not_cover_the_labels(own_data):
    root, config = own_data
    (root / "classes.yaml").write_text(yaml.safe_dump({**CLASSES, "label_map": {2: 0, 5: 1}}))
    rooms = load_rooms(load_config(config).data, "train")
    with pytest.raises(ValueError, match=r"a\.ply: labels \[6\] are not covered by .*classes\.yaml"):
        rooms[0]


def test_empty_split_and_bad_classes_file(own_data, capsys):
    root, config = own_data
    (root / "val" / "d.ply").unlink()
    with pytest.raises(ValueError, match=r"the val split is empty"):
        check_data(load_config(config).data)
    (root / "classes.yaml").write_text(yaml.safe_dump({"names": ["a"], "label_map": {2: 3}}))
    with pytest.raises(ValueError, match=r"classes\.yaml: label_map maps to classes \[3\]"):
        check_data(load_config(config).data)
    assert main(["train", "--config", str(config)]) == 2
    assert "classes.yaml" in capsys.readouterr().err


def test_config_checks():
    with pytest.raises(ConfigError, match="data.root must name the folder"):
        load_config(None, ["data.dataset=folder"])
    with pytest.raises(ConfigError, match="data.label_field must name"):
        load_config(None, ["data.dataset=folder", "data.root=x", "data.label_field= "])
