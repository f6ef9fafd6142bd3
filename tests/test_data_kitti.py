"""SemanticKITTI scans and labels, KITTI object frames, from the real samples."""

import numpy as np
import pytest

from pcseg.data.kitti import (
    SemanticKittiConfig,
    SemanticKITTIScans,
    read_kitti_object_frame,
    read_kitti_object_labels,
    read_label_file,
    read_semantickitti_scan,
    read_velodyne_bin,
)


@pytest.fixture
def config(shared_data):
    return SemanticKittiConfig.from_yaml(shared_data / "semantickitti" / "semantic-kitti.yaml")


def test_learning_map_maps_raw_ids_to_19_classes(shared_data, config):
    assert config.num_classes == 20 and config.class_names[1] == "car" and config.class_names[19] == "traffic-sign"
    folder = shared_data / "semantickitti"
    scan = read_semantickitti_scan(folder / "000000.bin", folder / "000000.label", config)
    assert scan["coord"].shape == (124_668, 3) and scan["coord"].dtype == np.float32
    raw = np.fromfile(folder / "000000.label", dtype=np.uint32)
    np.testing.assert_array_equal(scan["raw_label"], raw & 0xFFFF)
    np.testing.assert_array_equal(scan["instance"], raw >> 16)
    # hand-checked entries of the YAML: car 10 -> 1, road 40 -> 9, lane-marking 60 -> road 9,
    # outlier 1 -> 0, other-object 99 -> 0, moving-motorcyclist 255 -> motorcyclist 8
    for raw_id, mapped in [(10, 1), (40, 9), (60, 9), (1, 0), (99, 0), (255, 8), (70, 15)]:
        rows = scan["raw_label"] == raw_id
        assert rows.any() and (scan["label"][rows] == mapped).all()
    assert scan["label"].min() >= 0 and scan["label"].max() <= 19
    with pytest.raises(ValueError, match="my.label: semantic ids \\[7\\]"):
        config.map_labels(np.array([10, 7]), "my.label")


def test_semantickitti_dataset_layout(shared_data, config, tmp_path):
    folder = tmp_path / "sequences" / "08"
    (folder / "velodyne").mkdir(parents=True)
    (folder / "labels").mkdir()
    (folder / "velodyne" / "000000.bin").write_bytes((shared_data / "semantickitti" / "000000.bin").read_bytes())
    (folder / "labels" / "000000.label").write_bytes((shared_data / "semantickitti" / "000000.label").read_bytes())
    dataset = SemanticKITTIScans(tmp_path, config, split="valid")
    assert len(dataset) == 1
    item = dataset[0]
    assert item["name"] == "08/000000" and item["label"].shape == (124_668,)
    with pytest.raises(FileNotFoundError, match="sequences/00/velodyne"):
        SemanticKITTIScans(tmp_path, config, split="train")


def test_truncated_and_mismatched_files_name_the_file(shared_data, tmp_path):
    data = (shared_data / "semantickitti" / "000000.bin").read_bytes()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(data[:-6])
    with pytest.raises(ValueError, match="truncated.bin: .* not a whole number of points"):
        read_velodyne_bin(truncated)
    with pytest.raises(FileNotFoundError, match="absent.bin"):
        read_velodyne_bin(tmp_path / "absent.bin")
    short = tmp_path / "short.label"
    short.write_bytes((shared_data / "semantickitti" / "000000.label").read_bytes()[:400])
    with pytest.raises(ValueError, match="short.label: 100 labels but the scan has 124668 points"):
        read_label_file(short, num_points=124_668)


def test_kitti_object_frame(shared_data):
    folder = shared_data / "kitti" / "000000"
    frame = read_kitti_object_frame(folder / "velodyne.bin", folder / "image_2.png", folder / "calib.txt")
    assert frame["coord"].shape == (115_384, 3) and frame["image"].shape == (370, 1224, 3)
    # README: about 20,000 points of frame 000000 land inside image_2
    assert 19_000 < frame["in_image"].sum() < 21_500
    # points in the image are in front of the car (LiDAR x forward)
    assert (frame["coord"][frame["in_image"], 0] > 0).all()
    assert (frame["color"][~frame["in_image"]] == 0).all()
    labels = read_kitti_object_labels(folder / "label_2.txt")
    assert labels[0].kind == "Pedestrian" and labels[0].location == (1.84, 1.47, 8.41)
