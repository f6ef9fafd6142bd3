"""Pure functions between images and points: back-projection, projection, painting, rendering.

Every function takes numpy arrays or torch tensors and returns the same kind: numpy in ->
numpy out, torch in -> torch out (on the input's device). Pixel convention: 0-based pixel
centres, (u, v) = (column, row); see `pcseg.bridge.camera`. Poses are 4x4
`T_<to>_from_<from>` matrices (numpy or torch).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch

from pcseg.bridge.camera import PinholeCamera
from pcseg.bridge.checks import (
    Array,
    as_tensor,
    check_points,
    check_pose,
    check_segmentation,
    flat_nonzero,
    from_tensor,
    take_rows,
)
from pcseg.bridge.distortion import distort, undistort


# ----- numpy <-> torch plumbing ------------------------------------------------------------
def _float_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other dtype (integers, float16, float32) computes in float32."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _transform(points: torch.Tensor, pose: torch.Tensor | None) -> torch.Tensor:
    """(N, 3) points mapped by the 4x4 pose (None: unchanged)."""
    if pose is None:
        return points
    if points.device.type != "cpu":
        return _transform_coordinates(points, pose).T.contiguous()
    # On the CPU, three scaled adds per output column beat a (3, 3) @ (3, N) product and
    # the transposing copy it needs (or an (N, 3) @ (3, 3) product, which BLAS does badly).
    rotation, translation = pose[:3, :3].tolist(), pose[:3, 3].tolist()
    x, y, z = points.unbind(1)
    out = torch.empty_like(points)
    for axis in range(3):
        column = torch.mul(x, rotation[axis][0], out=out[:, axis])
        column.add_(y, alpha=rotation[axis][1]).add_(z, alpha=rotation[axis][2]).add_(translation[axis])
    return out


def transform_points(points, pose):
    """Map points through a 4x4 pose (numpy in -> numpy out, torch in -> torch out).

    Args:
        points: (N, 3) float points.
        pose: (4, 4) `T_<to>_from_<from>` (numpy, torch or nested lists).

    Returns:
        transformed: (N, 3) points in the pose's target frame, the dtype of `points`
        (float32 for integer points).

    Raises:
        ValueError: on points that are not a non-empty (N, 3) array, or a bad pose.
    """
    points_t, to_numpy = as_tensor(points, "points")
    check_points(points_t)
    dtype = _float_dtype(points_t)
    pose_t = check_pose(pose, "pose", dtype, points_t.device)
    return from_tensor(_transform(points_t.to(dtype), pose_t), to_numpy)


def _transform_coordinates(points: torch.Tensor, pose: torch.Tensor | None) -> torch.Tensor:
    """(3, N) coordinates of the (N, 3) points mapped by the 4x4 pose (None: unchanged).

    (3, 3) @ (3, N) rather than (N, 3) @ (3, 3): an inner dimension of 3 defeats the CPU's
    BLAS kernels.
    """
    if pose is None:
        return points.T
    return torch.addmm(pose[:3, 3:], pose[:3, :3], points.T)


# ----- back-projection ---------------------------------------------------------------------
class BackprojectedDepth:
    """Result of `backproject_depth`; unpacks as `points, pixels, valid = result`.

    All three are numpy arrays for numpy depth, torch tensors for torch depth.

    Attributes:
        points: (N, 3) float32 (float64 for float64 depth): one point per valid pixel, in
            row-major pixel order (the order of Open3D's `create_from_rgbd_image`).
        pixels: (N, 2) int64 (u, v) = (column, row) of the pixel each point came from
            (computed on first access).
        valid: (H, W) bool, the valid pixels: 0 < depth / depth_scale < depth_trunc.
            `image[valid]` lists per-pixel data in the same order as `points`;
            `take(image)` does the same with a row gather.
    """

    def __init__(self, points, valid, flat_index: torch.Tensor, pixel_grid: torch.Tensor, to_numpy: bool):
        self.points = points
        self.valid = valid
        self._flat_index = flat_index  # (N,) int64 row-major index of each point's pixel
        self._pixel_grid = pixel_grid
        self._to_numpy = to_numpy
        self._pixels: Array | None = None

    @property
    def pixels(self) -> Array:
        if self._pixels is None:
            self._pixels = from_tensor(take_rows(self._pixel_grid, self._flat_index), self._to_numpy)
        return self._pixels

    def __iter__(self):
        return iter((self.points, self.pixels, self.valid))

    def take(self, image, channels_first: bool = False):
        """Per-point values of a per-pixel image: colours, a label map, class scores.

        Same result as `image[valid]`, by a row gather instead of numpy's slower boolean
        indexing.

        Args:
            image: (H, W, ...) image (or (C, H, W) with channels_first=True), numpy or torch.
            channels_first: the image is (C, H, W).

        Returns:
            values: (N, ...) (or (N, C)) in the order of `points`, the image's array kind
            and dtype.

        Raises:
            ValueError: when the image is not (H, W, ...) (or (C, H, W)).
        """
        image_t, to_numpy = as_tensor(image, "image")
        height, width = self.valid.shape
        flat_index = self._flat_index.to(image_t.device)
        if channels_first:
            if image_t.dim() != 3 or tuple(image_t.shape[1:]) != (height, width):
                raise ValueError(
                    f"image must be (C, {height}, {width}) with channels_first, got {tuple(image_t.shape)}"
                )
            return from_tensor(image_t.reshape(image_t.shape[0], -1).index_select(1, flat_index).T, to_numpy)
        if tuple(image_t.shape[:2]) != (height, width):
            raise ValueError(f"image must be ({height}, {width}, ...), got {tuple(image_t.shape)}")
        return from_tensor(
            take_rows(image_t.reshape((height * width,) + tuple(image_t.shape[2:])), flat_index), to_numpy
        )


@functools.lru_cache(maxsize=4)  # a 640x480 camera holds 8.6 MB of grids
def _pixel_grids(
    camera: PinholeCamera, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-pixel ray directions (H*W, 3) (a, b, 1), pixels (H*W, 2) int64 (u, v), and
    (H, W) bool pixels with a ray (None: all of them).

    (a, b) = ((u - cx) / fx, (v - cy) / fy) for a pinhole camera; with distortion, the
    undistorted normalised coordinates of the pixel centre (pixels where the model cannot
    be inverted have no ray). Cached per camera: back-projecting a frame is then a gather
    and one multiply, distorted or not.
    """
    shape = (camera.height, camera.width)
    slope_x = ((torch.arange(camera.width, dtype=torch.float64) - camera.cx) / camera.fx)[None, :].expand(shape)
    slope_y = ((torch.arange(camera.height, dtype=torch.float64) - camera.cy) / camera.fy)[:, None].expand(shape)
    has_ray = None
    if camera.is_distorted:
        slope_x, slope_y, has_ray = undistort(slope_x, slope_y, camera.distortion, camera.distortion_model)
        slope_x = torch.where(has_ray, slope_x, 0.0)
        slope_y = torch.where(has_ray, slope_y, 0.0)
        has_ray = None if bool(has_ray.all()) else has_ray.to(device)
    rays = torch.stack([slope_x.to(dtype), slope_y.to(dtype), torch.ones(shape, dtype=dtype)], dim=-1)
    columns = torch.arange(camera.width)[None, :].expand(shape)
    rows = torch.arange(camera.height)[:, None].expand(shape)
    pixels = torch.stack([columns, rows], dim=-1)
    return rays.reshape(-1, 3).contiguous().to(device), pixels.reshape(-1, 2).contiguous().to(device), has_ray


@functools.lru_cache(maxsize=8)
def _field_of_view_radius2(camera: PinholeCamera) -> float:
    """The largest r^2 = a^2 + b^2 of an undistorted ray through the image (its border).

    r^2 is convex, so its maximum over the image's (undistorted) region lies on the border.
    A point farther out cannot be in the image, although a distortion polynomial evaluated
    that far out may fold it back in (a 360-degree LiDAR scan has many such points).
    """
    columns = torch.arange(-0.5, camera.width, 0.25, dtype=torch.float64).clamp(max=camera.width - 0.5)
    rows = torch.arange(-0.5, camera.height, 0.25, dtype=torch.float64).clamp(max=camera.height - 0.5)
    u = torch.cat([columns, columns, torch.full_like(rows, -0.5), torch.full_like(rows, camera.width - 0.5)])
    v = torch.cat([torch.full_like(columns, -0.5), torch.full_like(columns, camera.height - 0.5), rows, rows])
    a, b, converged = undistort(
        (u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, camera.distortion, camera.distortion_model
    )
    if not bool(converged.any()):
        return float("inf")
    return float((a * a + b * b)[converged].max()) * (1 + 1e-6)


def backproject_depth(
    depth,
    camera: PinholeCamera,
    depth_scale: float,
    depth_trunc: float,
    pose=None,
) -> BackprojectedDepth:
    """Lift a depth image to 3D points: z = depth / depth_scale, x = (u - cx) z / fx, y = (v - cy) z / fy.

    Matches Open3D's `create_from_rgbd_image` point for point. For a distorted camera,
    (u - cx) / fx and (v - cy) / fy are undistorted first (the inverse of `project_points`;
    pixels outside the model's invertible range are invalid). Transfer per-pixel data
    (colours, labels, scores) with `result.take(image)`.

    Args:
        depth: (H, W) depth image, any numeric dtype (uint16 millimetres, float metres,
            ...). Pixels with z <= 0, z >= depth_trunc or non-finite z are invalid
            (Open3D's rules).
        camera: PinholeCamera of size W x H (0-based pixel centres).
        depth_scale: raw depth units per metre (1000 for millimetre PNGs, 1 for float metres).
        depth_trunc: depth in metres from which pixels are dropped (float('inf') keeps all).
        pose: optional (4, 4) T_world_from_camera (camera: x right, y down, z forward);
            the points are then returned in the world frame (the camera frame when None).

    Returns:
        backprojected: BackprojectedDepth (points (N, 3), pixels (N, 2) int64, valid
        (H, W) bool), same array kind as `depth`.

    Raises:
        ValueError: on a depth image that is not (H, W) or not the camera's size, a
            depth_scale or depth_trunc that is not positive, or a bad pose.
    """
    depth_t, to_numpy = as_tensor(depth, "depth")
    if depth_t.dim() != 2:
        raise ValueError(f"depth must be a 2D (H, W) image, got shape {tuple(depth_t.shape)}")
    camera.check_image_shape(depth_t.shape, "depth")
    if not depth_scale > 0 or not np.isfinite(depth_scale):
        raise ValueError(f"depth_scale must be a positive finite number, got {depth_scale}")
    if not depth_trunc > 0:
        raise ValueError(f"depth_trunc must be positive, got {depth_trunc}")
    dtype = _float_dtype(depth_t)
    T_world_from_camera = None
    if pose is not None:
        T_world_from_camera = check_pose(pose, "pose (T_world_from_camera)", dtype, depth_t.device)

    # Dividing in the working precision (float32 unless float64) is what Open3D does too.
    z = depth_t.to(dtype) / _rounded_to(depth_scale, dtype)
    # Open3D drops z >= depth_trunc (its docs say '>', its code says '>='); NaN compares False.
    valid = (z > 0) & (z < depth_trunc)
    flat_index = flat_nonzero(valid)
    z_valid = take_rows(z.reshape(-1), flat_index)
    rays, pixel_grid, has_ray = _pixel_grids(camera, dtype, depth_t.device)
    if has_ray is not None:
        valid &= has_ray
    points = take_rows(rays, flat_index).mul_(z_valid[:, None])
    points = _transform(points, T_world_from_camera)
    return BackprojectedDepth(
        from_tensor(points, to_numpy), from_tensor(valid, to_numpy), flat_index, pixel_grid, to_numpy
    )


def _rounded_to(value: float, dtype: torch.dtype) -> float:
    """`value` rounded to `dtype` (so float32 division matches C++ `float / (float)scale`)."""
    return float(torch.tensor(value, dtype=dtype))


# ----- projection ----------------------------------------------------------------------------
class ProjectedPoints(NamedTuple):
    """Result of `project_points`.

    Attributes:
        pixels: (N, 2) float (u, v), 0-based pixel centres; meaningless where depth <= 0.
        depth: (N,) float, the camera-frame z of each point.
        in_image: (N,) bool: z > 0 and the point's nearest pixel centre lies in the image,
            i.e. -0.5 <= u < W - 0.5 and -0.5 <= v < H - 0.5. Points behind the camera
            are never in the image; with distortion, neither are points outside the
            image's field of view that the distortion polynomial folds back into it.
    """

    pixels: Array
    depth: Array
    in_image: Array


def project_points(points, camera: PinholeCamera, T_camera_from_points=None) -> ProjectedPoints:
    """Project points into a camera.

    Args:
        points: (N, 3) float points.
        camera: the PinholeCamera.
        T_camera_from_points: (4, 4) pose mapping the points into the camera frame;
            None = they are in it already.

    Returns:
        projected: ProjectedPoints(pixels (N, 2), depth (N,), in_image (N,) bool), same
        array kind and float dtype as `points`.

    Raises:
        ValueError: on points that are not a non-empty (N, 3) float array, or a bad pose.
    """
    points_t, to_numpy = as_tensor(points, "points")
    u, v, depth, in_image, _ = _project(points_t, camera, T_camera_from_points)
    result = (torch.stack([u, v], dim=1), depth, in_image)
    return ProjectedPoints(*(from_tensor(tensor, to_numpy) for tensor in result))


def _project(points: torch.Tensor, camera: PinholeCamera, T_camera_from_points):
    """(u (N,), v (N,), depth (N,), in_image (N,) bool, flat pixel index (N,) int64, -1 outside)."""
    check_points(points)
    pose = None
    if T_camera_from_points is not None:
        pose = check_pose(T_camera_from_points, "T_camera_from_points", points.dtype, points.device)
    x, y, depth = _transform_coordinates(points, pose)
    # Dividing behind-camera points too keeps this branch-free; they are masked out below.
    inverse_depth = 1.0 / depth
    in_front = depth > 0
    if camera.is_distorted:
        a, b = x * inverse_depth, y * inverse_depth
        r2 = (a * a).addcmul_(b, b)
        in_front &= r2 <= _field_of_view_radius2(camera)
        a, b = distort(a, b, camera.distortion, camera.distortion_model, r2)
        u = torch.add(torch.tensor(camera.cx, dtype=x.dtype, device=x.device), a, alpha=camera.fx)
        v = torch.add(torch.tensor(camera.cy, dtype=y.dtype, device=y.device), b, alpha=camera.fy)
    else:
        u = torch.addcmul(torch.tensor(camera.cx, dtype=x.dtype, device=x.device), x, inverse_depth, value=camera.fx)
        v = torch.addcmul(torch.tensor(camera.cy, dtype=y.dtype, device=y.device), y, inverse_depth, value=camera.fy)
    # Nearest pixel centre; NaN / inf (z = 0) fail every comparison below.
    column = torch.floor(u + 0.5)
    row = torch.floor(v + 0.5)
    in_image = in_front & (column >= 0) & (column < camera.width) & (row >= 0) & (row < camera.height)
    if camera.width * camera.height <= 2**24 or column.dtype == torch.float64:
        # row * W + column is an exact integer in float32 below 2^24 pixels.
        flat_index = torch.where(in_image, row.mul_(camera.width).add_(column), -1.0).to(torch.int64)
    else:
        flat_index = torch.where(in_image, row.double() * camera.width + column.double(), -1.0).to(torch.int64)
    return u, v, depth, in_image, flat_index


def _nearest_depth_per_pixel(flat_index: torch.Tensor, depth: torch.Tensor, num_pixels: int) -> torch.Tensor:
    """(num_pixels,) the smallest depth that lands on each pixel (inf where none); `flat_index` >= 0."""
    zbuffer = torch.full((num_pixels,), float("inf"), dtype=depth.dtype, device=depth.device)
    return zbuffer.scatter_reduce_(0, flat_index, depth, reduce="amin", include_self=True)


# ----- painting ------------------------------------------------------------------------------
class PaintedPoints(NamedTuple):
    """Result of `paint_points`.

    Attributes:
        probabilities: (N, C) float class probabilities sampled from the image; all zeros
            where the point is not visible.
        labels: (N,) int64 argmax class, -1 where the point is not visible.
        visible: (N,) bool: in the image and not occluded; these points carry 2D labels.
        in_image: (N,) bool: projects inside the image with z > 0 (see `project_points`).
        occluded: (N,) bool: in the image but hidden behind nearer geometry.
    """

    probabilities: Array
    labels: Array
    visible: Array
    in_image: Array
    occluded: Array


def paint_points(
    points,
    segmentation,
    camera: PinholeCamera,
    T_camera_from_points=None,
    *,
    num_classes: int | None = None,
    scores: str = "probabilities",
    sampling: str = "nearest",
    occlusion: str = "zbuffer",
    depth_image=None,
    occlusion_tolerance: float = 0.1,
    occlusion_tolerance_relative: float = 0.01,
    zbuffer_radius: int = 0,
) -> PaintedPoints:
    """Carry a 2D segmentation onto 3D points (PointPainting with a z > 0 check and occlusion).

    Args:
        points: (N, 3) float, in the frame that T_camera_from_points maps into the camera.
        segmentation: either a label map (H, W) integer with values in [0, num_classes)
            (then `num_classes` is required) or class scores (C, H, W) float,
            probabilities or logits (say which with `scores`).
        camera: the PinholeCamera of the image (W x H).
        T_camera_from_points: (4, 4) pose; None = the points are in the camera frame.
        num_classes: C; required with a label map, checked against the scores' channels.
        scores: "probabilities" or "logits" (softmax is applied to the sampled logits only).
        sampling: "nearest" (the pixel the point falls in) or "bilinear" (probabilities of
            the four surrounding pixel centres, borders replicated).
        occlusion: "zbuffer": a point is occluded when it lies farther than the nearest
            point projecting to the same pixel by more than occlusion_tolerance +
            occlusion_tolerance_relative * depth (metres). "depth": the same test against
            `depth_image` instead. "none": every in-image point is visible.
        depth_image: (H, W) float metres, for occlusion="depth" only (pixels with depth
            <= 0 or non-finite occlude nothing; integer images, e.g. uint16 millimetres,
            are refused: pass depth_mm / 1000.0).
        occlusion_tolerance: metres, >= 0 (a negative tolerance would let the nearest
            point of a pixel occlude itself).
        occlusion_tolerance_relative: fraction of the depth, >= 0.
        zbuffer_radius: r > 0 lets each point also occlude the (2r+1)^2 pixels around it,
            closing the gaps of sparse LiDAR.

    Returns:
        painted: PaintedPoints(probabilities (N, C), labels (N,), visible, in_image,
        occluded), same array kind as `points`; probabilities are float32 (float64 for
        float64 scores).

    Raises:
        ValueError: on a bad segmentation (see `pcseg.bridge.checks.check_segmentation`),
            labels outside [0, num_classes), an unknown option, or a bad depth image.
    """
    points_t, to_numpy = as_tensor(points, "points")
    segmentation_t, _ = as_tensor(segmentation, "segmentation")
    segmentation_t = segmentation_t.to(points_t.device)
    is_label_map = check_segmentation(segmentation_t, camera, scores=scores, num_classes=num_classes)
    if sampling not in ("nearest", "bilinear"):
        raise ValueError(f"sampling must be 'nearest' or 'bilinear', got {sampling!r}")
    if occlusion not in ("zbuffer", "depth", "none"):
        raise ValueError(f"occlusion must be 'zbuffer', 'depth' or 'none', got {occlusion!r}")
    if depth_image is not None and occlusion != "depth":
        raise ValueError(f"depth_image is only used with occlusion='depth', got occlusion={occlusion!r}")
    for name, value in (
        ("occlusion_tolerance", occlusion_tolerance),
        ("occlusion_tolerance_relative", occlusion_tolerance_relative),
    ):
        if not value >= 0 or not np.isfinite(value):  # NaN fails >= 0
            raise ValueError(f"{name} must be a finite number >= 0 (metres / fraction of depth), got {value}")
    if int(zbuffer_radius) != zbuffer_radius or zbuffer_radius < 0:
        raise ValueError(f"zbuffer_radius must be an integer >= 0 (pixels), got {zbuffer_radius}")
    if is_label_map:
        if num_classes is None or num_classes < 1:
            raise ValueError(f"num_classes is required (>= 1) with a label map segmentation, got {num_classes}")
        if segmentation_t.numel() and (int(segmentation_t.min()) < 0 or int(segmentation_t.max()) >= num_classes):
            raise ValueError(
                f"segmentation labels must lie in [0, {num_classes}), got "
                f"[{int(segmentation_t.min())}, {int(segmentation_t.max())}]"
            )
        probability_dtype = torch.float32
    else:
        num_classes = segmentation_t.shape[0]
        probability_dtype = _float_dtype(segmentation_t)

    u, v, depth, in_image, flat_index = _project(points_t, camera, T_camera_from_points)
    num_pixels = camera.height * camera.width
    image_points = flat_nonzero(in_image)
    image_flat = flat_index.index_select(0, image_points)
    image_depth = depth.index_select(0, image_points)

    occluded = torch.zeros_like(in_image)
    if occlusion != "none":
        if occlusion == "zbuffer":
            nearest = _nearest_depth_per_pixel(image_flat, image_depth, num_pixels)
            if zbuffer_radius > 0:
                nearest = _spread_minimum(nearest.view(camera.height, camera.width), zbuffer_radius).view(-1)
        else:
            if depth_image is None:
                raise ValueError("occlusion='depth' needs depth_image (H, W) in metres")
            depth_image_t, _ = as_tensor(depth_image, "depth_image")
            camera.check_image_shape(depth_image_t.shape, "depth_image")
            if depth_image_t.dim() != 2:
                raise ValueError(f"depth_image must be (H, W), got shape {tuple(depth_image_t.shape)}")
            if not depth_image_t.is_floating_point():
                # An integer image is almost surely raw millimetres: read as metres, every
                # pixel would sit 1000x too far away and occlude nothing.
                raise ValueError(
                    f"depth_image must be float metres, got {depth_image.dtype} (raw millimetres? "
                    "pass depth_mm / 1000.0)"
                )
            nearest = depth_image_t.to(device=depth.device, dtype=depth.dtype).reshape(-1)
            nearest = torch.where((nearest > 0) & torch.isfinite(nearest), nearest, float("inf"))
        limit = nearest.index_select(0, image_flat)
        hidden = image_depth > limit + occlusion_tolerance + occlusion_tolerance_relative * limit
        occluded[image_points] = hidden
        keep = flat_nonzero(~hidden)
        image_points = image_points.index_select(0, keep)
        image_flat = image_flat.index_select(0, keep)

    visible = torch.zeros_like(in_image)
    visible[image_points] = True
    if sampling == "nearest":
        sampled = _sample_pixels(segmentation_t, image_flat, num_classes, is_label_map, scores, probability_dtype)
    else:
        pixels = torch.stack([u.index_select(0, image_points), v.index_select(0, image_points)], dim=1)
        sampled = _sample_bilinear(segmentation_t, pixels, camera, num_classes, is_label_map, scores, probability_dtype)
    # Every output row is gathered from a table of the M visible rows plus one row for
    # "not visible" (zeros / -1): one pass over (N, C) instead of fill-then-scatter.
    num_visible = image_points.shape[0]
    table_row = torch.full((points_t.shape[0],), num_visible, dtype=torch.int64, device=points_t.device)
    table_row[image_points] = torch.arange(num_visible, device=points_t.device)
    zero_row = torch.zeros((1, num_classes), dtype=probability_dtype, device=points_t.device)
    probabilities = take_rows(torch.cat([sampled.T, zero_row]), table_row)
    # torch.max(dim) beats argmax here on the CPU; both pick the first maximum.
    label_table = torch.cat([torch.max(sampled, dim=0).indices, torch.tensor([-1], device=points_t.device)])
    labels = take_rows(label_table, table_row)
    result = (probabilities, labels, visible, in_image, occluded)
    return PaintedPoints(*(from_tensor(tensor, to_numpy) for tensor in result))


def _spread_minimum(image: torch.Tensor, radius: int) -> torch.Tensor:
    """(H, W) minimum over the (2r+1)^2 window around each pixel (an erosion of the depth).

    A square window is separable (rows, then columns); each pass is 2r+1 shifted
    elementwise minima, which on the CPU beats max_pool2d.
    """
    height, width = image.shape
    padded = torch.nn.functional.pad(image, (radius, radius), value=float("inf"))
    rows = padded[:, 0:width].clone()
    for shift in range(1, 2 * radius + 1):  # loop over the window, not over pixels
        torch.minimum(rows, padded[:, shift : shift + width], out=rows)
    padded = torch.nn.functional.pad(rows, (0, 0, radius, radius), value=float("inf"))
    result = padded[0:height].clone()
    for shift in range(1, 2 * radius + 1):
        torch.minimum(result, padded[shift : shift + height], out=result)
    return result


def _sample_pixels(segmentation, flat_index, num_classes, is_label_map, scores, dtype) -> torch.Tensor:
    """(C, M) probabilities at flat pixel indices (M,), channels first like the image."""
    if is_label_map:
        labels = segmentation.reshape(-1).index_select(0, flat_index).to(torch.int64)
        one_hot = torch.zeros((num_classes, flat_index.shape[0]), dtype=dtype, device=flat_index.device)
        return one_hot.scatter_(0, labels[None], 1.0)
    # Gathering per channel from (C, H*W) touches only C * M values: no transpose of the image.
    sampled = segmentation.reshape(num_classes, -1).index_select(1, flat_index).to(dtype)
    return torch.softmax(sampled, dim=0) if scores == "logits" else sampled


def _sample_bilinear(segmentation, pixels, camera, num_classes, is_label_map, scores, dtype) -> torch.Tensor:
    """(C, M) probabilities interpolated between the 4 pixel centres around pixels (M, 2)."""
    u = pixels[:, 0].clamp(0, camera.width - 1)
    v = pixels[:, 1].clamp(0, camera.height - 1)
    left, top = torch.floor(u), torch.floor(v)
    weight_u, weight_v = (u - left).to(dtype), (v - top).to(dtype)
    left, top = left.to(torch.int64), top.to(torch.int64)
    right = (left + 1).clamp(max=camera.width - 1)
    bottom = (top + 1).clamp(max=camera.height - 1)

    def corner(column, row):
        return _sample_pixels(segmentation, row * camera.width + column, num_classes, is_label_map, scores, dtype)

    top_row = corner(left, top) * (1 - weight_u) + corner(right, top) * weight_u
    bottom_row = corner(left, bottom) * (1 - weight_u) + corner(right, bottom) * weight_u
    return top_row * (1 - weight_v) + bottom_row * weight_v


# ----- rendering -----------------------------------------------------------------------------
class RenderedLabels(NamedTuple):
    """Result of `render_labels`.

    Attributes:
        labels: (H, W) int64 label of the nearest point on each pixel, `background` where none.
        depth: (H, W) float depth of that point, inf where none.
        point_index: (H, W) int64 index of that point into `points`, -1 where none.
    """

    labels: Array
    depth: Array
    point_index: object


def render_labels(
    points, labels, camera: PinholeCamera, T_camera_from_points=None, background: int = -1
) -> RenderedLabels:
    """Render labelled points into a z-buffered label image.

    Each pixel shows the nearest point projecting into it (ties: the lowest point index).

    Args:
        points: (N, 3) float points.
        labels: (N,) int label of each point.
        camera: the PinholeCamera to render (W x H).
        T_camera_from_points: (4, 4) pose; None = the points are in the camera frame.
        background: the label of pixels no point reaches.

    Returns:
        rendered: RenderedLabels(labels (H, W) int64, depth (H, W), point_index (H, W)
        int64), same array kind as `points`.

    Raises:
        ValueError: on labels that are not (N,) integers, or bad points or pose.
    """
    points_t, to_numpy = as_tensor(points, "points")
    labels_t, _ = as_tensor(labels, "labels")
    labels_t = labels_t.to(points_t.device)
    if labels_t.shape != (points_t.shape[0],) or labels_t.is_floating_point():
        raise ValueError(
            f"labels must be (N,) integers with N={points_t.shape[0]}, got {tuple(labels_t.shape)} {labels_t.dtype}"
        )
    _, _, depth, in_image, flat_index = _project(points_t, camera, T_camera_from_points)
    num_pixels = camera.height * camera.width
    image_points = flat_nonzero(in_image)
    image_flat = flat_index.index_select(0, image_points)
    image_depth = depth.index_select(0, image_points)
    nearest = _nearest_depth_per_pixel(image_flat, image_depth, num_pixels)
    winners = torch.nonzero(image_depth == nearest.index_select(0, image_flat)).squeeze(1)
    sentinel = points_t.shape[0]
    point_index = torch.full((num_pixels,), sentinel, dtype=torch.int64, device=points_t.device)
    point_index.scatter_reduce_(
        0, image_flat.index_select(0, winners), image_points.index_select(0, winners), reduce="amin", include_self=True
    )
    covered = point_index < sentinel
    label_image = torch.full((num_pixels,), background, dtype=torch.int64, device=points_t.device)
    label_image[covered] = labels_t.to(torch.int64).index_select(0, point_index[covered])
    point_index[~covered] = -1
    shape = (camera.height, camera.width)
    result = (label_image.view(shape), nearest.view(shape), point_index.view(shape))
    return RenderedLabels(*(from_tensor(tensor, to_numpy) for tensor in result))
