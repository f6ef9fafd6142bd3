"""`pcseg eval --refine crf`, its calibration report, and `pcseg calibrate` end to end on the
session's tiny checkpoint."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from pcseg.checkpoint import checkpoint_temperature, load_checkpoint, model_from_checkpoint, store_temperature
from pcseg.cli import main
from pcseg.config import ConfigError, load_config
from pcseg.evaluate import _turned_room
from pcseg.inputs import multiscale_features
from pcseg.predict import vote_turns
from pcseg.testing import TINY_TRAINING

pytestmark = pytest.mark.usefixtures("single_torch_thread")

SETS = [arg for item in [*TINY_TRAINING, "data.val_rooms=1", "refine.k=8"] for arg in ("--set", item)]


@pytest.fixture
def own_checkpoint(checkpoint, tmp_path):
    """A copy of the session checkpoint that a test may rewrite."""
    path = tmp_path / "best.pt"
    shutil.copy(checkpoint, path)
    return path


def _config_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("data: {dataset: synthetic}\n")
    return path


def test_eval_reports_calibration_and_uncertainty_deciles(own_checkpoint, tmp_path, capsys):
    config = _config_file(tmp_path)
    code = main(
        ["eval", "--config", str(config), "--checkpoint", str(own_checkpoint), "--out", str(tmp_path / "eval"), *SETS]
    )
    assert code == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0 <= metrics["expected_calibration_error"] <= 1
    assert len(metrics["error_by_uncertainty_decile"]) == 10
    assert metrics["temperature"] == 1.0 and metrics["refine"] is None
    assert f"ECE (15 bins) {metrics['expected_calibration_error']:.4f}" in out
    assert "error rate by entropy decile" in out
    assert (tmp_path / "eval" / "reliability.png").stat().st_size > 1000


def test_eval_refine_crf_end_to_end(own_checkpoint, tmp_path):
    config = _config_file(tmp_path)
    base = ["eval", "--config", str(config), "--checkpoint", str(own_checkpoint), *SETS]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--out", str(tmp_path / "crf"), "--refine", "crf"]) == 0
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    refined = json.loads((tmp_path / "crf" / "metrics.json").read_text())
    assert refined["refine"] == "crf" and 0 <= refined["miou"] <= 1
    assert refined["expected_calibration_error"] != plain["expected_calibration_error"]


def test_eval_votes_average_turned_rooms(own_checkpoint, tmp_path, capsys):
    config = _config_file(tmp_path)
    base = ["eval", "--config", str(config), "--checkpoint", str(own_checkpoint), *SETS]
    assert main([*base, "--out", str(tmp_path / "voted"), "--votes", "3"]) == 0
    voted = json.loads((tmp_path / "voted" / "metrics.json").read_text())
    assert voted["votes"] == 3 and 0 <= voted["miou"] <= 1 and "votes 3" in capsys.readouterr().out
    assert main([*base, "--votes", "0"]) == 2
    assert "--votes must be an int >= 1, got 0" in capsys.readouterr().err


def test_a_turned_lidar_room_keeps_what_the_sensor_measured():
    rng = np.random.default_rng(0)
    coord = rng.uniform(-30, 30, (400, 3)).astype(np.float32)
    room = {
        "coord": coord,
        "color": np.zeros((400, 3), np.uint8),
        "range": np.linalg.norm(coord, axis=1).astype(np.float32),
        "height": coord[:, 2].copy(),
        "sensor_x": coord[:, 0].copy(),
        "sensor_y": coord[:, 1].copy(),
        "multiscale": multiscale_features(coord),
    }
    turned = _turned_room(room, list(vote_turns(coord, 6, about_origin=False))[1], math.pi / 3)
    moved = turned["coord"].astype(np.float64)
    # a rigid turn about the vertical axis: distances and heights kept
    np.testing.assert_allclose(
        np.linalg.norm(moved[1:] - moved[0], axis=1), np.linalg.norm(coord[1:] - coord[0], axis=1), rtol=1e-5
    )
    np.testing.assert_array_equal(moved[:, 2], coord[:, 2])
    # the sensor-frame xy turn by the same angle about the sensor, so range stays measured
    sensor = np.stack([turned["sensor_x"], turned["sensor_y"]], 1).astype(np.float64)
    np.testing.assert_allclose(np.hypot(sensor[:, 0], sensor[:, 1]), np.hypot(coord[:, 0], coord[:, 1]), rtol=1e-5)
    angles = np.arctan2(sensor[:, 1], sensor[:, 0]) - np.arctan2(coord[:, 1], coord[:, 0])
    np.testing.assert_allclose(np.cos(angles), math.cos(math.pi / 3), atol=1e-5)
    # the point-to-sensor vectors turn with the cloud
    offsets = moved[:, :2] - sensor
    np.testing.assert_allclose(offsets - offsets[0], 0, atol=1e-3)
    np.testing.assert_array_equal(turned["range"], room["range"])
    np.testing.assert_allclose(turned["multiscale"], multiscale_features(moved), atol=1e-6)
    assert room["coord"] is coord  # the room itself is untouched


def test_calibrate_stores_the_temperature_that_eval_applies(own_checkpoint, tmp_path, capsys):
    config = _config_file(tmp_path)
    assert "temperature" not in load_checkpoint(own_checkpoint)  # an old-style checkpoint loads
    code = main(["calibrate", "--config", str(config), "--checkpoint", str(own_checkpoint), *SETS])
    assert code == 0
    out = capsys.readouterr().out
    temperature = checkpoint_temperature(load_checkpoint(own_checkpoint))
    assert temperature > 0 and temperature != 1.0
    assert f"temperature {temperature:.4f}" in out
    before, after = (float(x) for x in out.split("validation NLL ")[1].split(",")[0].split(" -> "))
    assert after <= before + 1e-4  # fitted on these very points: the NLL's optimum is no worse
    model_from_checkpoint(own_checkpoint)  # still a loadable checkpoint
    assert (
        main(
            [
                "eval",
                "--config",
                str(config),
                "--checkpoint",
                str(own_checkpoint),
                "--out",
                str(tmp_path / "eval"),
                *SETS,
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert math.isclose(metrics["temperature"], temperature)


def test_bad_refine_and_temperature_are_clear_errors(own_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--config", "c.yaml", "--checkpoint", str(own_checkpoint), "--refine", "bilateral"])
    assert "--refine" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="refine.position_sigma"):
        load_config(None, ["refine.position_sigma=0"])
    with pytest.raises(ConfigError, match="refine.compatibility"):
        load_config(None, ["refine.compatibility=learned"])
    with pytest.raises(ValueError, match="temperature"):
        store_temperature(own_checkpoint, -1.0)
    checkpoint = load_checkpoint(own_checkpoint)
    checkpoint["temperature"] = torch.tensor(float("nan"))
    with pytest.raises(ValueError, match="temperature"):
        checkpoint_temperature(checkpoint)
