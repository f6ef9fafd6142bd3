"""What a model eats: the per-point input channels a config asks for, and how they are made.

A block's 9 PointNet features (``pcseg.data.blocks``: block xyz, rgb, room-normalised xyz)
become the model's ``points (B, P, 3)`` and ``features (B, P, C)``, ``C = input_channels(data)``,
in the order rgb (``data.use_color``), room xyz (``data.room_coords``), intensity
(``data.use_intensity``), range (``data.use_range``), local geometry
(``data.geometric_features``: normal, surface variation, offset to the neighbourhood
centroid), and the whole cloud's multiscale features (``data.multiscale_features``,
``multiscale_features``: a room or scan's field ``multiscale``, made by ``room_fields``).

LiDAR channels. Intensity is the sensor's intensity / remission divided by its full scale
(``data.intensity_scale``: 1 for SemanticKITTI's remission, which is already 0..1; 255 for a
Velodyne's raw 8-bit intensity; 65535 for 16-bit reflectivity as Ouster's) and clipped to
[0, 1] (``normalise_intensity``). Range is the distance from the sensor (the origin of the
scan's own frame) divided by ``RANGE_SCALE`` metres, so the ranges of a street scan are
about 0..2. Both travel as block feature columns 9 and 10 (``pcseg.data.blocks``) of rooms
that hold them; they are never copied into the colour channels. A model with either channel
is a LiDAR model, and its block z is the height in the sensor's frame (column 11) instead of
PointNet's height above the cloud's lowest point: one spurious return metres below the road
(real scans have them) would shift that for the whole scan. For the same reason a LiDAR
model's normals face the sensor (columns 11-13 give its direction from each point), not the
centre of the cloud's bounding box: one such return moves the box's centre above the road,
which turned every road normal of the real SemanticKITTI scan downwards.

Where geometry is on, its normal channels are also the model's ``normals`` (``input_normals``,
facing the room's interior, or a LiDAR's sensor: ``block_inputs``), so a model that orients by
normals (A-CNN) uses the same ones it sees as features; every model takes them in its one
forward signature (``pcseg.models``).

The trainer, the validation pass and the predictor all build their inputs here, so training
and inference cannot drift apart.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pcseg import ops
from pcseg.config import DataConfig
from pcseg.ops.estimate_normals import orient_normals

__all__ = [
    "input_channels",
    "geometric_features",
    "multiscale_features",
    "eigenvalues",
    "block_inputs",
    "input_normals",
    "rotate_inputs",
    "normalise_intensity",
    "lidar_room_fields",
    "room_fields",
    "RANGE_SCALE",
]

# channels of geometric_features: normal (3), surface variation (1), offset to the centroid (3)
GEOMETRY_CHANNELS = 7
# multiscale_features: neighbours per scale, the voxel grids of the coarser scales (metres;
# the finest scale is the cloud itself), the xy squares the ground is looked for in (metres)
MULTISCALE_NEIGHBOURS = 16
MULTISCALE_VOXELS = (0.25, 0.5, 1.0)
GROUND_CELLS = (2.0, 5.0)
MULTISCALE_CHANNELS = 7 * (1 + len(MULTISCALE_VOXELS)) + len(GROUND_CELLS)
# points whose neighbourhoods multiscale_features holds at once (memory: about 300 bytes each)
MULTISCALE_CHUNK = 1_000_000
# metres per unit of the range channel: a LiDAR street scan's useful ranges map to about 0..2
RANGE_SCALE = 50.0


def normalise_intensity(intensity: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A sensor's intensity as the model's [0, 1] channel.

    Args:
        intensity: (N,) intensity or remission as the sensor gives it.
        scale: the sensor's full scale (``data.intensity_scale``): 1 for SemanticKITTI's
            remission, 255 for 8-bit Velodyne intensity, 65535 for 16-bit reflectivity.

    Returns:
        intensity: (N,) float32 ``intensity / scale`` clipped to [0, 1].

    Raises:
        ValueError: naming ``intensity`` when it is not one value per point or holds NaN or inf.
    """
    intensity = np.asarray(intensity)
    if intensity.ndim != 1:
        raise ValueError(f"intensity must be (N,), one value per point, got shape {intensity.shape}")
    if not np.isfinite(intensity).all():
        raise ValueError("intensity contains NaN or inf")
    return np.clip(intensity.astype(np.float32) / np.float32(scale), 0.0, 1.0)


