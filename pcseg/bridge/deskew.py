"""De-skewing of a moving LiDAR sweep: each point in the world frame at its own capture time.

A spinning LiDAR takes a sweep's points over its rotation (0.1 s at 10 Hz), and reports
each in the sensor frame of its own instant. On a vehicle at 10 m/s the sensor moves 1 m
during a sweep, so reading the whole sweep in one pose smears the scene by up to that much.
Given the sensor poses at the sweep's start and end and each point's timestamp, the pose at
every point's instant is interpolated (translation linearly, rotation along the geodesic,
i.e. slerp) and the point mapped through it.
"""

from __future__ import annotations

import numpy as np

from pcseg.bridge.checks import as_numpy, check_pose

__all__ = ["deskew_points", "interpolate_pose"]


def _rotation_vector(rotation: np.ndarray) -> np.ndarray:
    """(3,) axis * angle of a 3x3 rotation matrix."""
    from scipy.spatial.transform import Rotation  # lazy: scipy is heavy to import

    return Rotation.from_matrix(rotation).as_rotvec()


def _rotate(points: np.ndarray, rotation_vectors: np.ndarray) -> np.ndarray:
    """(N, 3) points rotated by (N, 3) axis-angle vectors (Rodrigues' formula, per point)."""
    angle = np.linalg.norm(rotation_vectors, axis=1, keepdims=True)
    axis = np.divide(rotation_vectors, angle, out=np.zeros_like(rotation_vectors), where=angle > 0)
    cos, sin = np.cos(angle), np.sin(angle)
    along = np.sum(axis * points, axis=1, keepdims=True)
    return points * cos + np.cross(axis, points) * sin + axis * along * (1 - cos)


def interpolate_pose(pose_start, pose_end, fraction: float) -> np.ndarray:
    """The pose a `fraction` of the way from `pose_start` to `pose_end`.

    Args:
        pose_start: (4, 4) T_world_from_sensor at fraction 0.
        pose_end: (4, 4) T_world_from_sensor at fraction 1.
        fraction: 0 at the start, 1 at the end (outside [0, 1] extrapolates).

    Returns:
        pose: (4, 4) float64 T_world_from_sensor.
    """
    start = check_pose(pose_start, "pose_start").numpy()
    end = check_pose(pose_end, "pose_end").numpy()
    relative = _rotation_vector(start[:3, :3].T @ end[:3, :3])
    pose = np.eye(4)
    pose[:3, :3] = start[:3, :3] @ _rotate(np.eye(3), np.tile(relative * fraction, (3, 1))).T
    pose[:3, 3] = start[:3, 3] + fraction * (end[:3, 3] - start[:3, 3])
    return pose


def deskew_points(points, timestamps, pose_start, pose_end, start_time: float, end_time: float) -> np.ndarray:
    """World positions of a sweep's points, each through the pose at its own timestamp.

    Args:
        points: (N, 3) float points, each in the sensor frame at its own capture time.
        timestamps: (N,) float seconds, the capture time of each point (same clock as
            start_time and end_time).
        pose_start: (4, 4) T_world_from_sensor at start_time.
        pose_end: (4, 4) T_world_from_sensor at end_time.
        start_time: seconds, when the sweep started.
        end_time: seconds, when it ended (> start_time).

    Returns:
        world: (N, 3) float64 world points.

    Raises:
        ValueError: on points that are not (N, 3), timestamps that are not (N,) finite
            numbers, end_time <= start_time, or bad poses.
    """
    points = as_numpy(points, "points").astype(np.float64, copy=False)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {points.shape}")
    timestamps = as_numpy(timestamps, "timestamps").astype(np.float64, copy=False)
    if timestamps.shape != (len(points),):
        raise ValueError(f"timestamps must be (N,) with N={len(points)} (one per point), got shape {timestamps.shape}")
    if not np.all(np.isfinite(timestamps)):
        raise ValueError("timestamps must be finite")
    if not end_time > start_time:
        raise ValueError(f"end_time must be later than start_time, got {start_time} .. {end_time}")
    start = check_pose(pose_start, "pose_start").numpy()
    end = check_pose(pose_end, "pose_end").numpy()
    fraction = ((timestamps - start_time) / (end_time - start_time))[:, None]
    relative = _rotation_vector(start[:3, :3].T @ end[:3, :3])
    # p_world = R_start @ R_rel(s) @ p + t(s), t(s) linear in s.
    rotated = _rotate(points, fraction * relative)
    # Column by column, not a (N, 3) @ (3, 3) BLAS call (whose threads stall on a busy machine).
    world = rotated[:, :1] * start[:3, 0] + rotated[:, 1:2] * start[:3, 1] + rotated[:, 2:] * start[:3, 2]
    return world + start[:3, 3] + fraction * (end[:3, 3] - start[:3, 3])
