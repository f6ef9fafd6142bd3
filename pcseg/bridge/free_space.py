"""Free space seen by one sensor frame: which map voxels its rays passed through.

A range sensor that measures a return at range r along a direction also observes that the
space before it is empty. Instead of walking every ray through the grid (hundreds of voxel
steps per ray), the test runs the other way round, as projective integrators do: the
frame's returns are binned into a spherical range image around the sensor origin, and a
voxel is free when it lies in front of every return of its bin and of the eight bins
around it (with a margin). The neighbourhood makes the test conservative where a ray grazes
a surface: a ground voxel always has a neighbouring ray that hits the ground at its own
range or nearer, so only voxels that rays really passed are cleared.
"""

from __future__ import annotations

import math

import torch

from pcseg.bridge.camera import PinholeCamera
from pcseg.bridge.projection import _project

__all__ = ["free_space_mask", "free_space_mask_image", "spherical_bins"]


def free_space_mask(
    voxel_points: torch.Tensor,
    returns: torch.Tensor,
    voxel_size: float,
    resolution_degrees: float = 0.5,
    range_margin: float = 0.02,
) -> torch.Tensor:
    """Which voxels lie in the free space that one frame's rays crossed.

    Everything is in the sensor frame: the sensor at the origin, z its up axis (the
    spherical image's pole; a camera's x right, y down, z forward becomes (x, z, -y)).

    Args:
        voxel_points: (V, 3) float position of each voxel in the sensor frame (the mean of
            its points, which lies on the observed surface).
        returns: (N, 3) float positions of the frame's returns in the sensor frame (every
            valid range measurement, labelled or not).
        voxel_size: voxel edge in metres.
        resolution_degrees: the range image's bin size in azimuth and elevation; coarser
            than the sensor's ray spacing, so that most bins hold a return.
        range_margin: fraction of the voxel's range added to the margin (range noise).

    Returns:
        free: (V,) bool, True where the voxel is at least 2 * voxel_size + range_margin *
        range in front of every return in its 3x3 bin neighbourhood, and that
        neighbourhood holds a return (nothing is known about directions without one).
    """
    device = voxel_points.device
    step = math.radians(resolution_degrees)
    num_azimuth = math.ceil(2 * math.pi / step)
    returns = returns.to(device=device, dtype=torch.float32)
    azimuth, elevation = spherical_bins(returns, resolution_degrees)
    ranges = torch.linalg.vector_norm(returns, dim=1)
    # The image spans only the elevations the frame has returns at (a LiDAR's few dozen
    # degrees, a camera's field of view), plus the one-bin neighbourhood on each side.
    low = int(elevation.min()) - 1
    num_elevation = int(elevation.max()) + 2 - low
    bins = (elevation - low).to(torch.int64) * num_azimuth + azimuth.to(torch.int64)
    image = torch.full((num_elevation * num_azimuth,), float("inf"), device=device)
    image.scatter_reduce_(0, bins, ranges, reduce="amin", include_self=True)
    nearest = _neighbourhood_minimum(image.view(num_elevation, num_azimuth)).view(-1)
    voxel_points = voxel_points.to(torch.float32)
    voxel_azimuth, voxel_elevation = spherical_bins(voxel_points, resolution_degrees)
    voxel_ranges = torch.linalg.vector_norm(voxel_points, dim=1)
    voxel_row = voxel_elevation - low
    inside = (voxel_row >= 0) & (voxel_row < num_elevation)
    voxel_bins = torch.where(inside, voxel_row, 0).to(torch.int64) * num_azimuth + voxel_azimuth.to(torch.int64)
    limit = torch.where(inside, nearest.index_select(0, voxel_bins), float("inf"))
    margin = 2 * voxel_size + range_margin * voxel_ranges
    # An infinite limit (no return around the voxel's direction) clears nothing.
    return (voxel_ranges + margin < limit) & torch.isfinite(limit)


