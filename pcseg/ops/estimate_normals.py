"""Surface normals by PCA over k nearest neighbours, consistently oriented."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pcseg.ops._extension import as_batch, check_device, check_positive_int
from pcseg.ops.knn import knn, knn_naive


def estimate_normals(
    points: torch.Tensor,
    k: int = 16,
    lengths: torch.Tensor | None = None,
    viewpoint: torch.Tensor | Sequence[float] | str | None = None,
) -> torch.Tensor:
    """Unit normals by PCA over each point's k nearest neighbours, consistently oriented.

    Each normal is the eigenvector of the smallest eigenvalue of the covariance of the point's
    k nearest neighbours (itself included). Not differentiable.

    Args:
        points: (B, N, 3) or (N, 3) float32/float64.
        k: neighbours per point, >= 1.
        lengths: (B,) int64 real sizes of a padded batch, or None.
        viewpoint: where the normals face. (3,) or (B, 3): a point, e.g. the sensor position
            of a scan or an RGB-D frame (the sign then says which side was seen). "interior":
            the centre of each cloud's bounding box (its real points), the rule for whole
            rooms without a sensor position: floors face up, ceilings down and walls into the
            room, so opposite walls get opposite normals. None: a non-negative z component
            (up), which leaves the sign of vertical surfaces (walls) arbitrary.

    Returns:
        normals: (B, N, 3) (or (N, 3)) unit normals, (0, 0, 0) for points with fewer than 3
            neighbours (tiny clouds, padding).

    Raises:
        TypeError: when `points` is not a tensor or `k` is not an int.
        ValueError: when `k` < 1 or `viewpoint` is not (3,), (B, 3), "interior" or None.
        RuntimeError: from the native checks, naming the argument, on a wrong shape, dtype or
            device, and for CUDA tensors when pcseg was built without CUDA.
    """
    points, unbatched = as_batch(points, "points")
    check_device(points)
    check_positive_int(k, "k")
    _, idx = knn(points, points, k, query_lengths=lengths, lengths=lengths)
    normals = torch.ops.pcseg.normals_from_neighbors(points, idx)
    normals = orient_normals(points, normals, viewpoint, lengths)
    return normals[0] if unbatched else normals


def interior_viewpoint(points: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """The centre of each cloud's bounding box, the viewpoint of ``viewpoint="interior"``.

    Args:
        points: (B, N, 3) float coordinates.
        lengths: (B,) int64 real sizes of a padded batch, or None.

    Returns:
        centres: (B, 3) same dtype as `points`.
    """
    if lengths is None:
        lo, hi = points.amin(1), points.amax(1)
    else:
        real = (torch.arange(points.shape[1], device=points.device)[None] < lengths.to(points.device)[:, None])[
            ..., None
        ]
        lo = points.masked_fill(~real, float("inf")).amin(1)
        hi = points.masked_fill(~real, float("-inf")).amax(1)
        lo, hi = torch.nan_to_num(lo, posinf=0.0, neginf=0.0), torch.nan_to_num(hi, posinf=0.0, neginf=0.0)
    return (lo + hi) / 2


def orient_normals(points, normals, viewpoint=None, lengths=None):
    """Flips normals to face a viewpoint, the cloud's interior, or +z.

    Args:
        points: (B, N, 3) the points the normals belong to.
        normals: (B, N, 3) normals.
        viewpoint: (3,) or (B, 3), "interior" (``interior_viewpoint``), or None for +z.
        lengths: (B,) int64 real sizes of a padded batch, or None (for "interior").

    Returns:
        normals: (B, N, 3), each either unchanged or negated.

    Raises:
        ValueError: when `viewpoint` is not (3,), (B, 3), "interior" or None.
    """
    if isinstance(viewpoint, str):
        if viewpoint != "interior":
            raise ValueError(f'viewpoint must be (3,) or (B, 3), "interior" or None, got {viewpoint!r}')
        viewpoint = interior_viewpoint(points, lengths)
    if viewpoint is None:
        facing = normals[..., 2]
    else:
        vp = torch.as_tensor(viewpoint, dtype=points.dtype, device=points.device)
        if vp.shape not in ((3,), (points.shape[0], 3)):
            raise ValueError(f"viewpoint must be (3,) or (B, 3), got {tuple(vp.shape)}")
        vp = vp.reshape(-1, 1, 3)
        facing = ((vp - points) * normals).sum(-1)
    return torch.where((facing < 0).unsqueeze(-1), -normals, normals)


def estimate_normals_naive(points, k=16, lengths=None, viewpoint=None):
    """Pure-PyTorch reference of `estimate_normals` (torch.linalg.eigh in float64)."""
    points_b, unbatched = as_batch(points, "points")
    _, idx = knn_naive(points_b, points_b, k, query_lengths=lengths, lengths=lengths)
    from pcseg.ops.gather_points import gather_points_naive

    valid = (idx >= 0).unsqueeze(-1).double()
    nb = gather_points_naive(points_b.double(), idx)  # (B, N, k, 3)
    count = valid.sum(2)
    mean = (nb * valid).sum(2) / count.clamp(min=1)
    d = (nb - mean.unsqueeze(2)) * valid
    cov = d.transpose(-1, -2) @ d
    _, vecs = torch.linalg.eigh(cov)
    normals = vecs[..., 0].to(points_b.dtype)
    normals = normals * (count >= 3).to(points_b.dtype)
    normals = orient_normals(points_b, normals, viewpoint, lengths)
    return normals[0] if unbatched else normals


@torch.library.register_fake("pcseg::normals_from_neighbors")
def _(points, idx):
    return torch.empty_like(points)
