"""Post-processing of predicted probabilities: temperature scaling, CRF refinement, MC dropout.

    probabilities = apply_temperature(probabilities, 1.4)          # pcseg calibrate's T
    probabilities = refine_probabilities(points, probabilities, colors, cfg.refine)
    samples = mc_dropout_samples(model, lambda m: segment(m), samples=8, seed=0)   # (S, N, C)

``pcseg.Segmenter`` and ``pcseg eval`` apply them in this order: temperature, then the CRF on
the calibrated probabilities. MC dropout (Bayesian SegNet) runs the prediction ``samples``
times with the dropout layers drawing masks and everything else (batch norm) in eval mode.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from pcseg.config import RefineConfig

__all__ = ["Prediction", "apply_temperature", "refine_probabilities", "mc_dropout_samples", "REFINE_METHODS"]

REFINE_METHODS = ("crf",)
# Probabilities are clipped here before the log, so a hard 0 stays finite under a temperature.
_MIN_PROBABILITY = 1e-12


class Prediction(NamedTuple):
    """``Segmenter.predict(..., uncertainty=True)``'s result.

    labels: (N,) int64.
    probabilities: (N, C) float32 (the mean over the MC dropout passes when there are some).
    entropy: (N,) float64 predictive entropy of ``probabilities``, in nats.
    mutual_information: (N,) float64 between the label and the weights (MC dropout's epistemic
        part), None without MC dropout.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    entropy: np.ndarray
    mutual_information: np.ndarray | None


def check_refine(refine: str | None, name: str = "refine") -> None:
    """Raises a ValueError naming ``name`` unless ``refine`` is None or one of ``REFINE_METHODS``."""
    if refine is not None and refine not in REFINE_METHODS:
        raise ValueError(f"{name} must be None or one of {list(REFINE_METHODS)}, got {refine!r}")


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of probabilities: softmax(log p / T), the same as softmax(logits / T).

    Args:
        probabilities: (N, C) float class probabilities (softmax of some logits).
        temperature: T > 0; 1 returns ``probabilities`` unchanged.

    Returns:
        probabilities: (N, C) float32.
    """
    if temperature == 1.0:
        return probabilities
    log_p = np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), _MIN_PROBABILITY)) / temperature
    return torch.softmax(torch.from_numpy(log_p), dim=-1).float().numpy()


def refine_probabilities(
    points: np.ndarray, probabilities: np.ndarray, colors: np.ndarray | None, refine: RefineConfig
) -> np.ndarray:
    """``pcseg.refine.crf`` with a config's settings (normals estimated when it asks for them).

    Args:
        points: (N, 3) float coordinates in metres.
        probabilities: (N, C) float class probabilities.
        colors: (N, 3) uint8 0..255 or float in [0, 1], or None (no colour term).
        refine: the ``refine`` section of the config.

    Returns:
        probabilities: (N, C) float32 refined probabilities.
    """
    from pcseg.ops import estimate_normals
    from pcseg.refine import crf

    normals = None
    if refine.normals and len(points) > 2:
        centred = np.asarray(points, dtype=np.float64)
        centred = torch.from_numpy((centred - centred.mean(axis=0)).astype(np.float32))
        normals = estimate_normals(centred, k=min(refine.k, len(points))).numpy()
    return crf(
        points,
        probabilities,
        colors,
        normals,
        k=refine.k,
        position_sigma=refine.position_sigma,
        color_sigma=refine.color_sigma,
        normal_sigma=refine.normal_sigma,
        compatibility=refine.compatibility,
        iterations=refine.iterations,
        weights=(refine.appearance_weight, refine.smoothness_weight),
    )


def mc_dropout_samples(
    model: torch.nn.Module, predict: Callable[[torch.nn.Module], np.ndarray], samples: int, seed: int = 0
) -> np.ndarray:
    """Monte Carlo dropout: ``samples`` predictions with the dropout layers drawing masks.

    The model is copied (the caller's stays in eval mode, so concurrent callers are not
    affected); in the copy the dropout layers are in train mode and everything else in eval
    mode. Pass s draws its masks from torch's default generator seeded with ``seed + s``
    inside ``torch.random.fork_rng``, so the same seed gives the same samples.

    Args:
        model: a pcseg segmentation model.
        predict: runs the model copy on the cloud and returns (N, C) probabilities.
        samples: S, the number of passes, >= 1.
        seed: the seed of the first pass.

    Returns:
        samples: (S, N, C) float32 probabilities.

    Raises:
        ValueError: when ``samples`` < 1 or the model has no dropout layer.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"mc_samples must be an int >= 1, got {samples!r}")
    dropout_model = copy.deepcopy(model).eval()
    dropouts = [m for m in dropout_model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    if not any(m.p > 0 for m in dropouts):
        raise ValueError("mc_samples needs a model with dropout (model.options.dropout > 0)")
    for module in dropouts:
        module.train()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    out = []
    for s in range(samples):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed + s)
            out.append(predict(dropout_model))
    return np.stack(out).astype(np.float32, copy=False)
