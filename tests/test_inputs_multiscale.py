"""Multiscale features of a whole scan (``data.multiscale_features``): what they say about poles,
walls and the road, their invariances and edge cases, and their way into the model's inputs."""

import math

import numpy as np
import pytest
import torch
from test_inputs_lidar import lidar_config

from pcseg.checkpoint import build_model_from_config
from pcseg.config import config_from_dict
from pcseg.data.blocks import random_block
from pcseg.data.loading import load_rooms
from pcseg.inputs import (
    GROUND_CELLS,
    MULTISCALE_CHANNELS,
    MULTISCALE_VOXELS,
    block_inputs,
    eigenvalues,
    input_channels,
    multiscale_features,
    room_fields,
    rotate_inputs,
)
from pcseg.predict import segment_cloud

# channels of one scale (``pcseg.inputs._neighbourhood_shape``)
LINEARITY, PLANARITY, SCATTERING, VERTICAL_SHARE, ABOVE_LOWEST, BELOW_HIGHEST, LOG_SPREAD = range(7)
SCALES = 1 + len(MULTISCALE_VOXELS)


def multiscale_config(**data):
    return lidar_config(**{"multiscale_features": True, **data})


def street(seed=0):
    """A road 1.73 m below the sensor, a 3 m pole on it and a wall beside it, LiDAR-dense.

    Returns:
        points: (N, 3) float64; parts: (N,) int64, 0 road, 1 pole, 2 wall.
    """
    rng = np.random.default_rng(seed)
    road = np.c_[rng.uniform(-6, 6, (12000, 2)), -1.73 + rng.normal(0, 0.005, 12000)]
    angle, height = rng.uniform(0, 2 * np.pi, 1500), rng.uniform(0.0, 3.0, 1500)
    pole = np.c_[2.0 + 0.05 * np.cos(angle), 2.0 + 0.05 * np.sin(angle), -1.73 + height]
    wall = np.c_[
        np.full(4000, -5.0) + rng.normal(0, 0.005, 4000), rng.uniform(-4, 4, 4000), rng.uniform(-1.73, 1.27, 4000)
    ]
    return np.r_[road, pole, wall], np.r_[np.zeros(12000), np.ones(1500), np.full(4000, 2)].astype(np.int64)


def test_eigenvalues_in_closed_form_match_lapack():
    torch.manual_seed(0)
    x = torch.randn(2000, 16, 3, dtype=torch.float64) * torch.tensor([3.0, 1.0, 1e-3])
    x = x - x.mean(1, keepdim=True)
    covariance = x.transpose(1, 2) @ x / 16
    values = eigenvalues(covariance)
    assert values.shape == (2000, 3) and values.dtype == torch.float64
    reference = torch.linalg.eigvalsh(covariance).flip(-1)
    assert float(((values - reference).abs() / reference.sum(-1, keepdim=True)).max()) < 1e-9
    torch.testing.assert_close(
        eigenvalues(torch.stack([2 * torch.eye(3), torch.zeros(3, 3)])),
        torch.tensor([[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]], dtype=torch.float64),
    )


def test_poles_walls_and_the_road_look_as_they_are():
    points, parts = street()
    features = multiscale_features(points)
    assert features.shape == (len(points), MULTISCALE_CHANNELS) and features.dtype == np.float32
    assert np.isfinite(features).all()
    pole, wall, road = parts == 1, parts == 2, parts == 0
    middle_of_pole = pole & (points[:, 2] > -1.0) & (points[:, 2] < 0.5)
    # at 0.25 m a pole is a vertical line, a wall a vertical plane, the road a level one (16
    # points of the full-density cloud are a patch of the pole's surface, not yet a line)
    quarter = features[:, 7:14]
    assert np.median(quarter[middle_of_pole, LINEARITY]) > 0.9
    assert np.median(quarter[middle_of_pole, VERTICAL_SHARE]) > 0.9
    assert np.median(quarter[wall, PLANARITY]) > 0.6
    assert 0.4 < np.median(quarter[wall, VERTICAL_SHARE]) < 0.6
    assert np.median(quarter[road, PLANARITY]) > 0.6 and np.median(quarter[road, VERTICAL_SHARE]) < 0.01
    # the spread grows with the scale
    spread = np.median(features[:, LOG_SPREAD : 7 * SCALES : 7], 0)
    assert (np.diff(spread) > 0).all()
    # height above the ground around: the pole's top 3 m above the road, the road itself at 0
    ground = features[:, -len(GROUND_CELLS) :]
    top = pole & (points[:, 2] > 1.2)
    np.testing.assert_allclose(ground[top], 3.0, atol=0.1)
    assert np.abs(ground[road]).max() < 0.05
    # a coarser scale sees more: the pole's 1 m voxels span it from the road to its top
    coarsest = features[:, 7 * (SCALES - 1) : 7 * SCALES]
    assert np.median(coarsest[middle_of_pole, ABOVE_LOWEST] + coarsest[middle_of_pole, BELOW_HIGHEST]) > 2.0


