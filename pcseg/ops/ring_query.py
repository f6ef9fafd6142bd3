"""Ring (annulus) query with angular ordering: A-CNN's neighbourhoods."""

from __future__ import annotations

import math

import numpy as np
import torch

from pcseg.ops._extension import as_batch
from pcseg.ops.ball_query import squared_radius
from pcseg.ops.knn import _window_search, window_search_naive


def ring_query(
    query: torch.Tensor,
    points: torch.Tensor,
    normals: torch.Tensor,
    r_inner: float,
    r_outer: float,
    k: int,
    query_lengths: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest points with r_inner <= distance < r_outer, ordered by angle.

    The kept points are ordered counter-clockwise seen from the tip of the normal, by their
    angle on the centre's tangent plane measured from the farthest kept neighbour (A-CNN's
    order_neighbors), so a circular convolution along the last axis is meaningful. Equal
    angles keep distance order (ties in distance: lower index first); points on the normal
    axis, and duplicates of the farthest neighbour, get angle 0, so that neighbour and its
    duplicates lead the ring. With a zero normal, or when the farthest neighbour lies on the
    normal axis, the ring stays in distance order.

    Args:
        query: (B, M, 3) or (M, 3) ring centres, float32/float64.
        points: (B, N, 3) or (N, 3) candidates, same dtype and device.
        normals: like `query`, the normal of each centre (need not be unit length).
        r_inner: inner radius, 0 <= r_inner < r_outer; 0 gives a disc (the centre itself
            included when it is one of the points).
        r_outer: outer radius.
        k: ring size, >= 1.
        query_lengths: (B,) int64 real sizes of a padded `query`, or None.
        lengths: (B,) int64 real sizes of a padded `points`, or None.

    Returns:
        dists2: (B, M, k) (or (M, k)) squared distances in ring order; a short ring has its
            j < k kept points first, then +inf; an empty ring is all +inf.
        idx: (B, M, k) (or (M, k)) int64; -1 where dists2 is +inf.

    Raises:
        TypeError: when `query` or `points` is not a tensor, `k` is not an int or the lengths
            are not integers.
        ValueError: when the radii are not 0 <= r_inner < r_outer, `k` < 1 or `query` and `points` disagree on batching.
        RuntimeError: from the native checks, naming the argument, on a wrong shape, dtype or
            device, and for CUDA tensors when pcseg was built without CUDA.
    """
    _check_radii(r_inner, r_outer)
    normals_b, _ = as_batch(normals, "normals")
    return _window_search(
        query,
        points,
        k,
        query_lengths,
        lengths,
        lambda q, p, ql, pl: torch.ops.pcseg.ring_query(
            q, p, normals_b.detach(), ql, pl, float(r_inner), float(r_outer), k
        ),
    )


def _check_radii(r_inner, r_outer) -> None:
    for name, value in (("r_inner", r_inner), ("r_outer", r_outer)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(r_inner) and math.isfinite(r_outer) and 0 <= r_inner < r_outer):
        raise ValueError(f"ring radii must satisfy 0 <= r_inner < r_outer, got r_inner={r_inner}, r_outer={r_outer}")


def pseudo_angle(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """A monotone stand-in for atan2(c, a) on [0, 4), written exactly like the C++ one:
    c / (a + c), 1 + (-a) / (-a + c), 2 + (-c) / (-a - c), 3 + a / (a - c) by quadrant, i.e.
    quadrant + (|c| or |a|) / (|a| + |c|)."""
    c_up, a_right = c >= 0, a >= 0
    num = torch.where(c_up == a_right, c.abs(), a.abs())
    den = a.abs() + c.abs()
    quadrant = torch.where(c_up, torch.where(a_right, 0.0, 1.0), torch.where(a_right, 3.0, 2.0))
    out = quadrant.to(a.dtype) + num / torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, out, torch.zeros_like(out))


def _sqrt_ieee(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded sqrt. torch.sqrt of CPU float64 goes through SLEEF, which is within
    1 ulp but differs from the IEEE sqrt of the kernels (std::sqrt, CUDA's sqrt) on ~1 % of
    inputs; a tangent frame one ulp off can move a neighbour on the reference ray from angle
    ~0 to ~4, so the reference must round like the kernels."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.sqrt(x.detach().numpy()))
    return torch.sqrt(x)


def angular_order_naive(query, points, normals, dists, idx):
    """Reorders rows of (dists, idx), ascending by distance, by angle around the normals."""
    batch, m, k = idx.shape
    kept = (idx >= 0).sum(-1)  # (B, M)
    safe = idx.clamp(min=0)
    p = torch.gather(points.double().unsqueeze(1).expand(batch, m, -1, 3), 2, safe.unsqueeze(-1).expand(-1, -1, -1, 3))
    v = p - query.double().unsqueeze(2)  # (B, M, k, 3)
    n = normals.double()
    nn = n[..., 0] * n[..., 0] + n[..., 1] * n[..., 1] + n[..., 2] * n[..., 2]
    h = n / _sqrt_ieee(nn).unsqueeze(-1)
    ref_slot = (kept - 1).clamp(min=0)
    r = torch.gather(v, 2, ref_slot[..., None, None].expand(-1, -1, 1, 3)).squeeze(2)
    s = r[..., 0] * h[..., 0] + r[..., 1] * h[..., 1] + r[..., 2] * h[..., 2]
    t = r - s.unsqueeze(-1) * h
    tt = t[..., 0] * t[..., 0] + t[..., 1] * t[..., 1] + t[..., 2] * t[..., 2]
    u = t / _sqrt_ieee(tt).unsqueeze(-1)
    w = torch.stack(
        [
            h[..., 1] * u[..., 2] - h[..., 2] * u[..., 1],
            h[..., 2] * u[..., 0] - h[..., 0] * u[..., 2],
            h[..., 0] * u[..., 1] - h[..., 1] * u[..., 0],
        ],
        dim=-1,
    )
    a = v[..., 0] * u[..., None, 0] + v[..., 1] * u[..., None, 1] + v[..., 2] * u[..., None, 2]
    c = v[..., 0] * w[..., None, 0] + v[..., 1] * w[..., None, 1] + v[..., 2] * w[..., None, 2]
    # duplicates of the reference point (the reference included) sit at angle 0 exactly
    on_reference = (v == r.unsqueeze(2)).all(-1)
    key = torch.where(on_reference, torch.zeros_like(a), pseudo_angle(a, c))
    slots = torch.arange(k, device=idx.device)
    key = key.masked_fill(slots >= kept.unsqueeze(-1), float("inf"))  # padding stays last
    ordered = (kept >= 2) & (nn > 0) & (tt > 0)
    key = torch.where(ordered.unsqueeze(-1), key, slots.double().expand_as(key))
    order = torch.sort(key, dim=-1, stable=True).indices
    return torch.gather(dists, 2, order), torch.gather(idx, 2, order)


def ring_query_naive(query, points, normals, r_inner, r_outer, k, query_lengths=None, lengths=None):
    """Pure-PyTorch reference of `ring_query`."""
    query_b, unbatched = as_batch(query, "query")
    points_b, _ = as_batch(points, "points")
    normals_b, _ = as_batch(normals, "normals")
    lo2 = squared_radius(r_inner, query.dtype) if r_inner > 0 else -1.0
    hi2 = squared_radius(r_outer, query.dtype)
    dists, idx = window_search_naive(query_b, points_b, k, query_lengths, lengths, lo2, hi2)
    dists, idx = angular_order_naive(query_b, points_b, normals_b, dists, idx)
    if unbatched:
        return dists[0], idx[0]
    return dists, idx


@torch.library.register_fake("pcseg::ring_query")
def _(query, points, normals, query_lengths, lengths, r_inner, r_outer, k):
    shape = (query.shape[0], query.shape[1], k)
    return query.new_empty(shape), query.new_empty(shape, dtype=torch.long)
