"""Sparse voxelisation with per-voxel sums: which voxels a cloud occupies, and per voxel its
point count, position sum, label counts and value sums, in one pass over the points."""

from __future__ import annotations

from typing import NamedTuple

import torch

from pcseg.ops._extension import check_device

# Voxel coordinates packed into one int64 key, 21 bits per axis offset by 2^20: +-2^20 voxels
# (+-52 km at 5 cm) around the origin; key order is lexicographic in (x, y, z).
VOXEL_KEY_BITS = 21
VOXEL_KEY_OFFSET = 1 << (VOXEL_KEY_BITS - 1)
VOXEL_KEY_MASK = (1 << VOXEL_KEY_BITS) - 1


class Voxelized(NamedTuple):
    """Result of `voxelize`, U occupied voxels in ascending key order.

    Attributes:
        keys: (U,) int64 packed voxel keys (`pack_voxel_keys`), ascending.
        inverse: (N,) int64 voxel of each point, -1 for points with label -1.
        counts: (U,) int64 points per voxel.
        point_sums: (U, 3) float64 sum of each voxel's points.
        label_counts: (U, C) float32 points of each label (C = num_classes, 0 without labels).
        value_sums: (U, D) sum of each voxel's value rows, the dtype of `values`.
    """

    keys: torch.Tensor
    inverse: torch.Tensor
    counts: torch.Tensor
    point_sums: torch.Tensor
    label_counts: torch.Tensor
    value_sums: torch.Tensor


def voxelize(
    points: torch.Tensor,
    voxel_size: float,
    labels: torch.Tensor | None = None,
    num_classes: int = 0,
    values: torch.Tensor | None = None,
) -> Voxelized:
    """Group points into cubic voxels and sum what each voxel holds.

    Voxel (i, j, k) spans [i, i + 1) * voxel_size along x (and so on), with
    i = floor(x * (1 / voxel_size)) computed in the points' dtype. On the CPU every voxel
    adds its points in ascending point order, so the sums are the same bit for bit at any
    thread count; on CUDA the order of the float additions is unspecified.

    Args:
        points: (N, 3) float32/float64, finite, within 2^20 voxels of the origin.
        voxel_size: the voxels' edge, > 0 (metres for metric points).
        labels: optional (N,) int64 in [-1, num_classes); a point labelled -1 is skipped
            entirely (no voxel, no sums).
        num_classes: C, the width of `label_counts`; > 0 when labels are given.
        values: optional (N, D) float32/float64 rows summed per voxel (colours, class
            scores).

    Returns:
        voxelized: Voxelized(keys (U,), inverse (N,), counts (U,), point_sums (U, 3),
        label_counts (U, C), value_sums (U, D)).

    Raises:
        TypeError: when an argument is not a tensor.
        RuntimeError: from the native checks, naming the argument: shapes, dtypes, devices,
            labels out of range, non-finite points or points beyond the keys' range.
    """
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"points must be a torch.Tensor, got {type(points).__name__}")
    for name, tensor in (("labels", labels), ("values", values)):
        if tensor is not None and not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or None, got {type(tensor).__name__}")
    check_device(points, labels, values)
    count = points.shape[0] if points.dim() >= 1 else 0
    if labels is None:
        labels = torch.empty(0, dtype=torch.long, device=points.device)
    if values is None:
        values = torch.empty((count, 0), dtype=torch.float32, device=points.device)
    return Voxelized(*torch.ops.pcseg.voxelize(points, float(voxel_size), labels, int(num_classes), values))


def pack_voxel_keys(coordinates: torch.Tensor) -> torch.Tensor:
    """(N,) int64 keys of (N, 3) integer voxel coordinates already offset by 2^20."""
    coordinates = coordinates.to(torch.int64)
    keys = coordinates[:, 0] << (2 * VOXEL_KEY_BITS)
    keys |= coordinates[:, 1] << VOXEL_KEY_BITS
    keys |= coordinates[:, 2]
    return keys


def unpack_voxel_keys(keys: torch.Tensor) -> torch.Tensor:
    """(N, 3) int64 voxel coordinates (i, j, k), offset removed, of (N,) packed keys."""
    shifts = torch.tensor([2 * VOXEL_KEY_BITS, VOXEL_KEY_BITS, 0], device=keys.device)
    return ((keys[:, None] >> shifts) & VOXEL_KEY_MASK) - VOXEL_KEY_OFFSET


def voxelize_naive(points, voxel_size, labels=None, num_classes=0, values=None) -> Voxelized:
    """Pure-PyTorch reference of `voxelize` (sorting torch.unique and index_add_)."""
    count = points.shape[0]
    keep = torch.arange(count, device=points.device) if labels is None else torch.nonzero(labels >= 0).squeeze(1)
    kept = points.index_select(0, keep)
    shifted = torch.floor(kept * (1.0 / voxel_size)) + VOXEL_KEY_OFFSET
    if not bool(torch.isfinite(shifted).all()):
        raise RuntimeError("points must be finite")
    if kept.shape[0] and not bool(((shifted >= 0) & (shifted < 2 * VOXEL_KEY_OFFSET)).all()):
        raise RuntimeError("points span voxel indices beyond the keys' range")
    keys, kept_inverse, counts = torch.unique(pack_voxel_keys(shifted), return_inverse=True, return_counts=True)
    num_voxels = keys.shape[0]
    inverse = torch.full((count,), -1, dtype=torch.long, device=points.device)
    inverse[keep] = kept_inverse
    point_sums = torch.zeros((num_voxels, 3), dtype=torch.float64, device=points.device)
    point_sums.index_add_(0, kept_inverse, kept.to(torch.float64))
    label_counts = torch.zeros((num_voxels, num_classes), dtype=torch.float32, device=points.device)
    if labels is not None and kept.shape[0]:
        label_counts.index_put_(
            (kept_inverse, labels.index_select(0, keep)),
            torch.ones(kept.shape[0], device=points.device),
            accumulate=True,
        )
    width = 0 if values is None else values.shape[1]
    dtype = torch.float32 if values is None else values.dtype
    value_sums = torch.zeros((num_voxels, width), dtype=dtype, device=points.device)
    if values is not None:
        value_sums.index_add_(0, kept_inverse, values.index_select(0, keep))
    return Voxelized(keys, inverse, counts, point_sums, label_counts, value_sums)


@torch.library.register_fake("pcseg::voxelize")
def _(points, voxel_size, labels, num_classes, values):
    context = torch.library.get_ctx()
    num_voxels = context.new_dynamic_size()
    return (
        points.new_empty((num_voxels,), dtype=torch.long),
        points.new_empty((points.shape[0],), dtype=torch.long),
        points.new_empty((num_voxels,), dtype=torch.long),
        points.new_empty((num_voxels, 3), dtype=torch.float64),
        points.new_empty((num_voxels, num_classes), dtype=torch.float32),
        values.new_empty((num_voxels, values.shape[1])),
    )