def test_a_spurious_return_below_the_road_does_not_lower_the_ground():
    """Real scans hold single returns metres below the road (the real SemanticKITTI scan one at
    -11.6 m): the ground of its square is the lowest surface, not the lowest point."""
    points, parts = street()
    clean = multiscale_features(points)
    spurious = multiscale_features(np.r_[points, [[0.5, 0.5, -11.6]]])[:-1]
    ground = slice(MULTISCALE_CHANNELS - len(GROUND_CELLS), None)
    np.testing.assert_allclose(spurious[:, ground], clean[:, ground], atol=1e-4)


def test_invariant_to_where_the_cloud_lies_and_to_turns_about_z():
    points, _ = street()
    features = multiscale_features(points)
    # a map frame far from the origin (float64 in, float32 features of the local cloud)
    far = multiscale_features(points + np.array([4.5e5, 5.4e6, 120.0]))
    np.testing.assert_allclose(far, features, atol=1e-5)
    # turned about z: the finest scale and the height above ground are the same; the coarser
    # scales sit on axis-aligned voxel grids and change with the cloud's heading
    angle = math.radians(30.0)
    turn = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    turned = multiscale_features(points @ turn.T)
    # (a tie for the 16th neighbour may fall the other way after the turn's rounding)
    assert (np.abs(turned[:, :7] - features[:, :7]) < 2e-3).all(1).mean() > 0.999
    np.testing.assert_allclose(turned[:, -len(GROUND_CELLS) :], features[:, -len(GROUND_CELLS) :], atol=0.02)


def test_a_large_cloud_is_done_in_chunks_with_the_same_result(monkeypatch):
    import pcseg.inputs as inputs_module

    points, _ = street()
    whole = multiscale_features(points)
    monkeypatch.setattr(inputs_module, "MULTISCALE_CHUNK", 1000)
    np.testing.assert_array_equal(multiscale_features(points), whole)


@pytest.mark.parametrize("count", [0, 1, 2, 5, 15])
def test_tiny_clouds_and_duplicates_give_finite_features(count):
    rng = np.random.default_rng(count)
    points = rng.uniform(0, 1, (count, 3))
    features = multiscale_features(points)
    assert features.shape == (count, MULTISCALE_CHANNELS) and np.isfinite(features).all()
    same = multiscale_features(np.repeat([[1.0, 2.0, 3.0]], 40, 0))
    assert np.isfinite(same).all()
    assert (same[:, [LINEARITY, PLANARITY, SCATTERING]] == 0).all()


