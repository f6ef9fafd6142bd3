"""Pure functions between images and points: back-projection, projection, painting, rendering.

Every function takes numpy arrays or torch tensors and returns the same kind: numpy in ->
numpy out, torch in -> torch out (on the input's device). Pixel convention: 0-based pixel
centres, (u, v) = (column, row); see `pcseg.bridge.camera`. Poses are 4x4
`T_<to>_from_<from>` matrices (numpy or torch).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from pcseg.bridge.camera import PinholeCamera


# ----- numpy <-> torch plumbing ------------------------------------------------------------
def _as_tensor(array, name: str) -> tuple[torch.Tensor, bool]:
    """(tensor, was_numpy). numpy arrays are wrapped without a copy where possible."""
    if isinstance(array, torch.Tensor):
        return array, False
    if isinstance(array, np.ndarray):
        if not array.flags.writeable or array.dtype.byteorder not in ("=", "|", "<"):
            array = np.array(array)
        return torch.from_numpy(np.ascontiguousarray(array)), True
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(array).__name__}")


def _back(tensor: torch.Tensor, to_numpy: bool):
    return tensor.numpy() if to_numpy else tensor


def _float_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other dtype (integers, float16, float32) computes in float32."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _check_points(points: torch.Tensor, name: str = "points") -> None:
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must be (N, 3), got shape {tuple(points.shape)}")
    if points.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 points)")
    if not points.is_floating_point():
        raise ValueError(f"{name} must be a float array, got {points.dtype}")


def _check_pose(pose, name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A 4x4 rigid-body-style matrix as a tensor of `dtype` on `device`; clear errors otherwise."""
    matrix = torch.as_tensor(np.asarray(pose) if not isinstance(pose, torch.Tensor) else pose)
    if matrix.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 matrix, got shape {tuple(matrix.shape)}")
    matrix = matrix.to(device=device, dtype=torch.float64)
    if not bool(torch.isfinite(matrix).all()):
        raise ValueError(f"{name} has non-finite entries: {matrix.tolist()}")
    if not torch.equal(matrix[3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=device)):
        raise ValueError(f"{name} must have last row [0, 0, 0, 1], got {matrix[3].tolist()}")
    return matrix.to(dtype)


def _transform(points: torch.Tensor, pose: torch.Tensor | None) -> torch.Tensor:
    if pose is None:
        return points
    return torch.addmm(pose[:3, 3], points, pose[:3, :3].T)


# ----- back-projection ---------------------------------------------------------------------
class BackprojectedDepth(NamedTuple):
    """Result of `backproject_depth`.

    points: (N, 3) float32 (float64 for float64 depth): one point per valid pixel, in
        row-major pixel order (the order of Open3D's `create_from_rgbd_image`).
    pixels: (N, 2) int64 (u, v) = (column, row) of the pixel each point came from.
    valid: (H, W) bool, the valid pixels: 0 < depth / depth_scale < depth_trunc.
        `image[valid]` (or `image[..., valid]` for channels-first) lists per-pixel data
        (colours, labels, scores) in the same order as `points`.
    """

    points: object
    pixels: object
    valid: object


def backproject_depth(
    depth,
    camera: PinholeCamera,
    depth_scale: float,
    depth_trunc: float,
    T_world_from_camera=None,
) -> BackprojectedDepth:
    """Lift a depth image to 3D points: z = depth / depth_scale, x = (u - cx) z / fx, y = (v - cy) z / fy.

    depth: (H, W) depth image, any numeric dtype (uint16 millimetres, float metres, ...).
        Pixels with z <= 0, z >= depth_trunc or non-finite z are invalid (Open3D's rules).
    camera: PinholeCamera of size W x H (0-based pixel centres).
    depth_scale: raw depth units per metre (1000 for millimetre PNGs, 1 for float metres).
    depth_trunc: farthest valid depth in metres (float('inf') keeps all).
    T_world_from_camera: optional (4, 4) pose; points are returned in the world frame.
    Returns BackprojectedDepth(points (N, 3), pixels (N, 2) int64, valid (H, W) bool),
    same array kind as `depth`. Matches Open3D's `create_from_rgbd_image` point for point.
    """
    depth_t, to_numpy = _as_tensor(depth, "depth")
    if depth_t.dim() != 2:
        raise ValueError(f"depth must be a 2D (H, W) image, got shape {tuple(depth_t.shape)}")
    camera.check_image_shape(depth_t.shape, "depth")
    if not depth_scale > 0 or not np.isfinite(depth_scale):
        raise ValueError(f"depth_scale must be a positive finite number, got {depth_scale}")
    if not depth_trunc > 0:
        raise ValueError(f"depth_trunc must be positive, got {depth_trunc}")
    dtype = _float_dtype(depth_t)
    pose = None
    if T_world_from_camera is not None:
        pose = _check_pose(T_world_from_camera, "T_world_from_camera", dtype, depth_t.device)

    height, width = depth_t.shape
    # Dividing in the working precision (float32 unless float64) is what Open3D does too.
    z = depth_t.to(dtype) / _rounded_to(depth_scale, dtype)
    # Open3D drops z >= depth_trunc (its docs say '>', its code says '>='); NaN compares False.
    valid = (z > 0) & (z < depth_trunc)
    flat_index = torch.nonzero(valid.view(-1)).squeeze(1)
    z_valid = z.view(-1).index_select(0, flat_index)
    rows = torch.div(flat_index, width, rounding_mode="floor")
    columns = flat_index - rows * width
    # Per-column / per-row ray slopes: one multiply per coordinate instead of subtract+divide.
    slope_x = (torch.arange(width, device=depth_t.device, dtype=torch.float64) - camera.cx) / camera.fx
    slope_y = (torch.arange(height, device=depth_t.device, dtype=torch.float64) - camera.cy) / camera.fy
    points = torch.stack(
        [slope_x.to(dtype).index_select(0, columns) * z_valid, slope_y.to(dtype).index_select(0, rows) * z_valid, z_valid],
        dim=1,
    )
    points = _transform(points, pose)
    pixels = torch.stack([columns, rows], dim=1)
    return BackprojectedDepth(_back(points, to_numpy), _back(pixels, to_numpy), _back(valid, to_numpy))


def _rounded_to(value: float, dtype: torch.dtype) -> float:
    """`value` rounded to `dtype` (so float32 division matches C++ `float / (float)scale`)."""
    return float(torch.tensor(value, dtype=dtype))