def lidar_room_fields(points: np.ndarray, intensity: np.ndarray | None, data: DataConfig) -> dict:
    """The ``intensity`` and ``range`` fields a room needs for the LiDAR channels a config asks for.

    Args:
        points: (N, 3) float coordinates in the sensor's frame (range is measured from its origin).
        intensity: (N,) raw intensity (``normalise_intensity`` with ``data.intensity_scale``), or
            None when the sensor gives none.
        data: the data section of the config.

    Returns:
        fields: ``{"intensity": (N,) float32, "range": (N,) float32 metres, "height",
        "sensor_x", "sensor_y": (N,) float32 metres (z, x, y in the sensor frame)}`` when
        ``data.use_intensity`` or ``data.use_range`` is on (intensity zero where only range is
        used), else ``{}``.

    Raises:
        ValueError: naming ``intensity`` when the model takes it but none is given, or when its
            length differs from the points'.
    """
    if not data.lidar:
        return {}
    n = len(points)
    if intensity is None:
        if data.use_intensity:
            raise ValueError(
                "the model takes an intensity channel (data.use_intensity) but no intensity was given; "
                "pass intensity (N,) with the points"
            )
        intensity = np.zeros(n, np.float32)
    intensity = normalise_intensity(intensity, data.intensity_scale)
    if len(intensity) != n:
        raise ValueError(f"intensity must be ({n},) like the points, got {intensity.shape}")
    points = np.asarray(points, dtype=np.float64)
    distance = np.linalg.norm(points, axis=1).astype(np.float32)
    return {
        "intensity": intensity,
        "range": distance,
        "height": points[:, 2].astype(np.float32),
        "sensor_x": points[:, 0].astype(np.float32),
        "sensor_y": points[:, 1].astype(np.float32),
    }


def room_fields(points: np.ndarray, intensity: np.ndarray | None, data: DataConfig) -> dict:
    """Every per-point field a config's model needs besides the coordinates and colours.

    Args:
        points: (N, 3) float coordinates (a LiDAR's: in the sensor's frame).
        intensity: (N,) raw intensity, or None.
        data: the data section of the config.

    Returns:
        fields: ``lidar_room_fields``, and ``"multiscale": (N, MULTISCALE_CHANNELS) float32``
        (``multiscale_features``) when ``data.multiscale_features`` is on.

    Raises:
        ValueError: as ``lidar_room_fields``.
    """
    fields = lidar_room_fields(points, intensity, data)
    if data.multiscale_features:
        fields["multiscale"] = multiscale_features(points)
    return fields


def input_channels(data: DataConfig) -> int:
    """The per-point feature channels the model sees besides xyz.

    Args:
        data: the data section of the config.

    Returns:
        channels: 3 for rgb, 3 for room xyz, 1 for intensity, 1 for range, 7 for the local
        geometry and ``MULTISCALE_CHANNELS`` for the multiscale features, where each is on.
    """
    return (
        _geometry_offset(data)
        + GEOMETRY_CHANNELS * data.geometric_features
        + MULTISCALE_CHANNELS * data.multiscale_features
    )


def _intensity_offset(data: DataConfig) -> int:
    """Where the intensity channel (when on) sits within the features: after rgb and room xyz."""
    return 3 * data.use_color + 3 * data.room_coords


