"""PointNet blocks and whole-room sliding-block inference."""
import numpy as np
import pytest
import torch

from pcseg.data.blocks import BlockDataset, block_origins, predict_room, random_block, room_to_blocks
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
    # x, y centred on each block's centre
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


def test_predict_room_labels_every_point_and_averages_per_point():
    room = generate_room(2, 20_000)
    num_classes = 13

    # A "model" whose logits depend only on each point's normalised x (feature 6): the
    # average over all blocks and chunks must give back exactly that point's own logits.
    def predict_block(features):
        assert features.shape[1:] == (1024, 9) and features.dtype == torch.float32
        bins = torch.clamp((features[..., 6] * num_classes).long(), 0, num_classes - 1)
        return torch.nn.functional.one_hot(bins, num_classes).float() * 3.0

    logits, label = predict_room(room, predict_block, num_classes, block_size=1.0, stride=0.5,
                                 num_points=1024, batch_size=8)
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
