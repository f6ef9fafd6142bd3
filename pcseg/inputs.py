"""What a model eats: the per-point input channels a config asks for, and how they are made.

A block's 9 PointNet features (``pcseg.data.blocks``: block xyz, rgb, room-normalised xyz)
become the model's ``points (B, P, 3)`` and ``features (B, P, C)``, ``C = input_channels(data)``,
in the order rgb (``data.use_color``), room xyz (``data.room_coords``), local geometry
(``data.geometric_features``: normal, surface variation, offset to the neighbourhood
centroid). Where geometry is on, its normal channels are also the model's ``normals``
(``input_normals``, facing the room's interior: ``block_inputs``), so a model that orients by
normals (A-CNN) uses the same ones it sees as features; every model takes them in its one
forward signature (``pcseg.models``).

The trainer, the validation pass and the predictor all build their inputs here, so training
and inference cannot drift apart.
"""
from __future__ import annotations

import torch

from pcseg import ops
from pcseg.config import DataConfig
from pcseg.ops.estimate_normals import orient_normals

__all__ = ["input_channels", "geometric_features", "block_inputs", "input_normals", "rotate_inputs"]

# channels of geometric_features: normal (3), surface variation (1), offset to the centroid (3)
GEOMETRY_CHANNELS = 7


def input_channels(data: DataConfig) -> int:
    """The per-point feature channels the model sees besides xyz.

    Args:
        data: the data section of the config.

    Returns:
        channels: 3 for rgb, 3 for room xyz and 7 for the local geometry, where each is on.
    """
    return _geometry_offset(data) + GEOMETRY_CHANNELS * data.geometric_features


def _geometry_offset(data: DataConfig) -> int:
    """Where the geometry channels start within the features."""
    return 3 * data.use_color + 3 * data.room_coords


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
    eigenvalues = torch.linalg.eigvalsh(covariance.double()).float()  # ascending
    variation = 3.0 * eigenvalues[..., :1] / eigenvalues.sum(-1, keepdim=True).clamp_min(1e-12)
    # the normals from the same neighbours (``ops.estimate_normals`` would search them again)
    normals = orient_normals(points, torch.ops.pcseg.normals_from_neighbors(points, idx))
    if inwards is not None:
        normals = torch.where(((normals * inwards).sum(-1, keepdim=True) < 0), -normals, normals)
    return torch.cat([normals, variation, 10.0 * (points - centroid)], dim=-1)


def block_inputs(block_features: torch.Tensor, data: DataConfig,
                 lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch of blocks' PointNet features -> the model's points and features.

    Args:
        block_features: (B, P, 9) float32 (``pcseg.data.blocks``: block xyz, rgb, room xyz).
        data: the data section of the config (which channels the model sees).
        lengths: (B,) int64 real points per block of a padded batch, or None (all real).

    Returns:
        points: (B, P, 3) float32 block coordinates.
        features: (B, P, input_channels(data)) float32 in the order rgb, room xyz, geometry;
        None when there are no channels. Normals point into the room: each is flipped to a
        non-negative component along the direction from its point to the room's centre in
        room-normalised coordinates, which depends on the point's place in the room only, so
        every block of a room agrees (floors up, ceilings down, walls into the room).
    """
    points = block_features[..., 0:3].float().contiguous()
    parts = []
    if data.use_color:
        parts.append(block_features[..., 3:6].float())
    if data.room_coords:
        parts.append(block_features[..., 6:9].float())
    if data.geometric_features:
        # towards the room's centre, in room-normalised coordinates (channels 6-8)
        inwards = 0.5 - block_features[..., 6:9].float()
        parts.append(geometric_features(points, data.neighbours, lengths, inwards=inwards))
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
    return features[..., g:g + 3]


def rotate_inputs(points: torch.Tensor, features: torch.Tensor | None, data: DataConfig,
                  angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
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
        features = torch.cat([features[..., :g], rot(features[..., g:g + 3]), features[..., g + 3:g + 4],
                              rot(features[..., g + 4:g + 7])], -1)
    return points, features
