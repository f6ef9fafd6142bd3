"""LiDAR inputs: intensity and range as their own model channels, through training and inference."""

import warnings

import numpy as np
import pytest
import torch

from pcseg.checkpoint import build_model_from_config
from pcseg.config import ConfigError, config_from_dict
from pcseg.data.blocks import random_block, room_to_blocks
from pcseg.data.lidar_sim import write_simulated_semantickitti
from pcseg.data.loading import load_rooms
from pcseg.inputs import (
    RANGE_SCALE,
    augment_lidar_inputs,
    block_inputs,
    input_channels,
    lidar_room_fields,
    normalise_intensity,
)
from pcseg.predict import segment_cloud


def lidar_config(**data):
    return config_from_dict(
        {
            "data": {
                "use_color": False,
                "use_intensity": True,
                "use_range": True,
                "geometric_features": False,
                "num_points": 64,
                "block_size": 4.0,
                "num_classes": 20,
                **data,
            },
            "model": {"width_multiplier": 0.125},
        }
    )


def lidar_room(n=400, seed=0):
    rng = np.random.default_rng(seed)
    coord = rng.uniform(-10, 10, (n, 3)).astype(np.float32)
    remission = rng.uniform(0, 1, n).astype(np.float32)
    return coord, remission


def test_channels_count_and_config_checks():
    cfg = lidar_config()
    assert input_channels(cfg.data) == 2
    assert input_channels(lidar_config(use_color=True, geometric_features=True).data) == 3 + 2 + 7
    with pytest.raises(ConfigError, match="data.intensity_scale"):
        lidar_config(intensity_scale=0)
    with pytest.raises(ConfigError, match="data.use_color must be false"):
        lidar_config(use_color=True, dataset="semantickitti", root="r", label_config="y")
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict({"data": {"use_intensty": True}})
    with pytest.raises(ConfigError, match="model.name acnn with LiDAR channels needs data.geometric_features"):
        config_from_dict(
            {
                "data": {"use_intensity": True, "use_color": False, "geometric_features": False},
                "model": {"name": "acnn"},
            }
        )


