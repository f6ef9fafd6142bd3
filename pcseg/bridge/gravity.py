"""Gravity alignment: the rotation that turns a tilted sensor's cloud z-up.

`Segmenter` models are trained on z-up clouds (the floor or road horizontal); a tilted
LiDAR or a hand-held RGB-D camera gives clouds that are not. The up direction comes from an
IMU (the accelerometer at rest measures the reaction to gravity, pointing up) or, without
one, from the dominant ground plane of the cloud (RANSAC among the planes near the expected
up direction, the lowest well-supported one: a floor, not a table top or a ceiling).
"""

from __future__ import annotations

import numpy as np

from pcseg.bridge.checks import as_numpy

__all__ = ["gravity_alignment", "rotation_between"]


def rotation_between(source, target) -> np.ndarray:
    """(3, 3) float64 the smallest rotation taking direction `source` to direction `target`.

    Args:
        source: (3,) non-zero vector.
        target: (3,) non-zero vector.

    Returns:
        rotation: (3, 3) float64 with rotation @ source / |source| = target / |target|.
    """
    a = np.asarray(source, dtype=np.float64) / np.linalg.norm(source)
    b = np.asarray(target, dtype=np.float64) / np.linalg.norm(target)
    axis = np.cross(a, b)
    sin, cos = np.linalg.norm(axis), float(np.dot(a, b))
    if sin < 1e-12:
        if cos > 0:
            return np.eye(3)
        # Opposite directions: half a turn about any axis perpendicular to a.
        perpendicular = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        perpendicular /= np.linalg.norm(perpendicular)
        return 2 * np.outer(perpendicular, perpendicular) - np.eye(3)
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + skew + skew @ skew * ((1 - cos) / sin**2)


def gravity_alignment(
    *,
    imu_acceleration=None,
    points=None,
    up_hint=(0.0, 0.0, 1.0),
    max_tilt_degrees: float = 30.0,
    distance_threshold: float = 0.05,
    num_hypotheses: int = 512,
    max_points: int = 20000,
    seed: int = 0,
) -> np.ndarray:
    """`T_up_from_sensor`: the rotation that makes up +z, from an IMU or the ground plane.

    Give exactly one of imu_acceleration and points. The rotation is the smallest one
    taking the measured up direction to +z (no yaw is added); the translation is zero.
    Apply it to the points, and compose it into poses (`T_world_from_up @ T_up_from_sensor`).

    Args:
        imu_acceleration: (3,) accelerometer reading of a sensor at rest, in the sensor
            frame (ROS `sensor_msgs/Imu.linear_acceleration`: +9.81 m/s^2 pointing up,
            away from the ground).
        points: (N, 3) float sensor-frame points that show the ground (a floor or road).
        up_hint: (3,) the sensor's nominal up direction: (0, 0, 1) for a LiDAR,
            (0, -1, 0) for a camera (x right, y down, z forward).
        max_tilt_degrees: largest angle between up_hint and the true up (planes tilted
            more are walls, not ground).
        distance_threshold: metres, a point's distance to be an inlier of a plane.
        num_hypotheses: RANSAC plane hypotheses.
        max_points: the cloud is randomly subsampled to this many points.
        seed: the RANSAC random seed (the result is deterministic).

    Returns:
        T_up_from_sensor: (4, 4) float64.

    Raises:
        ValueError: when neither or both sources are given, on a zero or non-finite IMU
            vector, points that are not (N, 3) with N >= 3, or a cloud with no plane
            within max_tilt_degrees of up_hint.
    """
    if (imu_acceleration is None) == (points is None):
        raise ValueError("give exactly one of imu_acceleration (3,) and points (N, 3)")
    hint = np.asarray(up_hint, dtype=np.float64)
    if hint.shape != (3,) or not np.linalg.norm(hint) > 0:
        raise ValueError(f"up_hint must be a non-zero (3,) vector, got {up_hint!r}")
    hint = hint / np.linalg.norm(hint)
    if imu_acceleration is not None:
        up = as_numpy(imu_acceleration, "imu_acceleration").astype(np.float64)
        if up.shape != (3,) or not np.all(np.isfinite(up)) or not np.linalg.norm(up) > 0:
            raise ValueError(f"imu_acceleration must be a finite non-zero (3,) vector, got {up!r}")
    else:
        up = _ground_normal(
            as_numpy(points, "points"), hint, max_tilt_degrees, distance_threshold, num_hypotheses, max_points, seed
        )
    pose = np.eye(4)
    pose[:3, :3] = rotation_between(up, [0.0, 0.0, 1.0])
    return pose


def _ground_normal(points, hint, max_tilt_degrees, threshold, num_hypotheses, max_points, seed) -> np.ndarray:
    """(3,) unit normal, pointing along hint, of the cloud's dominant ground plane."""
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 3:
        raise ValueError(f"points must be (N, 3) with N >= 3, got shape {points.shape}")
    points = points[np.all(np.isfinite(points), axis=1)].astype(np.float64)
    rng = np.random.default_rng(seed)
    if len(points) > max_points:
        points = points[rng.choice(len(points), max_points, replace=False)]
    triples = points[rng.integers(0, len(points), size=(num_hypotheses, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    usable = lengths > 1e-9
    normals = normals[usable] / lengths[usable, None]
    normals *= np.sign(normals @ hint)[:, None]  # orient along the hint
    offsets = -np.sum(normals * triples[usable, 0], axis=1)
    upright = normals @ hint >= np.cos(np.radians(max_tilt_degrees))
    normals, offsets = normals[upright], offsets[upright]
    if len(normals) == 0:
        raise ValueError(f"no plane within {max_tilt_degrees} degrees of up_hint {hint.tolist()} in the points")
    heights = points @ normals.T + offsets  # (N, H) signed height above each plane
    inliers = np.abs(heights) < threshold
    support = inliers.sum(axis=0)
    # The ground has (almost) nothing below it: a table top or a ceiling has the floor.
    below = (heights < -3 * threshold).mean(axis=0)
    score = np.where(below < 0.05, support, 0)
    best = int(np.argmax(score))
    if score[best] < 3:
        raise ValueError("no ground plane found in the points (no upright plane with the cloud above it)")
    # Refine by a least-squares fit (SVD) to the best plane's inliers, twice.
    normal = normals[best]
    selected = points[inliers[:, best]]
    for _ in range(2):
        centre = selected.mean(axis=0)
        normal = np.linalg.svd(selected - centre, full_matrices=False)[2][2]
        normal *= np.sign(normal @ hint)
        selected = points[np.abs((points - centre) @ normal) < threshold]
    return normal
