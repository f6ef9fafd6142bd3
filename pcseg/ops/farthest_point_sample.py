"""Exact farthest point sampling."""

from __future__ import annotations

import torch

from pcseg.ops._extension import as_batch, check_device, full_lengths


def farthest_point_sample(
    points: torch.Tensor,
    num_samples: int,
    lengths: torch.Tensor | None = None,
    start_index: int = 0,
    random_start: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Exact farthest point sampling.

    Sample i + 1 is the point farthest from samples 0..i (squared distance, computed as
    (dx*dx + dy*dy) + dz*dz); among equally far points the lowest index wins, the rule of
    `torch.argmax`.

    Args:
        points: (B, N, 3) or (N, 3) float32/float64, padded when clouds differ in size.
        num_samples: M, 0 <= M <= N.
        lengths: (B,) int64, the real size of each cloud (default: N for all).
        start_index: the first sample of every cloud.
        random_start: start each cloud at a uniformly drawn point instead.
        generator: the CPU generator of the random start; a seeded one makes the result
            deterministic.

    Returns:
        idx: (B, M) int64 (or (M,) for unbatched input); clouds with fewer than M points are
            filled with -1 after their last point.

    Raises:
        TypeError: when `points` is not a tensor or `num_samples` / `start_index` is not an int.
        RuntimeError: from the native checks, naming the argument, on a wrong shape, dtype or
            device or an out-of-range `num_samples` / `start_index`, and for CUDA tensors when
            pcseg was built without CUDA.
    """
    points, unbatched = as_batch(points, "points")
    check_device(points)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int):
        raise TypeError(f"num_samples must be an int, got {type(num_samples).__name__}")
    lengths = full_lengths(points, lengths, "lengths")
    start = _start_indices(points, lengths, start_index, random_start, generator)
    idx = torch.ops.pcseg.farthest_point_sample(points, lengths, num_samples, start)
    return idx[0] if unbatched else idx


def _start_indices(points, lengths, start_index, random_start, generator) -> torch.Tensor:
    batch = points.shape[0] if points.dim() == 3 else 0
    if random_start:
        # Drawn on the CPU from [0, 1) and scaled, so one seeded generator gives the same
        # starts on every device and for every cloud size.
        u = torch.rand(batch, generator=generator, dtype=torch.float64)
        start = (u * lengths.cpu().clamp(min=1).double()).long()
        return start.to(points.device)
    if isinstance(start_index, bool) or not isinstance(start_index, int):
        raise TypeError(f"start_index must be an int, got {type(start_index).__name__}")
    return torch.full((batch,), start_index, dtype=torch.long, device=points.device)


def farthest_point_sample_naive(
    points: torch.Tensor,
    num_samples: int,
    lengths: torch.Tensor | None = None,
    start_index: int = 0,
    random_start: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pure-PyTorch reference of `farthest_point_sample` (O(N M), a Python loop over M)."""
    points, unbatched = as_batch(points, "points")
    lengths = full_lengths(points, lengths, "lengths")
    start = _start_indices(points, lengths, start_index, random_start, generator)
    batch = points.shape[0]
    out = torch.full((batch, num_samples), -1, dtype=torch.long, device=points.device)
    for b in range(batch):
        n = int(lengths[b])
        x, y, z = points[b, :n].unbind(-1)
        min_d2 = torch.full((n,), float("inf"), dtype=points.dtype, device=points.device)
        cur = int(start[b])
        for i in range(min(num_samples, n)):
            out[b, i] = cur
            dx, dy, dz = x - x[cur], y - y[cur], z - z[cur]
            min_d2 = torch.minimum(min_d2, dx * dx + dy * dy + dz * dz)
            cur = int(torch.argmax(min_d2))
    return out[0] if unbatched else out


@torch.library.register_fake("pcseg::farthest_point_sample")
def _(points, lengths, num_samples, start_index):
    return points.new_empty((points.shape[0], num_samples), dtype=torch.long)