def test_bad_points_are_named():
    with pytest.raises(ValueError, match="points must be an \\(N, 3\\) array"):
        multiscale_features(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        multiscale_features(np.array([[0.0, 0.0, 0.0], [np.nan, 1.0, 1.0]]))


def test_a_map_kilometres_wide_costs_its_points_not_its_area():
    """Two patches 40 km apart: the ground is looked for in the occupied squares only."""
    points, _ = street()
    far = points + np.array([40_000.0, 40_000.0, 0.0])
    both = multiscale_features(np.r_[points, far])
    np.testing.assert_allclose(both[: len(points), -2:], multiscale_features(points)[:, -2:], atol=1e-3)


def test_config_counts_the_channels():
    assert input_channels(multiscale_config().data) == 2 + MULTISCALE_CHANNELS
    assert input_channels(multiscale_config(geometric_features=True).data) == 2 + 7 + MULTISCALE_CHANNELS
    indoor = config_from_dict({"data": {"multiscale_features": True}})
    assert input_channels(indoor.data) == 3 + 7 + MULTISCALE_CHANNELS


def test_rooms_carry_them_to_an_indoor_model_and_inference_makes_them():
    """A model without LiDAR channels: every loaded room holds the field, its blocks carry it
    after the 9 PointNet features, and ``segment_cloud`` makes it for a bare cloud."""
    cfg = config_from_dict(
        {
            "data": {"multiscale_features": True, "train_rooms": 1, "val_rooms": 1, "points_per_room": 3000},
            "model": {"width_multiplier": 0.125},
        }
    )
    room = load_rooms(cfg.data, "val")[0]
    np.testing.assert_array_equal(room["multiscale"], multiscale_features(room["coord"]))
    block = random_block(room, np.random.default_rng(0), 1.0, 64, min_points=1)
    assert block["features"].shape == (64, 9 + MULTISCALE_CHANNELS)
    _, features = block_inputs(torch.from_numpy(block["features"])[None], cfg.data)
    np.testing.assert_array_equal(features[0, :, 10:].numpy(), room["multiscale"][block["index"]])
    # blocks cut from a room without the field are refused, not fed zeros
    bare = random_block({"coord": room["coord"], "color": room["color"]}, np.random.default_rng(0), 1.0, 64, 1)
    with pytest.raises(ValueError, match="the room needs 'multiscale'"):
        block_inputs(torch.from_numpy(bare["features"])[None], cfg.data)
    torch.manual_seed(0)
    model = build_model_from_config(cfg).eval()
    result = segment_cloud(model, cfg, room["coord"], room["color"])
    assert result["labels"].shape == (len(room["coord"]),)


def test_blocks_carry_the_scan_features_to_the_model_and_turns_keep_them():
    cfg = multiscale_config(geometric_features=True)
    points, _ = street()
    points = points.astype(np.float32)
    fields = room_fields(points, np.full(len(points), 0.4, np.float32), cfg.data)
    np.testing.assert_array_equal(fields["multiscale"], multiscale_features(points))
    room = {"coord": points, "color": np.zeros_like(points), **fields}
    block = random_block(room, np.random.default_rng(0), 4.0, 64, min_points=1)
    assert block["features"].shape == (64, 14 + MULTISCALE_CHANNELS)
    _, features = block_inputs(torch.from_numpy(block["features"])[None], cfg.data)
    assert features.shape == (1, 64, input_channels(cfg.data))
    np.testing.assert_array_equal(features[0, :, 9:].numpy(), fields["multiscale"][block["index"]])
    # the training turn rotates the normals and offsets and leaves the scan features alone
    _, turned = rotate_inputs(torch.zeros(1, 64, 3), features, cfg.data, torch.tensor([1.0]))
    assert turned.shape == features.shape
    torch.testing.assert_close(turned[..., 9:], features[..., 9:])


def test_inference_computes_them_over_the_whole_scan(monkeypatch):
    """``segment_cloud`` takes the features of the whole cloud before it cuts tiles: every
    tile's points carry the whole cloud's values, not those of the tile alone."""
    import pcseg.predict as predict_module

    cfg = multiscale_config()
    torch.manual_seed(0)
    model = build_model_from_config(cfg).eval()
    points, _ = street()
    points = points.astype(np.float32)
    whole = multiscale_features(points)
    row_of = {tuple(p): i for i, p in enumerate(points.tolist())}
    seen = []
    real = predict_module.predict_tile

    def recording(model, data, tile_points, *args, lidar=None, **kwargs):
        xyz = np.stack([lidar["sensor_x"], lidar["sensor_y"], lidar["height"]], 1)
        rows = np.array([row_of[tuple(p)] for p in xyz.tolist()])
        np.testing.assert_array_equal(lidar["multiscale"], whole[rows])
        seen.append(len(rows))
        return real(model, data, tile_points, *args, lidar=lidar, **kwargs)

    monkeypatch.setattr(predict_module, "predict_tile", recording)
    result = segment_cloud(
        model, cfg, points, None, intensity=np.full(len(points), 0.4, np.float32), max_tile_points=4000
    )
    assert len(seen) > 3 and result["labels"].shape == (len(points),)
