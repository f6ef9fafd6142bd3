"""Procedural rooms: determinism, contents, the height-only baseline, rendered views."""

import time

import numpy as np
import pytest

from pcseg.bridge import PinholeCamera, backproject_depth
from pcseg.data import synthetic
from pcseg.data.classes import S3DIS_CLASS_NAMES
from pcseg.data.synthetic import (
    FLOOR,
    WALL,
    SyntheticRooms,
    ViewSensor,
    build_room,
    generate_room,
    generate_views,
    look_at_pose,
    render_view,
    sample_room,
)


def _miou(pred: np.ndarray, gt: np.ndarray, num_classes: int = 13) -> tuple[float, np.ndarray]:
    confusion = np.bincount(gt * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    present = confusion.sum(1) > 0
    iou = inter / np.maximum(union, 1)
    return float(iou[present].mean()), iou


def test_room_is_deterministic_and_well_formed():
    room = generate_room(7, num_points=30_000)
    again = generate_room(7, num_points=30_000)
    for key in ("coord", "color", "label", "normal", "instance"):
        np.testing.assert_array_equal(room[key], again[key])
    assert room["coord"].shape == (30_000, 3) and room["coord"].dtype == np.float32
    assert room["color"].shape == (30_000, 3) and room["color"].dtype == np.uint8
    assert room["normal"].shape == (30_000, 3) and room["normal"].dtype == np.float32
    assert room["label"].dtype == np.int64 and room["instance"].dtype == np.int64
    assert room["label"].min() >= 0 and room["label"].max() < len(S3DIS_CLASS_NAMES)
    np.testing.assert_allclose(np.linalg.norm(room["normal"], axis=1), 1.0, atol=1e-5)
    other = generate_room(8, num_points=30_000)
    assert not np.array_equal(room["coord"], other["coord"])


def test_floor_and_walls_lie_on_the_room_box():
    scene = build_room(3)
    width, depth, height = scene.size
    room = sample_room(scene, 20_000, seed=0)
    floor = room["label"] == FLOOR
    # sensor noise is 4 mm along the normal: the floor is z = 0 within a few sigma
    assert np.abs(room["coord"][floor, 2]).max() < 0.03
    np.testing.assert_allclose(room["normal"][floor], np.tile([0, 0, 1], (floor.sum(), 1)), atol=1e-6)
    wall = room["coord"][room["label"] == WALL]
    distance_to_box = np.min(np.abs(np.stack([wall[:, 0], wall[:, 0] - width, wall[:, 1], wall[:, 1] - depth])), 0)
    assert distance_to_box.max() < 0.03


def test_all_classes_occur_with_plausible_sizes():
    counts = np.zeros(13, dtype=np.int64)
    for seed in range(12):
        room = generate_room(seed, num_points=20_000)
        counts += np.bincount(room["label"], minlength=13)
        # chairs: seat and back below 1.2 m; tables: tops at 0.7-0.78 m
        chair_z = room["coord"][room["label"] == synthetic.CHAIR, 2]
        table_z = room["coord"][room["label"] == synthetic.TABLE, 2]
        if chair_z.size:
            assert chair_z.max() < 1.2
        if table_z.size:
            assert table_z.max() < 0.8
    assert (counts > 0).all(), dict(zip(S3DIS_CLASS_NAMES, counts))
    # structure dominates, as in S3DIS
    assert counts[[0, 1, 2]].sum() > 0.4 * counts.sum()


def test_generation_is_fast():
    start = time.perf_counter()
    generate_room(11)  # 100k points
    elapsed = time.perf_counter() - start
    # a generous bound: generation takes a fraction of it (benchmarks/RESULTS.md), even on a loaded CI machine
    assert elapsed < 3.0, elapsed


def test_height_only_classifier_is_weak():
    """A per-height-bin majority classifier (z only) must stay far below 60 % mIoU."""
    train = [generate_room(seed, 30_000) for seed in range(8)]
    test = [generate_room(seed, 30_000) for seed in range(100, 104)]
    z = np.concatenate([r["coord"][:, 2] for r in train])
    label = np.concatenate([r["label"] for r in train])
    edges = np.linspace(z.min(), z.max(), 151)
    bins = np.clip(np.digitize(z, edges) - 1, 0, 149)
    votes = np.zeros((150, 13))
    np.add.at(votes, (bins, label), 1)
    majority = votes.argmax(1)
    z_test = np.concatenate([r["coord"][:, 2] for r in test])
    label_test = np.concatenate([r["label"] for r in test])
    pred = majority[np.clip(np.digitize(z_test, edges) - 1, 0, 149)]
    miou, iou = _miou(pred, label_test)
    print(f"height-only mIoU {miou:.3f}; per class {np.round(iou, 2).tolist()}")
    assert miou < 0.35
    # the height classifier must not get doors, windows or boards out of walls
    assert iou[[synthetic.DOOR, synthetic.WINDOW, synthetic.BOARD]].max() < 0.2


def test_rendered_view_matches_the_scene_geometry():
    scene = build_room(4)
    width, depth, height = scene.size
    camera = PinholeCamera(200.0, 200.0, 79.5, 59.5, 160, 120)
    pose = look_at_pose((0.6, 0.6, 1.5), (width - 0.5, depth - 0.5, 1.0))
    view = render_view(scene, camera, pose)
    assert view["depth"].shape == (120, 160) and view["color"].shape == (120, 160, 3)
    hit = view["label"] >= 0
    assert hit.mean() > 0.99  # a closed room: every ray hits something
    # back-project with the bridge and check the surfaces land where the scene says
    result = backproject_depth(view["depth"], camera, 1.0, float("inf"), pose=pose)
    points = result.points
    labels = view["label"][result.valid]
    floor_z = points[labels == FLOOR, 2]
    assert floor_z.size > 100 and np.abs(floor_z).max() < 1e-3
    wall = points[labels == WALL]
    distance_to_box = np.min(np.abs(np.stack([wall[:, 0], wall[:, 0] - width, wall[:, 1], wall[:, 1] - depth])), 0)
    assert wall.shape[0] > 100 and distance_to_box.max() < 1e-3
    # every point is inside the room box (windows/doors are recessed at most 25 cm)
    assert points[:, 2].min() > -1e-3 and points[:, 2].max() < height + 1e-3


def test_dataset_items_have_fixed_keys():
    dataset = SyntheticRooms([1, 2], num_points=5_000)
    item = dataset[1]
    assert set(item) == {"coord", "color", "normal", "label", "instance", "name"}
    assert item["color"].dtype == np.float32 and 0.0 <= item["color"].min() and item["color"].max() <= 1.0
    np.testing.assert_array_equal(item["coord"], generate_room(2, 5_000)["coord"])
    with pytest.raises(ValueError, match="seeds"):
        SyntheticRooms([])


def test_dataset_augmentation_is_a_pure_function_of_seed_epoch_and_index():
    import torch.utils.data

    from pcseg.data.transforms import Compose, RandomJitter, RandomRotateZ

    def dataset():
        return SyntheticRooms(
            [1, 1, 1], num_points=2_000, transform=Compose([RandomRotateZ(), RandomJitter()]), augment_seed=7
        )

    reader = dataset()
    in_order = [reader[i]["coord"] for i in range(3)]
    # the same room at three indices gets three different augmentations
    assert not np.allclose(in_order[0], in_order[1]) and not np.allclose(in_order[1], in_order[2])
    # reading order does not matter: item 2 read first is item 2 read last
    np.testing.assert_array_equal(dataset()[2]["coord"], in_order[2])
    np.testing.assert_array_equal(dataset()[-1]["coord"], in_order[2])
    # two workers each start from a copy of the dataset: they must not repeat each other's draws
    loader = torch.utils.data.DataLoader(dataset(), batch_size=None, num_workers=2)
    for item, expected in zip(loader, in_order):
        np.testing.assert_array_equal(item["coord"].numpy(), expected)
    later = dataset()
    later.set_epoch(1)
    assert not np.allclose(later[0]["coord"], in_order[0])
    later.set_epoch(0)
    np.testing.assert_array_equal(later[0]["coord"], in_order[0])
    with pytest.raises(ValueError, match="epoch"):
        later.set_epoch(-1)
    # without a transform the item is the generated room, whatever the epoch
    plain = SyntheticRooms([1], num_points=2_000)
    plain.set_epoch(3)
    np.testing.assert_array_equal(plain[0]["coord"], generate_room(1, 2_000)["coord"])


def test_views_are_partial_noisy_z_up_and_deterministic():
    views = generate_views(3, 4, 5000)
    again = generate_views(3, 4, 5000)
    assert len(views) == 4
    for view, same in zip(views, again):
        for key in ("coord", "color", "label"):
            np.testing.assert_array_equal(view[key], same[key])
        assert view["coord"].dtype == np.float32 and view["color"].dtype == np.uint8
        assert len(view["coord"]) == len(view["label"]) == 5000
    scene = build_room(3)
    room = generate_room(3, 20_000)
    coord = np.concatenate([v["coord"] for v in views])
    label = np.concatenate([v["label"] for v in views])
    # in the room's frame, z up: the floor at z = 0 up to the Kinect's noise at a few metres
    floor = coord[label == S3DIS_CLASS_NAMES.index("floor")]
    assert len(floor) > 1000 and abs(np.median(floor[:, 2])) < 0.01 and 0.002 < floor[:, 2].std() < 0.05
    assert (coord.min(0) > -0.2).all() and (coord.max(0) < np.array(scene.size) + 0.2).all()
    # one view sees part of the room: less of it than the whole room's bounding box
    assert all((np.ptp(v["coord"], 0) < np.ptp(room["coord"], 0) + 0.1).all() for v in views)
    assert min(np.prod(np.ptp(v["coord"][:, :2], 0)) for v in views) < 0.9 * np.prod(scene.size[:2])


def test_views_have_holes_where_the_sensor_fails():
    dense = generate_views(5, 2, 10**6, ViewSensor(edge_dropout=0.0, hole_fraction=0.0))
    holed = generate_views(5, 2, 10**6, ViewSensor(edge_dropout=1.0, hole_fraction=0.2))
    for full, partial in zip(dense, holed):
        assert len(partial["coord"]) < 0.82 * len(full["coord"])


def test_training_adds_views_to_the_rooms_and_validates_on_whole_rooms():
    from pcseg.config import config_from_dict
    from pcseg.data.loading import load_rooms

    data = config_from_dict(
        {"data": {"train_rooms": 2, "val_rooms": 1, "points_per_room": 6000, "synthetic_views": 3}}
    ).data
    train, val = load_rooms(data, "train"), load_rooms(data, "val")
    assert len(train) == 2 + 6 and [len(room["coord"]) for room in train[:2]] == [6000, 6000]
    assert all(len(view["coord"]) <= 2000 for view in train[2:])
    assert len(val) == 1 and len(val[0]["coord"]) == 6000