def _geometry_offset(data: DataConfig) -> int:
    """Where the geometry channels start within the features."""
    return _intensity_offset(data) + data.use_intensity + data.use_range


def _smith(matrices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Smith's parameters of symmetric 3x3 matrices: eigenvalues ``q + 2 p cos(phi + 2 pi j / 3)``.

    Args:
        matrices: (..., 3, 3) float symmetric matrices.

    Returns:
        q: (...) float64 a third of the trace.
        p: (...) float64 the spread of the eigenvalues about q (0 for a multiple of I).
        phi: (...) float64 in [0, pi / 3].
        trace: (...) float64.
    """
    a = matrices.double()
    a00, a11, a22 = a[..., 0, 0], a[..., 1, 1], a[..., 2, 2]
    # both halves: a product like X^T X in float32 is symmetric only to rounding
    a01 = 0.5 * (a[..., 0, 1] + a[..., 1, 0])
    a02 = 0.5 * (a[..., 0, 2] + a[..., 2, 0])
    a12 = 0.5 * (a[..., 1, 2] + a[..., 2, 1])
    trace = a00 + a11 + a22
    q = trace / 3.0
    off = a01 * a01 + a02 * a02 + a12 * a12
    d0, d1, d2 = a00 - q, a11 - q, a22 - q
    p = torch.sqrt((d0 * d0 + d1 * d1 + d2 * d2 + 2.0 * off) / 6.0)
    # det((A - q I) / p) / 2 = cos(3 phi); p = 0 (a multiple of I) has q as its only eigenvalue
    safe = torch.where(p > 0, p, torch.ones_like(p))
    det = d0 * (d1 * d2 - a12 * a12) - a01 * (a01 * d2 - a12 * a02) + a02 * (a01 * a12 - d1 * a02)
    r = (det / (2.0 * safe**3)).clamp(-1.0, 1.0)
    return q, p, torch.acos(r) / 3.0, trace


def smallest_eigenvalue(matrices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest eigenvalue and the trace of symmetric 3x3 matrices, in closed form.

    The trigonometric solution of the characteristic cubic (O. K. Smith, "Eigenvalues of a
    symmetric 3 x 3 matrix", Commun. ACM 4(4), 1961), in float64: a few element-wise passes
    instead of a batched LAPACK call per matrix, which costs far more for millions of 3x3s.
    Its error is a few float64 epsilons of the trace, growing to about their square root
    (1e-8 of the trace) where the two smallest eigenvalues nearly coincide (a line).

    Args:
        matrices: (..., 3, 3) float symmetric matrices.

    Returns:
        smallest: (...) float64 the smallest eigenvalue (``torch.linalg.eigvalsh(...)[..., 0]``).
        trace: (...) float64 the sum of the three eigenvalues.
    """
    q, p, phi, trace = _smith(matrices)
    return q + 2.0 * p * torch.cos(phi + 2.0 * math.pi / 3.0), trace


def eigenvalues(matrices: torch.Tensor) -> torch.Tensor:
    """The three eigenvalues of symmetric 3x3 matrices, in closed form (``smallest_eigenvalue``).

    Args:
        matrices: (..., 3, 3) float symmetric matrices.

    Returns:
        eigenvalues: (..., 3) float64 descending (``torch.linalg.eigvalsh(...).flip(-1)``).
    """
    q, p, phi, trace = _smith(matrices)
    largest = q + 2.0 * p * torch.cos(phi)
    smallest = q + 2.0 * p * torch.cos(phi + 2.0 * math.pi / 3.0)
    return torch.stack([largest, trace - largest - smallest, smallest], -1)


def geometric_features(
    points: torch.Tensor, k: int, lengths: torch.Tensor | None = None, inwards: torch.Tensor | None = None
) -> torch.Tensor:
    """The local geometry of every point from its ``k`` nearest neighbours.

    Args:
        points: (B, P, 3) float coordinates in metres.
        k: neighbours per point (at most P are used).
        lengths: (B,) int64 real points per cloud of a padded batch (real points first), or
            None; a point of a cloud with fewer than ``k`` real points uses all of them.
        inwards: (B, P, 3) float per-point direction the normals must not point against
            (``block_inputs`` passes the direction to the room's centre), or None for +z.

    Returns:
        geometry: (B, P, 7) float32: the unit normal (3, ``pcseg.ops.estimate_normals``, flipped
        to face ``inwards``, else oriented to +z; zero with fewer than 3 neighbours), the surface
        variation ``3 l0 / (l0 + l1 + l2)`` in [0, 1] of the neighbourhood covariance's ascending
        eigenvalues, and the offset from the neighbourhood centroid in decimetres (3). Padded
        rows hold finite values of no meaning.
    """
    points = points.float()
    k = min(k, points.shape[1])
    _, idx = ops.knn(points, points, k, query_lengths=lengths, lengths=lengths)
    neighbours = ops.group_points(points, idx)  # (B, P, k, 3), zeros for missing neighbours (index -1)
    if lengths is None:
        count = float(k)
        centroid = neighbours.mean(2)
        centred = neighbours - centroid[:, :, None]
    else:
        valid = (idx >= 0).float()
        count = valid.sum(2).clamp_min(1.0)  # (B, P)
        centroid = neighbours.sum(2) / count[..., None]
        centred = (neighbours - centroid[:, :, None]) * valid[..., None]
    covariance = centred.transpose(-1, -2) @ centred / (count if lengths is None else count[..., None, None])
    smallest, trace = smallest_eigenvalue(covariance)
    variation = (3.0 * smallest / trace.clamp_min(1e-12)).float()[..., None]
    # the normals from the same neighbours (``ops.estimate_normals`` would search them again)
    normals = orient_normals(points, torch.ops.pcseg.normals_from_neighbors(points, idx))
    if inwards is not None:
        normals = torch.where(((normals * inwards).sum(-1, keepdim=True) < 0), -normals, normals)
    return torch.cat([normals, variation, 10.0 * (points - centroid)], dim=-1)


def _neighbourhood_shape(points: torch.Tensor, k: int) -> torch.Tensor:
    """Seven shape channels of each point's ``k`` nearest neighbours (``multiscale_features``).

    Queried ``MULTISCALE_CHUNK`` points at a time, so that a map of tens of millions of points
    needs memory for one chunk's neighbourhoods, not for all of them.

    Args:
        points: (N, 3) float32 coordinates in metres, N >= 1.
        k: neighbours per point (at most N are used).

    Returns:
        shape: (N, 7) float32: linearity, planarity and scattering of the neighbourhood
        covariance's descending eigenvalues ``(l1 - l2) / l1``, ``(l2 - l3) / l1``, ``l3 / l1``;
        the vertical share of its variance (1 for a pole, 0.5 for a wall, 0 for the road); the
        point's height above and below the neighbourhood's lowest and highest point (metres);
        and the log of the neighbourhood's spread (half the log of the variance sum).
    """
    k = min(k, points.shape[0])
    return torch.cat(
        [
            _shape_of(points[start : start + MULTISCALE_CHUNK], points, k)
            for start in range(0, points.shape[0], MULTISCALE_CHUNK)
        ]
    )


def _shape_of(query: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    """``_neighbourhood_shape`` of the ``query`` (M, 3) points among ``points`` (N, 3), k <= N."""
    _, idx = ops.knn(query[None], points[None], k)
    neighbours = ops.group_points(points[None], idx)[0]  # (M, k, 3)
    centred = neighbours - neighbours.mean(1, keepdim=True)
    covariance = centred.transpose(1, 2) @ centred / k
    values = eigenvalues(covariance)
    trace = values.sum(-1)
    largest = values[:, 0].clamp_min(1e-12)
    z = neighbours[..., 2]
    return torch.stack(
        [
            (values[:, 0] - values[:, 1]) / largest,
            (values[:, 1] - values[:, 2]) / largest,
            values[:, 2] / largest,
            covariance[:, 2, 2].double() / trace.clamp_min(1e-12),
            (query[:, 2] - z.amin(1)).double(),
            (z.amax(1) - query[:, 2]).double(),
            0.5 * torch.log(trace.clamp_min(1e-8)),
        ],
        1,
    ).float()


def _voxel_centroids(points: torch.Tensor, size: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The centroids of the occupied cells of a ``size`` metre grid.

    Returns:
        centroids: (V, 3) float32; cell: (N,) int64 each point's row of ``centroids``;
        counts: (V,) int64 points per cell.
    """
    voxels = ops.voxelize(points, size)
    return (voxels.point_sums / voxels.counts[:, None]).float(), voxels.inverse, voxels.counts


def _height_above_ground(
    points: torch.Tensor, centroids: torch.Tensor, counts: torch.Tensor, cell: float
) -> torch.Tensor:
    """Each point's height above the lowest surface of its ``cell`` metre xy square.

    The lowest surface is the lowest centroid of a fine voxel holding two points or more, so
    one spurious return below the road (real scans have them) does not lower a whole square;
    a square with no such voxel falls back to its lowest point.
    """
    low_corner = points[:, :2].min(0).values
    point_square = torch.floor((points[:, :2] - low_corner) / cell).long()
    voxel_square = torch.floor((centroids[:, :2] - low_corner) / cell).long().clamp_min(0)
    width = int(max(point_square[:, 1].max(), voxel_square[:, 1].max())) + 1
    point_flat = point_square[:, 0] * width + point_square[:, 1]
    voxel_flat = voxel_square[:, 0] * width + voxel_square[:, 1]
    square = torch.cat([point_flat, voxel_flat])
    if int(square.max()) >= 4 * len(square):
        # a map kilometres wide: number the occupied squares only, not the millions of empty ones
        _, square = torch.unique(square, return_inverse=True)
    point_flat, voxel_flat = square[: len(points)], square[len(points) :]
    size = int(square.max()) + 1
    lowest_point = torch.full((size,), math.inf).scatter_reduce(0, point_flat, points[:, 2], "amin")
    dense = counts >= 2
    lowest_surface = torch.full((size,), math.inf).scatter_reduce(0, voxel_flat[dense], centroids[dense, 2], "amin")
    ground = torch.where(torch.isfinite(lowest_surface), lowest_surface, lowest_point)
    return points[:, 2] - ground[point_flat]


def multiscale_features(points: np.ndarray) -> np.ndarray:
    """The shape of a whole cloud around every point at four scales, and its height above ground.

    The classical features of LiDAR classification (Weinmann et al. 2015; Hackel et al. 2016,
    whose scale pyramid this follows): at each scale the ``MULTISCALE_NEIGHBOURS`` nearest
    neighbours, found among the cloud's points and among the centroids of voxel grids of
    ``MULTISCALE_VOXELS`` metres, describe the neighbourhood (``_neighbourhood_shape``); a
    point takes the values of its voxel at the coarser scales. They are computed over the
    whole cloud before blocks are cut: a block's few hundred sampled points cannot tell a
    pole from a trunk or a person, the full-density cloud around them can. Invariant to
    translation; the finest scale and the heights also to turns about z, while the coarser
    scales sit on axis-aligned grids and change a little with the cloud's heading.

    Args:
        points: (N, 3) float coordinates in metres, z up, any origin (float64 map frames keep
            their precision: the cloud's lowest corner is removed first).

    Returns:
        features: (N, MULTISCALE_CHANNELS) float32: 7 shape channels per scale, finest first,
        then the height above the lowest surface of the ``GROUND_CELLS`` metre xy squares
        around (metres, clipped to [-2, 10]).

    Raises:
        ValueError: when ``points`` is not (N, 3) or holds NaN or inf.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be an (N, 3) array, got shape {points.shape}")
    if len(points) == 0:
        return np.zeros((0, MULTISCALE_CHANNELS), np.float32)
    if not np.isfinite(points).all():
        raise ValueError("points contain NaN or inf; drop them before the multiscale features")
    local = torch.from_numpy(np.asarray(points - points.min(0), dtype=np.float32))
    parts = [_neighbourhood_shape(local, MULTISCALE_NEIGHBOURS)]
    finest = None
    for size in MULTISCALE_VOXELS:
        centroids, cell, counts = _voxel_centroids(local, size)
        if finest is None:
            finest = (centroids, counts)
        parts.append(_neighbourhood_shape(centroids, MULTISCALE_NEIGHBOURS)[cell])
    for square in GROUND_CELLS:
        parts.append(_height_above_ground(local, *finest, square).clamp(-2.0, 10.0)[:, None])
    return torch.cat(parts, 1).numpy()


def block_inputs(
    block_features: torch.Tensor, data: DataConfig, lengths: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch of blocks' PointNet features -> the model's points and features.

    Args:
        block_features: (B, P, 9) float32 (``pcseg.data.blocks``: block xyz, rgb, room xyz), or
            (B, P, 14) with the LiDAR columns intensity, range, and z, x, y in the sensor frame
            (metres).
        data: the data section of the config (which channels the model sees).
        lengths: (B,) int64 real points per block of a padded batch, or None (all real).

    Returns:
        points: (B, P, 3) float32 block coordinates (a LiDAR model's z: the sensor-frame height).
        features: (B, P, input_channels(data)) float32 in the order rgb, room xyz, intensity,
        range (``RANGE_SCALE``), geometry; None when there are no channels. Normals point into
        the room: each is flipped to a non-negative component along the direction from its point
        to the room's centre in room-normalised coordinates, which depends on the point's place
        in the room only, so every block of a room agrees (floors up, ceilings down, walls into
        the room). A LiDAR model's normals face the sensor instead (the sensor sits at the
        origin of the points' frame: roads up, walls towards the street).

    Raises:
        ValueError: when the config asks for intensity or range and the blocks have no LiDAR columns.
    """
    lidar = data.lidar
    if lidar and block_features.shape[-1] < 14:
        raise ValueError(
            "the model takes intensity / range (data.use_intensity, data.use_range) but the blocks have "
            "no LiDAR columns: the room needs 'intensity', 'range', 'height', 'sensor_x' and 'sensor_y' "
            "(pcseg.inputs.lidar_room_fields)"
        )
    points = block_features[..., 0:3].float()
    if lidar:
        points = torch.cat([points[..., :2], block_features[..., 11:12].float()], -1)
    points = points.contiguous()
    parts = []
    if data.use_color:
        parts.append(block_features[..., 3:6].float())
    if data.room_coords:
        parts.append(block_features[..., 6:9].float())
    if data.use_intensity:
        parts.append(block_features[..., 9:10].float())
    if data.use_range:
        parts.append(block_features[..., 10:11].float() / RANGE_SCALE)
    if data.geometric_features:
        if lidar:
            # towards the sensor: minus the point's sensor-frame position (channels 12, 13, 11)
            inwards = -torch.cat([block_features[..., 12:14], block_features[..., 11:12]], -1).float()
        else:
            # towards the room's centre, in room-normalised coordinates (channels 6-8)
            inwards = 0.5 - block_features[..., 6:9].float()
        parts.append(geometric_features(points, data.neighbours, lengths, inwards=inwards))
    if data.multiscale_features:
        start = 14 if lidar else 9
        if block_features.shape[-1] < start + MULTISCALE_CHANNELS:
            raise ValueError(
                "the model takes multiscale features (data.multiscale_features) but the blocks have none: the "
                "room needs 'multiscale' (pcseg.inputs.room_fields)"
            )
        parts.append(block_features[..., start : start + MULTISCALE_CHANNELS].float())
    return points, (torch.cat(parts, -1).contiguous() if parts else None)


def input_normals(features: torch.Tensor | None, data: DataConfig) -> torch.Tensor | None:
    """The normals a model is given: the normal channels of the geometric features.

    Args:
        features: (B, P, input_channels(data)) float32 from ``block_inputs``, or None.
        data: the data section of the config.

    Returns:
        normals: (B, P, 3) float32 view of the features, or None without geometric features
        (a model that needs normals then estimates its own).
    """
    if features is None or not data.geometric_features:
        return None
    g = _geometry_offset(data)
    return features[..., g : g + 3]


def augment_lidar_inputs(
    points: torch.Tensor,
    features: torch.Tensor | None,
    data: DataConfig,
    gain_draw: torch.Tensor,
    shift_draw: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scales each block's intensity and moves its heights (LiDAR training augmentation).

    A model trained on one sensor's intensities and mount height otherwise learns their exact
    values: another sensor's calibration, or the same sensor on another car, moves every
    class across its boundaries. Each block gets one gain ``(1 + a) ** (2 u - 1)`` (``a =
    data.augment_intensity``) on its intensity, clipped to [0, 1], and one shift
    ``h (2 v - 1)`` metres (``h = data.augment_height``) of its z, the sensor-frame height.

    Args:
        points: (B, P, 3) float32 block coordinates (z: the sensor-frame height).
        features: (B, P, C) float32 from ``block_inputs``, or None.
        data: the data section of the config.
        gain_draw: (B,) float32 uniform draws u in [0, 1).
        shift_draw: (B,) float32 uniform draws v in [0, 1).

    Returns:
        points: (B, P, 3) float32, z shifted when ``augment_height`` > 0.
        features: (B, P, C) float32, intensity scaled when ``augment_intensity`` > 0.
    """
    if data.augment_height > 0:
        shift = data.augment_height * (2.0 * shift_draw - 1.0)
        points = torch.cat([points[..., :2], points[..., 2:3] + shift[:, None, None]], -1)
    if data.augment_intensity > 0 and features is not None and data.use_intensity:
        gain = (1.0 + data.augment_intensity) ** (2.0 * gain_draw - 1.0)
        at = _intensity_offset(data)
        scaled = (features[..., at : at + 1] * gain[:, None, None]).clamp(0.0, 1.0)
        features = torch.cat([features[..., :at], scaled, features[..., at + 1 :]], -1)
    return points, features


def rotate_inputs(
    points: torch.Tensor, features: torch.Tensor | None, data: DataConfig, angles: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rotates blocks about the z axis (training augmentation).

    The xy of the points and, where present, of the normals and the centroid offsets turn (they
    are vectors); the other channels do not depend on the orientation.

    Args:
        points: (B, P, 3) float32 coordinates.
        features: (B, P, C) float32 from ``block_inputs``, or None.
        data: the data section of the config (where the geometry channels are).
        angles: (B,) float32 angles in radians.

    Returns:
        points: (B, P, 3) float32 rotated coordinates.
        features: (B, P, C) float32 with the vector channels rotated, or None.
    """
    c, s = torch.cos(angles)[:, None], torch.sin(angles)[:, None]

    def rot(v):
        x, y = v[..., 0], v[..., 1]
        return torch.stack([c * x - s * y, s * x + c * y, v[..., 2]], -1)

    points = rot(points)
    if features is not None and data.geometric_features:
        g = _geometry_offset(data)
        features = torch.cat(
            [
                features[..., :g],
                rot(features[..., g : g + 3]),
                features[..., g + 3 : g + 4],
                rot(features[..., g + 4 : g + 7]),
                features[..., g + 7 :],
            ],
            -1,
        )
    return points, features