def test_normalise_intensity_per_sensor():
    np.testing.assert_allclose(normalise_intensity(np.array([0.0, 0.5, 1.2])), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(normalise_intensity(np.array([0, 51, 255], np.uint8), 255.0), [0.0, 0.2, 1.0])
    with pytest.raises(ValueError, match="intensity must be \\(N,\\)"):
        normalise_intensity(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        normalise_intensity(np.array([np.nan]))


def test_block_features_carry_intensity_and_range_to_the_model_inputs():
    cfg = lidar_config()
    coord, remission = lidar_room()
    room = {"coord": coord, "color": np.zeros_like(coord), **lidar_room_fields(coord, remission, cfg.data)}
    blocks = room_to_blocks(room, block_size=4.0, stride=4.0, num_points=64, min_points=1)
    assert blocks["features"].shape[-1] == 14
    block = random_block(room, np.random.default_rng(0), 4.0, 64, min_points=1)
    points, features = block_inputs(torch.from_numpy(block["features"])[None], cfg.data)
    assert features.shape == (1, 64, 2)
    np.testing.assert_allclose(features[0, :, 0].numpy(), remission[block["index"]])
    np.testing.assert_allclose(
        features[0, :, 1].numpy(), np.linalg.norm(coord[block["index"]], axis=1) / RANGE_SCALE, rtol=1e-5
    )
    # a LiDAR model's z is the sensor-frame height: an outlier far below the road does not move it
    np.testing.assert_allclose(points[0, :, 2].numpy(), coord[block["index"], 2])
    low = {"coord": np.r_[coord, [[0, 0, -30]]].astype(np.float32), "color": np.zeros((len(coord) + 1, 3))}
    low.update(lidar_room_fields(low["coord"], np.r_[remission, 0.1], cfg.data))
    again = random_block(low, np.random.default_rng(0), 4.0, 64, min_points=1)
    same = again["index"] < len(coord)
    np.testing.assert_allclose(
        block_inputs(torch.from_numpy(again["features"])[None], cfg.data)[0][0, same, 2].numpy(),
        coord[again["index"][same], 2],
    )
    # a cloud without the LiDAR columns is refused, not fed zeros
    plain = random_block({"coord": coord, "color": np.zeros_like(coord)}, np.random.default_rng(0), 4.0, 64, 1)
    with pytest.raises(ValueError, match="no LiDAR columns"):
        block_inputs(torch.from_numpy(plain["features"])[None], cfg.data)


def test_lidar_normals_face_the_sensor_whatever_the_outliers():
    """A road 1.73 m below the sensor and a wall facing it: their normals point at the sensor,
    with or without one spurious return 10 m below the road (the real SemanticKITTI scan has
    one at -11.6 m, which moved the bounding box's centre above the road and turned every road
    normal down when normals faced the box's centre)."""
    cfg = lidar_config(geometric_features=True)
    rng = np.random.default_rng(0)
    road = np.c_[rng.uniform(2, 6, (600, 2)), np.full(600, -1.73)]
    wall = np.c_[np.full(400, 8.0), rng.uniform(-2, 2, 400), rng.uniform(-1.7, 1.0, 400)]
    coord = np.r_[road, wall].astype(np.float32)
    for outlier in (False, True):
        cloud = np.r_[coord, [[4.0, 0.0, -11.6]]].astype(np.float32) if outlier else coord
        room = {"coord": cloud, "color": np.zeros_like(cloud)}
        room.update(lidar_room_fields(cloud, np.full(len(cloud), 0.3, np.float32), cfg.data))
        blocks = room_to_blocks(room, block_size=20.0, stride=20.0, num_points=len(cloud), min_points=1)
        features = torch.from_numpy(blocks["features"])
        _, inputs = block_inputs(features, cfg.data)
        normals = inputs[..., 2:5].reshape(-1, 3).numpy()
        index = blocks["index"].reshape(-1)
        on_road, on_wall = index < 600, (index >= 600) & (index < 1000)
        assert (normals[on_road, 2] > 0.9).all(), outlier  # up, towards the sensor above
        assert (normals[on_wall, 0] < -0.9).all(), outlier  # towards the sensor at x = 0


def test_lidar_augmentation_scales_intensity_and_shifts_height_per_block():
    cfg = lidar_config(geometric_features=True, augment_intensity=1.0, augment_height=0.5)
    points = torch.rand(3, 50, 3)
    features = torch.rand(3, 50, 2 + 7) * 0.5
    gain_draw, shift_draw = torch.tensor([0.0, 0.5, 1.0 - 1e-7]), torch.tensor([0.0, 0.5, 1.0 - 1e-7])
    moved, scaled = augment_lidar_inputs(points, features, cfg.data, gain_draw, shift_draw)
    # gains 1/2, 1, 2 (clipped to 1); shifts -0.5, 0, +0.5 m; xy and the other channels untouched
    expected_gain = torch.tensor([0.5, 1.0, 2.0])[:, None]
    torch.testing.assert_close(scaled[..., 0], (features[..., 0] * expected_gain).clamp(0, 1))
    torch.testing.assert_close(scaled[..., 1:], features[..., 1:])
    torch.testing.assert_close(moved[..., 2], points[..., 2] + torch.tensor([-0.5, 0.0, 0.5])[:, None])
    torch.testing.assert_close(moved[..., :2], points[..., :2])
    # off by default: the inputs come back as they were
    same = augment_lidar_inputs(points, features, lidar_config().data, gain_draw, shift_draw)
    assert same[0] is points and same[1] is features
    with pytest.raises(ConfigError, match="data.augment_height must be >= 0"):
        lidar_config(augment_height=-1.0)
    with pytest.raises(ConfigError, match="needs data.use_intensity"):
        lidar_config(use_intensity=False, augment_intensity=0.5)


def test_semantickitti_loader_gives_intensity_not_colour(tmp_path):
    yaml = write_simulated_semantickitti(tmp_path, [1], [2])
    cfg = lidar_config(dataset="semantickitti", root=str(tmp_path), label_config=str(yaml))
    scan = load_rooms(cfg.data, "val")[0]
    assert scan["intensity"].dtype == np.float32 and scan["intensity"].max() <= 1.0
    np.testing.assert_allclose(scan["range"], np.linalg.norm(scan["coord"], axis=1), rtol=1e-5)
    assert not scan["color"].any()
    legacy = config_from_dict(
        {"data": {"dataset": "semantickitti", "root": str(tmp_path), "label_config": str(yaml), "num_classes": 20}}
    )
    old = load_rooms(legacy.data, "val")[0]
    assert "intensity" not in old
    np.testing.assert_allclose(old["color"][:, 0], scan["intensity"])


def test_inference_takes_intensity_and_names_what_is_missing():
    cfg = lidar_config()
    torch.manual_seed(0)
    model = build_model_from_config(cfg).eval()
    coord, remission = lidar_room()
    result = segment_cloud(model, cfg, coord, None, intensity=remission)
    assert result["labels"].shape == (len(coord),)
    # the intensity changes the answer: it reaches the model
    other = segment_cloud(model, cfg, coord, None, intensity=1.0 - remission)
    assert not np.allclose(result["probabilities"], other["probabilities"])
    with pytest.raises(ValueError, match="no intensity was given"):
        segment_cloud(model, cfg, coord, None)
    with pytest.raises(ValueError, match="intensity must be \\(400,\\)"):
        segment_cloud(model, cfg, coord, None, intensity=remission[:5])


def test_colour_model_without_colour_warns():
    cfg = config_from_dict(
        {"data": {"geometric_features": False, "num_points": 64}, "model": {"width_multiplier": 0.125}}
    )
    model = build_model_from_config(cfg).eval()
    coord, _ = lidar_room(100)
    with pytest.warns(UserWarning, match="trained with colour"):
        segment_cloud(model, cfg, coord, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        segment_cloud(model, cfg, coord, np.full((100, 3), 0.3, np.float32))
