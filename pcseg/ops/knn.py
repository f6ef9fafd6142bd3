"""k nearest neighbours, and the brute-force reference shared by ball and ring queries."""

from __future__ import annotations

import torch

from pcseg.ops._extension import as_batch, check_device, check_positive_int, full_lengths


def knn(
    query: torch.Tensor,
    points: torch.Tensor,
    k: int,
    query_lengths: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest points of every query point, by a kd-tree (CPU) or brute force (CUDA).

    Memory is O(M k): the M x N distance matrix is never formed. Squared distances are
    computed in the input dtype: float32 coordinates beyond about 1e19 overflow them (a point
    that exists then comes back as -1). Map-frame clouds should be taken relative to a local
    origin first, as pcseg's inference does (``pcseg.data.blocks.to_local``).

    Args:
        query: (B, M, 3) or (M, 3) float32/float64.
        points: (B, N, 3) or (N, 3), same dtype and device.
        k: neighbours per query, >= 1 (any size; k > N is allowed and padded).
        query_lengths: (B,) int64 real sizes of a padded `query`, or None.
        lengths: (B,) int64 real sizes of a padded `points`, or None.

    Returns:
        dists2: (B, M, k) (or (M, k)) squared distances, ascending; +inf where fewer than k
            points exist and on padded query rows. Differentiable w.r.t. query and points.
        idx: (B, M, k) (or (M, k)) int64; ties in distance are broken by the lower index; -1
            where dists2 is +inf.

    Raises:
        TypeError: when `query` or `points` is not a tensor, `k` is not an int or the lengths
            are not integers.
        ValueError: when `k` < 1 or `query` and `points` disagree on batching.
        RuntimeError: from the native checks, naming the argument, on a wrong shape, dtype or
            device, and for CUDA tensors when pcseg was built without CUDA.
    """
    return _window_search(
        query, points, k, query_lengths, lengths, lambda q, p, ql, pl: torch.ops.pcseg.knn(q, p, ql, pl, k)
    )


def _window_search(query, points, k, query_lengths, lengths, native):
    """Shared wrapper of knn / ball_query / ring_query: batching, checks, differentiable dists."""
    query, unbatched_q = as_batch(query, "query")
    points, unbatched_p = as_batch(points, "points")
    if unbatched_q != unbatched_p:
        raise ValueError(
            f"query and points must both be batched (B, *, 3) or both unbatched "
            f"(*, 3), got {tuple(query.shape)} and {tuple(points.shape)}"
        )
    check_device(query, points)
    check_positive_int(k, "k")
    query_lengths = full_lengths(query, query_lengths, "query_lengths")
    lengths = full_lengths(points, lengths, "lengths")
    dists, idx = native(query.detach(), points.detach(), query_lengths, lengths)
    if torch.is_grad_enabled() and (query.requires_grad or points.requires_grad):
        dists = _differentiable_dists(query, points, idx)
    if unbatched_q:
        return dists[0], idx[0]
    return dists, idx


def _differentiable_dists(query, points, idx):
    from pcseg.ops.gather_points import group_points

    neighbours = group_points(points, idx)  # (B, M, k, 3)
    diff = neighbours - query.unsqueeze(2)
    dx, dy, dz = diff.unbind(-1)
    d = dx * dx + dy * dy + dz * dz
    return d.masked_fill(idx < 0, float("inf"))


def window_search_naive(
    query, points, k, query_lengths=None, lengths=None, lo2: float = -1.0, hi2: float = float("inf")
):
    """Brute force: the k nearest points with lo2 <= d2 < hi2, padded with (-1, inf)."""
    query, unbatched = as_batch(query, "query")
    points, _ = as_batch(points, "points")
    query_lengths = full_lengths(query, query_lengths, "query_lengths")
    lengths = full_lengths(points, lengths, "lengths")
    batch, m, n = query.shape[0], query.shape[1], points.shape[1]
    diff = points.unsqueeze(1) - query.unsqueeze(2)  # (B, M, N, 3)
    dx, dy, dz = diff.unbind(-1)
    d = dx * dx + dy * dy + dz * dz
    ar_n = torch.arange(n, device=points.device)
    ar_m = torch.arange(m, device=points.device)
    invalid = (ar_n[None, None, :] >= lengths[:, None, None]) | (d < lo2) | (d >= hi2)
    invalid = invalid | (ar_m[None, :, None] >= query_lengths[:, None, None])
    d = d.masked_fill(invalid, float("inf"))
    d_sorted, order = torch.sort(d, dim=-1, stable=True)
    kk = min(k, n)
    dists = torch.full((batch, m, k), float("inf"), dtype=points.dtype, device=points.device)
    idx = torch.full((batch, m, k), -1, dtype=torch.long, device=points.device)
    dists[..., :kk] = d_sorted[..., :kk]
    idx[..., :kk] = order[..., :kk]
    idx = idx.masked_fill(torch.isinf(dists), -1)
    if unbatched:
        return dists[0], idx[0]
    return dists, idx


def knn_naive(query, points, k, query_lengths=None, lengths=None):
    """Pure-PyTorch reference of `knn` (forms the full M x N distance matrix)."""
    return window_search_naive(query, points, k, query_lengths, lengths)


@torch.library.register_fake("pcseg::knn")
def _(query, points, query_lengths, lengths, k):
    shape = (query.shape[0], query.shape[1], k)
    return query.new_empty(shape), query.new_empty(shape, dtype=torch.long)
