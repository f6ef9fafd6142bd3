"""Inverse-squared-distance 3-NN interpolation: the PointNet++ / A-CNN feature-propagation step.

The rule is PointNet++'s ``three_interpolate`` (``tf_interpolate.cpp`` returns squared
distances, ``pointnet_util.pointnet_fp_module`` weights by their inverse), which A-CNN reuses.
"""

from __future__ import annotations

import torch

from pcseg.ops._extension import check_device
from pcseg.ops.knn import knn, knn_naive

# Added to the squared distance before inverting it, so a query that coincides with a known
# point takes (essentially) that point's features instead of dividing by zero
# (PointNet++'s pointnet_fp_module clamps the squared distance at the same value).
WEIGHT_EPS = 1e-10


def three_nn_interpolate(
    unknown: torch.Tensor,
    known: torch.Tensor,
    known_features: torch.Tensor,
    known_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Features at `unknown` interpolated from the 3 nearest `known` points.

    Each result is sum_j w_j f_j with w_j = 1 / (d_j^2 + 1e-10) normalised over the 3 nearest
    (d_j the Euclidean distance): PointNet++'s published rule, which A-CNN's decoder uses. Known
    points at distances 1 and 2 (and no third) weigh 0.8 and 0.2. With fewer than 3 known
    points the missing terms are dropped and the rest renormalised; with none the result is
    zero.

    Args:
        unknown: (B, n, 3) or (n, 3) float32/float64, where features are wanted.
        known: (B, m, 3) or (m, 3), where features are known (e.g. FPS centres).
        known_features: (B, m, C) or (m, C), same dtype.
        known_lengths: (B,) int64 real sizes of a padded `known`, or None.

    Returns:
        features: (B, n, C) (or (n, C)); differentiable w.r.t. known_features and, through
            the weights, w.r.t. unknown and known.

    Raises:
        ValueError: when `known_features` is not (B, m, C) matching `known`.
        RuntimeError: from the native checks, naming the argument, on a wrong shape, dtype or
            device, and for CUDA tensors when pcseg was built without CUDA.
    """
    unbatched = unknown.dim() == 2
    if unbatched:
        unknown, known, known_features = (t.unsqueeze(0) for t in (unknown, known, known_features))
    check_device(unknown, known, known_features)
    if known_features.dim() != 3 or known_features.shape[:2] != known.shape[:2]:
        raise ValueError(
            f"known_features must be (B, m, C) with (B, m) = "
            f"{tuple(known.shape[:2])} from known, got {tuple(known_features.shape)}"
        )
    dists2, idx = knn(unknown, known, 3, lengths=known_lengths)
    weight = _weights(dists2, idx)
    out = torch.ops.pcseg.three_interpolate(known_features, idx, weight)
    return out[0] if unbatched else out


def _weights(dists2, idx):
    valid = idx >= 0
    d2 = torch.where(valid, dists2, torch.ones_like(dists2))
    inv = torch.where(valid, 1.0 / (d2 + WEIGHT_EPS), torch.zeros_like(d2))
    return inv / inv.sum(-1, keepdim=True).clamp(min=torch.finfo(inv.dtype).tiny)


def three_nn_interpolate_naive(unknown, known, known_features, known_lengths=None):
    """Pure-PyTorch reference of `three_nn_interpolate`."""
    unbatched = unknown.dim() == 2
    if unbatched:
        unknown, known, known_features = (t.unsqueeze(0) for t in (unknown, known, known_features))
    dists2, idx = knn_naive(unknown, known, 3, lengths=known_lengths)
    if unknown.requires_grad or known.requires_grad:
        from pcseg.ops.gather_points import gather_points_naive

        diff = gather_points_naive(known, idx) - unknown.unsqueeze(2)
        dists2 = (diff * diff).sum(-1).masked_fill(idx < 0, float("inf"))
    weight = _weights(dists2, idx)
    from pcseg.ops.gather_points import gather_points_naive

    out = (gather_points_naive(known_features, idx) * weight.unsqueeze(-1)).sum(2)
    return out[0] if unbatched else out


def _interp_setup(ctx, inputs, output):
    features, idx, weight = inputs
    ctx.save_for_backward(features, idx, weight)


def _interp_backward(ctx, grad):
    features, idx, weight = ctx.saved_tensors
    grad_features, grad_weight = torch.ops.pcseg.three_interpolate_backward(grad.contiguous(), features, idx, weight)
    return grad_features, None, grad_weight


torch.library.register_autograd("pcseg::three_interpolate", _interp_backward, setup_context=_interp_setup)


@torch.library.register_fake("pcseg::three_interpolate")
def _(features, idx, weight):
    return features.new_empty((features.shape[0], idx.shape[1], features.shape[2]))


@torch.library.register_fake("pcseg::three_interpolate_backward")
def _(grad_out, features, idx, weight):
    return torch.empty_like(features), torch.empty_like(weight)