def free_space_mask_image(
    voxel_points: torch.Tensor,
    ranges: torch.Tensor,
    camera: PinholeCamera,
    voxel_size: float,
    resolution_degrees: float = 0.5,
    range_margin: float = 0.02,
) -> torch.Tensor:
    """Which voxels lie in the free space that one camera depth frame's rays crossed.

    The same test as `free_space_mask` with the camera's pixel grid for the spherical
    image: the range image is pooled into blocks of about `resolution_degrees` (at the
    image centre) a side, and a voxel is free when it lies in front of every return in the
    3x3 blocks around the pixel it projects to.

    Args:
        voxel_points: (V, 3) float position of each voxel in the camera frame (x right,
            y down, z forward).
        ranges: (H, W) float32 distance from the camera centre to each pixel's return,
            inf where the pixel has none (no depth, or beyond the truncation).
        camera: the depth image's PinholeCamera (with its distortion).
        voxel_size: voxel edge in metres.
        resolution_degrees: the block size, as an angle.
        range_margin: fraction of the voxel's range added to the margin (range noise).

    Returns:
        free: (V,) bool, True where the voxel projects into the image and is at least
        2 * voxel_size + range_margin * range in front of every return of its 3x3 block
        neighbourhood, which holds a return.
    """
    device = voxel_points.device
    if voxel_points.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool, device=device)
    step = math.radians(resolution_degrees)
    block = (max(1, round(step * camera.fy)), max(1, round(step * camera.fx)))
    negative = -ranges.to(device=device, dtype=torch.float32)[None, None]
    # Min-pooling as max-pooling of the negated image; max_pool2d pads with -inf, so
    # neighbours outside the image count as "no return", as in the spherical image.
    blocks = torch.nn.functional.max_pool2d(negative, block, stride=block, ceil_mode=True)
    nearest = -torch.nn.functional.max_pool2d(blocks, 3, stride=1, padding=1)[0, 0]
    voxel_points = voxel_points.to(torch.float32)
    _, _, _, in_image, flat_index = _project(voxel_points, camera, None)
    # Pixels outside the image (flat index -1) go to block 0 and are dropped by in_image.
    flat_index = flat_index.clamp(min=0)
    row = torch.div(flat_index, camera.width, rounding_mode="floor")
    column = (flat_index - row * camera.width) // block[1]
    row = row // block[0]
    limit = torch.where(in_image, nearest[row, column], float("inf"))
    voxel_ranges = torch.linalg.vector_norm(voxel_points, dim=1)
    margin = 2 * voxel_size + range_margin * voxel_ranges
    return (voxel_ranges + margin < limit) & torch.isfinite(limit)


def spherical_bins(points: torch.Tensor, resolution_degrees: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Azimuth and elevation bins of sensor-frame directions.

    Args:
        points: (N, 3) float directions or points in the sensor frame (z up).
        resolution_degrees: the bin size.

    Returns:
        (azimuth, elevation): (N,) float32 whole numbers each; azimuth in
        [0, 360 / resolution_degrees), elevation counted from straight down.
    """
    step = math.radians(resolution_degrees)
    x, y, z = points.to(torch.float32).unbind(1)
    horizontal = torch.hypot(x, y)
    num_azimuth = math.ceil(2 * math.pi / step)
    azimuth = torch.floor((torch.atan2(y, x) + math.pi) * (1.0 / step)).clamp_(0, num_azimuth - 1)
    elevation = torch.floor((torch.atan2(z, horizontal) + math.pi / 2) * (1.0 / step))
    return azimuth, elevation


def _neighbourhood_minimum(image: torch.Tensor) -> torch.Tensor:
    """(E, A) minimum over each bin's 3x3 neighbourhood; azimuth wraps around, elevation does not."""
    rows = torch.minimum(image, torch.minimum(image.roll(1, dims=1), image.roll(-1, dims=1)))
    padded = torch.nn.functional.pad(rows, (0, 0, 1, 1), value=float("inf"))
    return torch.minimum(rows, torch.minimum(padded[:-2], padded[2:]))
