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
from pcseg.inputs import RANGE_SCALE, block_inputs, input_channels, lidar_room_fields, normalise_intensity
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
    assert blocks["features"].shape[-1] == 12
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
