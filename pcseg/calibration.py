"""Per-point uncertainty and calibration: entropy, mutual information, ECE, temperature scaling.

A segmenter's probabilities are calibrated when, among the points predicted with confidence
0.8, 80 % are right. `CalibrationBins` counts, per confidence bin, the points, their summed
confidence and how many were right; it is built from one batch (`calibration_bins`) and summed
over batches with `merge` (so `pcseg eval` can accumulate it block by block as it does its
confusion matrix), and gives the expected calibration error (ECE, Guo et al. 2017) and the
reliability diagram. `fit_temperature` fits the one scalar T of temperature scaling
(softmax(logits / T)) on validation logits. `entropy` and `mutual_information` are Bayesian
SegNet's uncertainty measures (the latter over MC-dropout samples), and
`error_rate_by_uncertainty_decile` checks that uncertainty is useful.

Arrays in are numpy arrays or torch tensors; arrays out are numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pcseg.utils.atomic import atomic_write

__all__ = [
    "CalibrationBins",
    "calibration_bins",
    "entropy",
    "error_rate_by_uncertainty_decile",
    "expected_calibration_error",
    "fit_temperature",
    "mutual_information",
    "reliability_diagram",
]


@dataclass
class CalibrationBins:
    """Per-bin sums over equal-width confidence bins (0, 1/B], (1/B, 2/B], ..., ((B-1)/B, 1].

    Attributes:
        counts: (B,) int64 points per bin.
        confidence_sums: (B,) float64 summed top-class probability of those points.
        correct_sums: (B,) float64 number of them whose top class is the true label.
    """

    counts: np.ndarray
    confidence_sums: np.ndarray
    correct_sums: np.ndarray

    @property
    def num_bins(self) -> int:
        """B, the number of bins."""
        return len(self.counts)

    def merge(self, other: CalibrationBins) -> CalibrationBins:
        """The bins of both batches together.

        Args:
            other: bins with the same number of bins.

        Returns:
            merged: a new `CalibrationBins`.

        Raises:
            ValueError: when the numbers of bins differ.
        """
        if other.num_bins != self.num_bins:
            raise ValueError(f"cannot merge {self.num_bins} bins with {other.num_bins} bins")
        return CalibrationBins(
            self.counts + other.counts,
            self.confidence_sums + other.confidence_sums,
            self.correct_sums + other.correct_sums,
        )

    def confidence(self) -> np.ndarray:
        """(B,) float64 mean confidence per bin (NaN for an empty bin)."""
        return _per_bin_mean(self.confidence_sums, self.counts)

    def accuracy(self) -> np.ndarray:
        """(B,) float64 accuracy per bin (NaN for an empty bin)."""
        return _per_bin_mean(self.correct_sums, self.counts)

    def expected_calibration_error(self) -> float:
        """sum_b (n_b / n) |accuracy_b - confidence_b|; NaN when there are no points."""
        total = self.counts.sum()
        if total == 0:
            return float("nan")
        gaps = np.abs(self.correct_sums - self.confidence_sums)  # n_b |acc_b - conf_b|
        return float(gaps.sum() / total)

    def reliability_diagram(self, path: str | Path, title: str = "Reliability diagram") -> Path:
        """Writes the reliability diagram (accuracy and confidence per bin, with the ECE) as a PNG.

        The file is written to a temporary file beside `path` and moved into place, so a
        reader never sees half a PNG.

        Args:
            path: the PNG to write; its folder must exist.
            title: the figure's title.

        Returns:
            path: the path written, as a `Path`.

        Raises:
            FileNotFoundError: when the folder of `path` does not exist.
        """
        from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"path: folder {path.parent} does not exist")
        edges = np.linspace(0.0, 1.0, self.num_bins + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        width = 1.0 / self.num_bins
        accuracy = np.nan_to_num(self.accuracy())
        confidence = np.nan_to_num(self.confidence())
        figure = Figure(figsize=(4.5, 4.5), dpi=100)
        axes = figure.add_subplot()
        axes.bar(centres, accuracy, width=width, edgecolor="black", color="tab:blue", label="accuracy")
        axes.bar(
            centres,
            confidence - accuracy,
            bottom=accuracy,
            width=width,
            edgecolor="tab:red",
            color="tab:red",
            alpha=0.3,
            label="gap to confidence",
        )
        axes.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
        axes.set_title(f"{title}\nECE = {self.expected_calibration_error():.4f}, {int(self.counts.sum())} points")
        axes.legend(loc="upper left")
        figure.tight_layout()
        with atomic_write(path) as stream:
            figure.savefig(stream, format="png")
        return path


def calibration_bins(probabilities, labels, bins: int = 15, ignore_index: int | None = None) -> CalibrationBins:
    """Counts points, confidence and correct predictions per confidence bin.

    Args:
        probabilities: (N, C) float class probabilities (rows summing to 1).
        labels: (N,) int true labels in [0, C) (or `ignore_index`).
        bins: B, the number of equal-width bins, >= 1.
        ignore_index: a label whose points are left out; None keeps all.

    Returns:
        bins: `CalibrationBins`; a point of confidence s falls in bin ceil(s B) - 1.

    Raises:
        ValueError: when the shapes disagree, `bins` < 1, or a kept label is outside [0, C).
    """
    probabilities, labels, _ = _probabilities_and_labels(probabilities, labels, ignore_index)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be an int >= 1, got {bins!r}")
    confidence = probabilities.max(axis=1, initial=0.0)
    correct = probabilities.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    return CalibrationBins(
        np.bincount(index, minlength=bins).astype(np.int64),
        np.bincount(index, weights=confidence, minlength=bins),
        np.bincount(index, weights=correct.astype(np.float64), minlength=bins),
    )


def expected_calibration_error(probabilities, labels, bins: int = 15, ignore_index: int | None = None) -> float:
    """Expected calibration error: sum over bins of (n_b / n) |accuracy_b - confidence_b|.

    Args:
        probabilities: (N, C) float class probabilities.
        labels: (N,) int true labels.
        bins: the number of equal-width confidence bins.
        ignore_index: a label whose points are left out; None keeps all.

    Returns:
        ece: in [0, 1]; NaN when no point is kept.

    Raises:
        ValueError: as `calibration_bins`.
    """
    return calibration_bins(probabilities, labels, bins, ignore_index).expected_calibration_error()


def reliability_diagram(
    probabilities, labels, path: str | Path, bins: int = 15, ignore_index: int | None = None
) -> Path:
    """Writes a reliability diagram PNG (atomically) for one set of predictions.

    Args:
        probabilities: (N, C) float class probabilities.
        labels: (N,) int true labels.
        path: the PNG to write; its folder must exist.
        bins: the number of equal-width confidence bins.
        ignore_index: a label whose points are left out; None keeps all.

    Returns:
        path: the path written.

    Raises:
        ValueError: as `calibration_bins`.
        FileNotFoundError: when the folder of `path` does not exist.
    """
    return calibration_bins(probabilities, labels, bins, ignore_index).reliability_diagram(path)


def fit_temperature(
    logits, labels, ignore_index: int | None = None, max_iterations: int = 100, initial: float = 1.0
) -> float:
    """Fits temperature scaling: the T > 0 minimising the NLL of softmax(logits / T).

    LBFGS on log T (so T stays positive), in float64. Fit it on validation logits, never on
    the points it will be judged on. Logits that say nothing about the labels drive T up
    without bound (the uniform prediction is their best fit); the fit then stops after
    `max_iterations` with a very large T.

    Args:
        logits: (N, C) float pre-softmax scores.
        labels: (N,) int true labels in [0, C) (or `ignore_index`).
        ignore_index: a label whose points are left out; None keeps all.
        max_iterations: LBFGS iterations, >= 1.
        initial: the starting temperature, > 0.

    Returns:
        temperature: T; divide the logits by it before the softmax.

    Raises:
        ValueError: when the shapes disagree, a kept label is outside [0, C), no point is
            kept, the logits are not finite or `initial` / `max_iterations` is not positive.
    """
    logits, labels, _ = _probabilities_and_labels(logits, labels, ignore_index, name="logits")
    if len(labels) == 0:
        raise ValueError("fit_temperature needs at least one labelled point, got none")
    if not np.isfinite(logits).all():
        raise ValueError("logits holds non-finite values")
    if not (initial > 0 and np.isfinite(initial)):
        raise ValueError(f"initial must be a positive temperature, got {initial}")
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
    logits_t = torch.from_numpy(logits)
    labels_t = torch.from_numpy(labels)
    log_t = torch.tensor(float(np.log(initial)), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits_t * torch.exp(-log_t), labels_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(torch.exp(log_t.detach()))


def entropy(probabilities) -> np.ndarray:
    """Predictive entropy -sum_c p_c log p_c per point, in nats (0 log 0 = 0).

    Args:
        probabilities: (..., C) float class probabilities (e.g. (N, C)).

    Returns:
        entropy: (...) float64 (e.g. (N,)), in [0, log C].
    """
    p = _as_numpy(probabilities).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=-1)


def mutual_information(sample_probabilities) -> np.ndarray:
    """Mutual information between the label and the model (BALD) from MC-dropout samples.

    I = H(mean_s p_s) - mean_s H(p_s): the predictive entropy minus the expected entropy, high
    where the samples disagree (model uncertainty), near 0 where they agree even if each is
    unsure (data uncertainty).

    Args:
        sample_probabilities: (S, N, C) float class probabilities of S stochastic passes.

    Returns:
        mutual_information: (N,) float64, >= 0 (up to rounding; clipped at 0).

    Raises:
        ValueError: when `sample_probabilities` is not (S, N, C) with S >= 1.
    """
    samples = _as_numpy(sample_probabilities).astype(np.float64)
    if samples.ndim != 3 or samples.shape[0] < 1:
        raise ValueError(f"sample_probabilities must be (S, N, C) with S >= 1, got shape {samples.shape}")
    return np.maximum(entropy(samples.mean(axis=0)) - entropy(samples).mean(axis=0), 0.0)


def error_rate_by_uncertainty_decile(
    probabilities, labels, uncertainty=None, ignore_index: int | None = None
) -> np.ndarray:
    """Error rate of the top-class prediction in each tenth of the points, ranked by uncertainty.

    Args:
        probabilities: (N, C) float class probabilities.
        labels: (N,) int true labels.
        uncertainty: (N,) float per-point uncertainty (e.g. `mutual_information`); None uses
            the predictive `entropy` of `probabilities`.
        ignore_index: a label whose points are left out; None keeps all.

    Returns:
        error_rates: (10,) float64, from the 10 % least uncertain points to the 10 % most
            uncertain (ties ranked by point order); NaN for an empty decile (fewer than 10
            points).

    Raises:
        ValueError: when the shapes disagree or a kept label is outside [0, C).
    """
    probabilities, labels, kept = _probabilities_and_labels(probabilities, labels, ignore_index)
    if uncertainty is None:
        uncertainty = entropy(probabilities)
    else:
        uncertainty = _as_numpy(uncertainty).astype(np.float64)
        if uncertainty.shape != kept.shape:
            raise ValueError(f"uncertainty must be ({len(kept)},) like labels, got shape {uncertainty.shape}")
        uncertainty = uncertainty[kept]
    errors = (probabilities.argmax(axis=1) != labels).astype(np.float64)
    order = np.argsort(uncertainty, kind="stable")
    return np.array([part.mean() if len(part) else np.nan for part in np.array_split(errors[order], 10)])


# ----- helpers ---------------------------------------------------------------------------------
def _as_numpy(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _probabilities_and_labels(
    probabilities, labels, ignore_index: int | None, name: str = "probabilities"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked float64 (K, C) scores and int64 (K,) labels of the K kept points, and the (N,) kept mask."""
    probabilities = _as_numpy(probabilities)
    labels = _as_numpy(labels)
    if probabilities.ndim != 2:
        raise ValueError(f"{name} must be (N, C), got shape {probabilities.shape}")
    if labels.shape != probabilities.shape[:1]:
        raise ValueError(f"labels must be ({probabilities.shape[0]},) to match {name}, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    kept = np.ones(len(labels), dtype=bool) if ignore_index is None else labels != ignore_index
    probabilities, labels = probabilities[kept], labels[kept]
    num_classes = probabilities.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) (or be ignore_index={ignore_index}), "
            f"got {labels.min()}..{labels.max()}"
        )
    return probabilities.astype(np.float64), labels, kept


def _per_bin_mean(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    out = np.full(len(counts), np.nan)
    nonzero = counts > 0
    out[nonzero] = sums[nonzero] / counts[nonzero]
    return out
