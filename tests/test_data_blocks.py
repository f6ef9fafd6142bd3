"""PointNet blocks and whole-room sliding-block inference."""

import numpy as np
import pytest
import torch

from pcseg.data.blocks import (
    BlockDataset,
    block_origins,
    class_balanced_centres,
    predict_room,
    random_block,
    room_to_blocks,
)
from pcseg.data.synthetic import generate_room


def test_block_grid_covers_the_room_like_pointnet():
    coord = np.array([[0.0, 0.0, 0.0], [2.5, 1.2, 1.0]], dtype=np.float32)
    # PointNet: ceil((extent - block) / stride) + 1 blocks per axis: x 2.5 m -> 4, y 1.2 m -> 2
    origins = block_origins(coord, block_size=1.0, stride=0.5)
    xs, ys = np.unique(origins[:, 0]), np.unique(origins[:, 1])
    np.testing.assert_allclose(xs, [0.0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(ys, [0.0, 0.5])
    assert len(origins) == 8
    # the last block reaches the far edge
    assert xs[-1] + 1.0 >= 2.5 and ys[-1] + 1.0 >= 1.2


def test_blocks_of_a_procedural_room():
    room = generate_room(5, 40_000)
    blocks = room_to_blocks(room, num_points=512, seed=1)
    features, index, label = blocks["features"], blocks["index"], blocks["label"]
    assert features.shape[1:] == (512, 9) and label.shape == features.shape[:2]
    np.testing.assert_array_equal(label, room["label"][index])
    np.testing.assert_allclose(features[..., 3:6], room["color"][index] / 255.0, atol=1e-6)
    low = room["coord"].min(0)
    extent = room["coord"].max(0) - low
    np.testing.assert_allclose(features[..., 6:9], (room["coord"][index] - low) / extent, atol=1e-5)
    # x, y centred on each block's sampled points (min + block_size / 2): within +-block_size / 2
    assert np.abs(features[..., :2]).max() <= 0.5 + 1e-5
    again = room_to_blocks(room, num_points=512, seed=1)
    np.testing.assert_array_equal(again["index"], index)

    dataset = BlockDataset([room], num_points=512, seed=1)
    assert len(dataset) == len(features)
    item = dataset[3]
    assert torch.equal(item["features"], torch.from_numpy(features[3]))
    assert item["label"].dtype == torch.int64

    rng = np.random.default_rng(0)
    block = random_block(room, rng, num_points=256)
    centre = room["coord"][block["index"], :2].mean(0)
    assert np.abs(room["coord"][block["index"], :2] - centre).max() < 1.0 + 1e-5
    np.testing.assert_array_equal(block["label"], room["label"][block["index"]])


def test_class_balanced_centres_draw_every_class_alike_and_never_an_ignored_point():
    # a long road of 19,800 points, a person of 200 far from it, 500 unlabelled points between
    rng = np.random.default_rng(0)
    road = np.c_[rng.uniform(0, 40, 19_800), rng.uniform(0, 4, 19_800), np.zeros(19_800)]
    person = np.c_[rng.uniform(30, 30.5, 200), rng.uniform(10, 10.5, 200), rng.uniform(0, 1.7, 200)]
    unlabelled = np.c_[rng.uniform(0, 40, 500), rng.uniform(20, 24, 500), np.zeros(500)]
    coord = np.vstack([road, person, unlabelled]).astype(np.float32)
    labels = np.r_[np.full(19_800, 9), np.full(200, 6), np.zeros(500)]
    room = {"coord": coord, "color": np.zeros_like(coord), "label": labels}
    cdf = class_balanced_centres(room["label"], ignore_index=0)
    assert cdf.shape == (20_500,) and np.all(np.diff(cdf) >= 0)
    # each labelled class carries half the weight; the unlabelled points none
    np.testing.assert_allclose([cdf[19_799], cdf[19_999] - cdf[19_799], cdf[-1] - cdf[19_999]], [0.5, 0.5, 0.0])

    def person_blocks(centre_cdf):
        draw = np.random.default_rng(1)
        blocks = [random_block(room, draw, 4.0, 64, min_points=10, centre_cdf=centre_cdf) for _ in range(400)]
        return sum(bool((block["label"] == 6).any()) for block in blocks) / len(blocks)

    # uniform centres find the person about once in a hundred blocks; balanced ones half the time
    assert person_blocks(None) < 0.05
    assert 0.4 < person_blocks(cdf) < 0.6
    assert class_balanced_centres(np.zeros(5, np.int64), ignore_index=0) is None


def test_predict_room_labels_every_point_and_averages_per_point():
    room = generate_room(2, 20_000)
    num_classes = 13

    # A "model" whose logits depend only on each point's normalised x (feature 6): the
    # average over all blocks and chunks must give back exactly that point's own logits.
    def predict_block(features):
        assert features.shape[1:] == (1024, 9) and features.dtype == torch.float32
        bins = torch.clamp((features[..., 6] * num_classes).long(), 0, num_classes - 1)
        return torch.nn.functional.one_hot(bins, num_classes).float() * 3.0

    logits, label = predict_room(
        room, predict_block, num_classes, block_size=1.0, stride=0.5, num_points=1024, batch_size=8
    )
    assert logits.shape == (20_000, 13) and label.shape == (20_000,)
    x = room["coord"][:, 0]
    expected = np.clip(((x - x.min()) / (x.max() - x.min()) * num_classes).astype(np.int64), 0, 12)
    # float32 feature rounding can move points sitting exactly on a bin edge
    assert (label == expected).mean() > 0.999
    np.testing.assert_allclose(logits.max(1), 3.0, rtol=1e-6)


def test_predict_room_rejects_wrong_logit_shapes():
    room = generate_room(2, 5_000)
    with pytest.raises(ValueError, match="predict_block returned shape"):
        predict_room(room, lambda f: torch.zeros(f.shape[0], f.shape[1], 5), 13, num_points=512)


def test_block_xy_centred_on_the_sampled_points_like_pointnet():
    # room2blocks_plus_normalized: x - (min x of the block's sampled points + block_size / 2),
    # the same for y; z is the room-shifted z, not centred
    coord = np.array(
        [
            # cell x 0..1
            [0.0, 0.0, -0.5],
            [0.4, 0.3, 1.0],
            # cell x 1..2, its points start at x 1.6, y 0.5
            [1.6, 0.5, 0.2],
            [1.9, 0.8, 2.0],
            [1.7, 0.9, 3.0],
        ],
        dtype=np.float32,
    )
    color = np.arange(15, dtype=np.uint8).reshape(5, 3) * 10
    room = {"coord": coord, "color": color, "label": np.arange(5)}
    blocks = room_to_blocks(room, block_size=1.0, stride=1.0, num_points=3, min_points=2, seed=0)
    assert len(blocks["features"]) == 2
    second = np.argsort(blocks["index"][1])
    np.testing.assert_array_equal(blocks["index"][1][second], [2, 3, 4])  # all 3 points, no repeats
    features = blocks["features"][1][second]
    np.testing.assert_allclose(features[:, 0], [1.6 - 2.1, 1.9 - 2.1, 1.7 - 2.1], atol=1e-6)
    np.testing.assert_allclose(features[:, 1], [0.5 - 1.0, 0.8 - 1.0, 0.9 - 1.0], atol=1e-6)
    # the grid cell's centre (1.5, 0.5) would give other values: the test tells the rules apart
    assert np.abs(features[:, 0] - (coord[2:, 0] - 1.5)).max() > 0.5
    np.testing.assert_allclose(features[:, 2], coord[2:, 2] + 0.5, atol=1e-6)
    np.testing.assert_allclose(features[:, 3:6], color[2:] / 255.0, atol=1e-6)
    np.testing.assert_allclose(features[:, 6:9], (coord[2:] - [0.0, 0.0, -0.5]) / [1.9, 0.9, 3.5], atol=1e-6)
    # the first block was topped up with repeats: its minimum is over what was sampled
    first = blocks["features"][0]
    sampled = coord[blocks["index"][0]]
    np.testing.assert_allclose(first[:, :2], sampled[:, :2] - (sampled[:, :2].min(0) + 0.5), atol=1e-6)


def test_every_block_path_centres_on_the_points_it_feeds():
    # training blocks (grid and random) and inference chunks follow one rule, so the model
    # sees the same input distribution: each block's smallest x and y feature is -block_size / 2
    room = generate_room(3, 20_000)
    blocks = room_to_blocks(room, block_size=1.0, stride=0.5, num_points=256, seed=0)
    np.testing.assert_allclose(blocks["features"][..., :2].min(1), -0.5, atol=1e-6)
    rng = np.random.default_rng(1)
    for _ in range(5):
        block = random_block(room, rng, block_size=1.5, num_points=256)
        np.testing.assert_allclose(block["features"][:, :2].min(0), -0.75, atol=1e-6)
    seen = []

    def predict_block(features):
        seen.append(features.numpy().copy())
        return torch.zeros(features.shape[0], features.shape[1], 13)

    predict_room(room, predict_block, 13, block_size=2.0, stride=1.0, num_points=1024, batch_size=64)
    chunks = np.concatenate(seen)
    np.testing.assert_allclose(chunks[..., :2].min(1), -1.0, atol=1e-6)
    assert chunks[..., :2].max() <= 1.0 + 1e-5
