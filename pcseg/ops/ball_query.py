"""Ball query: the k nearest points inside a radius."""

from __future__ import annotations

import math

import torch

from pcseg.ops.knn import _window_search, window_search_naive


def ball_query(
    query: torch.Tensor,
    points: torch.Tensor,
    radius: float,
    k: int,
    query_lengths: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k NEAREST points with distance < radius (not the first k found in memory order).

    The squared radius is formed in the points' dtype (radius * radius) and compared with
    d2 < radius^2.

    Args:
        query: (B, M, 3) or (M, 3) float32/float64 ball centres.
        points: (B, N, 3) or (N, 3), same dtype and device.
        radius: > 0, finite.
        k: neighbours per ball, >= 1.
        query_lengths: (B,) int64 real sizes of a padded `query`, or None.
        lengths: (B,) int64 real sizes of a padded `points`, or None.

    Returns:
        dists2: (B, M, k) (or (M, k)) squared distances, ascending; +inf where fewer than k
            points lie in the ball.
        idx: (B, M, k) (or (M, k)) int64; -1 where dists2 is +inf.

    Raises:
        TypeError: when `query` or `points` is not a tensor, `k` is not an int or the lengths
            are not integers.
        ValueError: when `radius` is not finite and > 0, `k` < 1 or `query` and `points` disagree on batching.
        RuntimeError: from the native checks, naming the argument, on a wrong shape, dtype or
            device, and for CUDA tensors when pcseg was built without CUDA.
    """
    _check_radius(radius, "radius")
    return _window_search(
        query,
        points,
        k,
        query_lengths,
        lengths,
        lambda q, p, ql, pl: torch.ops.pcseg.ball_query(q, p, ql, pl, float(radius), k),
    )


def _check_radius(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


def squared_radius(radius: float, dtype: torch.dtype) -> float:
    """radius * radius rounded exactly as the native kernels do (in the points' dtype).

    Args:
        radius: the radius.
        dtype: the points' dtype.

    Returns:
        radius2: the squared radius as a Python float.
    """
    r = torch.tensor(radius, dtype=dtype)
    return float(r * r)


def ball_query_naive(query, points, radius, k, query_lengths=None, lengths=None):
    """Pure-PyTorch reference of `ball_query`."""
    hi2 = squared_radius(radius, query.dtype)
    return window_search_naive(query, points, k, query_lengths, lengths, hi2=hi2)


@torch.library.register_fake("pcseg::ball_query")
def _(query, points, query_lengths, lengths, radius, k):
    shape = (query.shape[0], query.shape[1], k)
    return query.new_empty(shape), query.new_empty(shape, dtype=torch.long)
