"""`Segmenter` options: refine="crf", the stored temperature, uncertainty=True and MC dropout."""

import shutil

import numpy as np
import pytest

from pcseg import Segmenter
from pcseg.checkpoint import store_temperature
from pcseg.data import generate_room
from pcseg.uncertainty import Prediction, apply_temperature

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def room():
    return generate_room(7, 2000)


def test_default_predict_is_unchanged_and_uncertainty_adds_entropy(checkpoint, room):
    segmenter = Segmenter.from_checkpoint(checkpoint)
    labels, probabilities = segmenter.predict(room["coord"], room["color"])
    prediction = segmenter.predict(room["coord"], room["color"], uncertainty=True)
    assert isinstance(prediction, Prediction) and prediction.mutual_information is None
    np.testing.assert_array_equal(prediction.labels, labels)
    np.testing.assert_allclose(prediction.probabilities, probabilities)
    expected = -(probabilities * np.log(np.clip(probabilities, 1e-30, None))).sum(1)
    np.testing.assert_allclose(prediction.entropy, expected, rtol=1e-4, atol=1e-6)
    assert (prediction.entropy >= 0).all() and (prediction.entropy <= np.log(13) + 1e-6).all()


def test_stored_temperature_is_applied(checkpoint, room, tmp_path):
    path = tmp_path / "best.pt"
    shutil.copy(checkpoint, path)
    plain = Segmenter.from_checkpoint(path)
    store_temperature(path, 2.5)
    calibrated = Segmenter.from_checkpoint(path)
    assert calibrated.temperature == 2.5 and plain.temperature == 1.0
    labels, probabilities = plain.predict(room["coord"], room["color"])
    labels_t, probabilities_t = calibrated.predict(room["coord"], room["color"])
    np.testing.assert_array_equal(labels_t, labels)  # a temperature never changes the argmax
    np.testing.assert_allclose(probabilities_t, apply_temperature(probabilities, 2.5), atol=1e-6)
    assert probabilities_t.max(1).mean() < probabilities.max(1).mean()  # T > 1 softens


def test_refine_crf_returns_refined_probabilities(checkpoint, room):
    plain = Segmenter.from_checkpoint(checkpoint)
    refined = Segmenter.from_checkpoint(checkpoint, refine="crf")
    _, probabilities = plain.predict(room["coord"], room["color"])
    labels, refined_probabilities = refined.predict(room["coord"], room["color"])
    assert refined_probabilities.shape == probabilities.shape
    np.testing.assert_allclose(refined_probabilities.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(refined_probabilities, probabilities)
    np.testing.assert_array_equal(labels, refined_probabilities.argmax(1))
    with pytest.raises(ValueError, match="refine"):
        Segmenter.from_checkpoint(checkpoint, refine="bilateral")


def test_mc_dropout_gives_mutual_information_reproducibly(checkpoint, room):
    segmenter = Segmenter.from_checkpoint(checkpoint)
    first = segmenter.predict(room["coord"], room["color"], mc_samples=3, seed=5)
    again = segmenter.predict(room["coord"], room["color"], mc_samples=3, seed=5)
    other = segmenter.predict(room["coord"], room["color"], mc_samples=3, seed=6)
    assert isinstance(first, Prediction)
    assert first.mutual_information.shape == (len(room["coord"]),)
    assert (first.mutual_information >= 0).all() and first.mutual_information.max() > 0
    np.testing.assert_array_equal(first.probabilities, again.probabilities)
    np.testing.assert_array_equal(first.mutual_information, again.mutual_information)
    assert not np.array_equal(first.probabilities, other.probabilities)
    assert not any(m.training for m in segmenter.model.modules())  # the segmenter's model is untouched
    labels, _ = segmenter.predict(room["coord"], room["color"])
    assert labels.shape == first.labels.shape


def test_mc_dropout_arguments_are_checked(checkpoint, room):
    segmenter = Segmenter.from_checkpoint(checkpoint)
    with pytest.raises(ValueError, match="mc_samples"):
        segmenter.predict(room["coord"], room["color"], mc_samples=-1)
    empty = segmenter.predict(np.zeros((0, 3)), uncertainty=True)
    assert empty.labels.shape == (0,) and empty.entropy.shape == (0,)


def test_mc_dropout_runs_one_pass_per_sample_and_passes_intensity(checkpoint, room, monkeypatch):
    """Every pass of MC dropout sees the caller's intensity, and no extra deterministic pass runs."""
    import pcseg.segmenter

    calls = []
    real = pcseg.segmenter.segment_cloud

    def recording(*args, **kwargs):
        calls.append(kwargs.get("intensity"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pcseg.segmenter, "segment_cloud", recording)
    intensity = np.full(len(room["coord"]), 0.3, dtype=np.float32)
    segmenter = Segmenter.from_checkpoint(checkpoint)
    segmenter.predict(room["coord"], room["color"], mc_samples=3, intensity=intensity)
    assert len(calls) == 3 and all(value is intensity for value in calls)
