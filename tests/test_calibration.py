"""Calibration and uncertainty measures against hand-computed values and synthetic sets whose
calibration is known by construction."""

import math

import numpy as np
import pytest
import torch

from pcseg.calibration import (
    calibration_bins,
    entropy,
    error_rate_by_uncertainty_decile,
    expected_calibration_error,
    fit_temperature,
    mutual_information,
    reliability_diagram,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

# 2 bins: (0, 0.5] and (0.5, 1]. Confidences 0.9, 0.8, 0.6 land in bin 1, 0.4 in bin 0.
HAND_PROBABILITIES = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4]])
HAND_LABELS = np.array([0, 0, 0, 2])
# bin 1: 3 points, confidence (0.9 + 0.8 + 0.6) / 3, 2 right; bin 0: 1 point, confidence 0.4, right.
HAND_ECE = (3 * abs(2 / 3 - 2.3 / 3) + 1 * abs(1.0 - 0.4)) / 4


def _sampled_labels(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels drawn from the probabilities themselves: a perfectly calibrated set."""
    cumulative = probabilities.cumsum(axis=1)
    draws = rng.random((len(probabilities), 1))
    return np.minimum((draws > cumulative).sum(axis=1), probabilities.shape[1] - 1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_ece_by_hand():
    assert expected_calibration_error(HAND_PROBABILITIES, HAND_LABELS, bins=2) == pytest.approx(HAND_ECE)
    bins = calibration_bins(HAND_PROBABILITIES, HAND_LABELS, bins=2)
    np.testing.assert_array_equal(bins.counts, [1, 3])
    np.testing.assert_allclose(bins.accuracy(), [1.0, 2 / 3])
    np.testing.assert_allclose(bins.confidence(), [0.4, 2.3 / 3])


def test_ece_ignore_index_and_torch_input():
    labels = np.array([0, 0, 0, 2, -1])
    probabilities = np.vstack([HAND_PROBABILITIES, [[1.0, 0.0, 0.0]]])
    ece = expected_calibration_error(torch.from_numpy(probabilities), torch.from_numpy(labels), bins=2, ignore_index=-1)
    assert ece == pytest.approx(HAND_ECE)


def test_confidence_on_a_bin_edge_falls_in_the_lower_bin():
    # 0.5 belongs to (0, 0.5], 1.0 to (0.5, 1].
    bins = calibration_bins(np.array([[0.5, 0.5], [1.0, 0.0]]), np.array([0, 0]), bins=2)
    np.testing.assert_array_equal(bins.counts, [1, 1])


def test_merge_equals_one_batch():
    rng = np.random.default_rng(0)
    probabilities = _softmax(rng.normal(size=(1000, 5)) * 2)
    labels = rng.integers(0, 5, 1000)
    whole = calibration_bins(probabilities, labels)
    merged = calibration_bins(probabilities[:300], labels[:300]).merge(
        calibration_bins(probabilities[300:], labels[300:])
    )
    np.testing.assert_array_equal(merged.counts, whole.counts)
    np.testing.assert_allclose(merged.correct_sums, whole.correct_sums)
    assert merged.expected_calibration_error() == pytest.approx(whole.expected_calibration_error())
    with pytest.raises(ValueError, match="bins"):
        whole.merge(calibration_bins(probabilities, labels, bins=10))


def test_perfectly_calibrated_set_has_ece_near_zero():
    rng = np.random.default_rng(1)
    probabilities = _softmax(rng.normal(size=(200_000, 4)) * 1.5)
    labels = _sampled_labels(probabilities, rng)
    assert expected_calibration_error(probabilities, labels) < 0.005


def test_empty_set_has_nan_ece():
    assert math.isnan(expected_calibration_error(np.zeros((0, 3)), np.zeros(0, dtype=np.int64)))
    assert math.isnan(expected_calibration_error(HAND_PROBABILITIES, np.full(4, -1), ignore_index=-1))


def test_temperature_scaling_fixes_an_overconfident_set():
    rng = np.random.default_rng(2)
    true_logits = rng.normal(size=(20_000, 6)) * 1.5
    labels = _sampled_labels(_softmax(true_logits), rng)
    overconfident = 3.0 * true_logits
    validation, held_out = slice(0, 10_000), slice(10_000, None)
    temperature = fit_temperature(overconfident[validation], labels[validation])
    assert temperature == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(_softmax(overconfident[held_out]), labels[held_out])
    after = expected_calibration_error(_softmax(overconfident[held_out] / temperature), labels[held_out])
    assert before > 0.05 and after < before / 3


def test_temperature_of_an_underconfident_set_is_below_one():
    rng = np.random.default_rng(3)
    true_logits = rng.normal(size=(10_000, 3)) * 2
    labels = _sampled_labels(_softmax(true_logits), rng)
    assert fit_temperature(torch.from_numpy(true_logits * 0.5), torch.from_numpy(labels)) == pytest.approx(0.5, rel=0.1)


def test_fit_temperature_ignores_ignore_index_and_checks_arguments():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [5.0, 0.0]])
    labels = np.array([0, 1, 255])
    assert fit_temperature(logits, labels, ignore_index=255) > 0
    with pytest.raises(ValueError, match="labels must lie in"):
        fit_temperature(logits, labels)
    with pytest.raises(ValueError, match="at least one labelled point"):
        fit_temperature(logits, np.full(3, 255), ignore_index=255)
    with pytest.raises(ValueError, match="logits holds non-finite"):
        fit_temperature(np.array([[np.inf, 0.0]]), np.array([0]))
    with pytest.raises(ValueError, match="logits must be"):
        fit_temperature(np.zeros(3), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="initial"):
        fit_temperature(logits[:2], labels[:2], initial=0.0)


def test_entropy_by_hand():
    values = entropy(np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]]))
    np.testing.assert_allclose(values, [math.log(4), 0.0, math.log(2)])


def test_mutual_information_by_hand():
    agree = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])  # unsure, but the samples agree: data uncertainty
    disagree = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # each sure, they disagree: model uncertainty
    np.testing.assert_allclose(mutual_information(agree), [0.0], atol=1e-12)
    np.testing.assert_allclose(mutual_information(disagree), [math.log(2)])
    mixed = np.array([[[0.9, 0.1]], [[0.5, 0.5]]])
    mean = np.array([0.7, 0.3])
    expected = -(mean * np.log(mean)).sum() - 0.5 * (-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) + math.log(2))
    np.testing.assert_allclose(mutual_information(torch.from_numpy(mixed)), [expected])
    with pytest.raises(ValueError, match="sample_probabilities"):
        mutual_information(np.ones((4, 2)))


def test_error_rate_by_uncertainty_decile():
    # 100 points; the i-th has uncertainty i and is wrong when i >= 90 or i % 10 == 0.
    probabilities = np.tile([[0.8, 0.2]], (100, 1))
    index = np.arange(100)
    labels = np.where((index >= 90) | (index % 10 == 0), 1, 0)
    rates = error_rate_by_uncertainty_decile(probabilities, labels, uncertainty=index.astype(float))
    np.testing.assert_allclose(rates, [0.1] * 9 + [1.0])
    # by entropy: the confident half right, the unsure half wrong
    probabilities = np.vstack([np.tile([[0.99, 0.01]], (50, 1)), np.tile([[0.6, 0.4]], (50, 1))])
    labels = np.r_[np.zeros(50, dtype=np.int64), np.ones(50, dtype=np.int64)]
    np.testing.assert_allclose(error_rate_by_uncertainty_decile(probabilities, labels), [0.0] * 5 + [1.0] * 5)


def test_error_rate_by_decile_with_few_points_and_ignored_labels():
    rates = error_rate_by_uncertainty_decile(
        np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]]), np.array([0, 1, -1]), ignore_index=-1
    )
    assert rates.shape == (10,)
    np.testing.assert_allclose(rates[:2], [0.0, 1.0])
    assert np.isnan(rates[2:]).all()
    with pytest.raises(ValueError, match="uncertainty"):
        error_rate_by_uncertainty_decile(np.ones((3, 2)) / 2, np.zeros(3, dtype=np.int64), uncertainty=np.zeros(2))


def test_reliability_diagram_writes_a_png(tmp_path):
    rng = np.random.default_rng(4)
    probabilities = _softmax(rng.normal(size=(2000, 5)) * 3)
    labels = rng.integers(0, 5, 2000)
    path = reliability_diagram(probabilities, labels, tmp_path / "reliability.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reliability.png"]  # no temporary left behind
    with pytest.raises(FileNotFoundError, match="does not exist"):
        reliability_diagram(probabilities, labels, tmp_path / "missing" / "reliability.png")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: expected_calibration_error(np.ones(3), np.zeros(3)), "probabilities must be"),
        (lambda: expected_calibration_error(np.ones((3, 2)), np.zeros(2, dtype=np.int64)), "labels must be"),
        (lambda: expected_calibration_error(np.ones((3, 2)), np.zeros(3)), "labels must be integers"),
        (lambda: expected_calibration_error(np.ones((3, 2)), np.array([0, 1, 2])), "labels must lie in"),
        (lambda: expected_calibration_error(np.ones((3, 2)), np.zeros(3, dtype=np.int64), bins=0), "bins"),
    ],
)
def test_argument_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
