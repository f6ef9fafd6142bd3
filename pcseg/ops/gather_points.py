"""Gather and group rows of per-point features by index (differentiable)."""

from __future__ import annotations

import torch

from pcseg.ops._extension import check_device


def gather_points(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gathers rows of per-point features by index.

    Rows gathered with -1 are zeros and pass no gradient. Differentiable w.r.t. features
    (twice: the backward is itself differentiable).

    Args:
        features: (B, N, C) or (N, C).
        idx: (B, M) or (M,) int64 in [-1, N).

    Returns:
        rows: (B, M, C) (or (M, C)).

    Raises:
        TypeError: when `features` or `idx` is not a tensor.
        ValueError: when the ranks of `features` and `idx` do not match.
        RuntimeError: from the native checks, naming the argument, on an index out of range,
            a wrong dtype or device, and for CUDA tensors when pcseg was built without CUDA.
    """
    features, idx, unbatched = _batch_pair(features, idx, idx_rank=2)
    out = torch.ops.pcseg.gather_rows(features, idx)
    return out[0] if unbatched else out


def group_points(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gathers the neighbourhoods of knn / ball_query / ring_query as feature tensors.

    Slots with index -1 are zeros. Differentiable w.r.t. features.

    Args:
        features: (B, N, C) or (N, C).
        idx: (B, M, K) or (M, K) int64 in [-1, N).

    Returns:
        groups: (B, M, K, C) (or (M, K, C)).

    Raises:
        TypeError: when `features` or `idx` is not a tensor.
        ValueError: when the ranks of `features` and `idx` do not match.
        RuntimeError: from the native checks, naming the argument, on an index out of range,
            a wrong dtype or device, and for CUDA tensors when pcseg was built without CUDA.
    """
    features, idx, unbatched = _batch_pair(features, idx, idx_rank=3)
    b, m, k = idx.shape
    out = torch.ops.pcseg.gather_rows(features, idx.reshape(b, m * k))
    out = out.reshape(b, m, k, features.shape[2])
    return out[0] if unbatched else out


def _batch_pair(features, idx, idx_rank):
    if not isinstance(features, torch.Tensor) or not isinstance(idx, torch.Tensor):
        raise TypeError("features and idx must be torch.Tensors")
    check_device(features, idx)
    if features.dim() == 2 and idx.dim() == idx_rank - 1:
        return features.unsqueeze(0), idx.unsqueeze(0), True
    expected = "(B, M)" if idx_rank == 2 else "(B, M, K)"
    if features.dim() != 3 or idx.dim() != idx_rank:
        raise ValueError(
            f"features must be (B, N, C) with idx {expected} (or both unbatched), "
            f"got features {tuple(features.shape)} and idx {tuple(idx.shape)}"
        )
    return features, idx, False


def gather_points_naive(features, idx):
    """Pure-PyTorch reference of `gather_points` / `group_points` (any idx rank)."""
    unbatched = features.dim() == 2
    if unbatched:
        features, idx = features.unsqueeze(0), idx.unsqueeze(0)
    b = features.shape[0]
    flat = idx.reshape(b, -1)
    rows = torch.gather(features, 1, flat.clamp(min=0).unsqueeze(-1).expand(-1, -1, features.shape[2]))
    rows = rows * (flat >= 0).unsqueeze(-1).to(features.dtype)
    out = rows.reshape(*idx.shape, features.shape[2])
    return out[0] if unbatched else out


group_points_naive = gather_points_naive


def _gather_setup(ctx, inputs, output):
    features, idx = inputs
    ctx.save_for_backward(idx)
    ctx.num_rows = features.shape[1]


def _gather_backward(ctx, grad):
    (idx,) = ctx.saved_tensors
    return torch.ops.pcseg.gather_rows_backward(grad, idx, ctx.num_rows), None


def _gather_backward_setup(ctx, inputs, output):
    _, idx, _ = inputs
    ctx.save_for_backward(idx)


def _gather_backward_backward(ctx, grad):
    (idx,) = ctx.saved_tensors
    return torch.ops.pcseg.gather_rows(grad, idx), None, None


torch.library.register_autograd("pcseg::gather_rows", _gather_backward, setup_context=_gather_setup)
torch.library.register_autograd(
    "pcseg::gather_rows_backward", _gather_backward_backward, setup_context=_gather_backward_setup
)


@torch.library.register_fake("pcseg::gather_rows")
def _(features, idx):
    return features.new_empty((features.shape[0], idx.shape[1], features.shape[2]))


@torch.library.register_fake("pcseg::gather_rows_backward")
def _(grad, idx, num_rows):
    return grad.new_empty((grad.shape[0], num_rows, grad.shape[2]))
