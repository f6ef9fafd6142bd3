"""A ray-casting model of a 64-beam spinning LiDAR (Velodyne HDL-64E, as on the KITTI car)
and a writer of scans in the SemanticKITTI layout.

Each of the 64 lasers fires once per azimuth step while the head spins; every ray is cast
against the analytic primitives of an `pcseg.data.outdoor.OutdoorScene` (ground plane,
boxes, vertical cylinders, ellipsoids) in vectorised numpy. The model adds what a real
sweep shows: range noise, returns lost on dark or grazing surfaces (received power below
the detection threshold), intensity from the surface's reflectivity and incidence angle,
rays passing through foliage and fences, and the vehicle's motion during the sweep (each
point is expressed in the sensor frame at its own firing time, so a scan taken while
driving has the seam a real one has). Everything is deterministic in the seed.

    scene = build_street(seed=3)
    scan = simulate_scan(scene, seed=3)                 # coord, remission, semantic, label...
    write_semantickitti_sequence(root, 0, [scan], [scan["pose"]])

Sensor frame: x forward, y left, z up (KITTI's velodyne frame), origin at the optical centre
mounted `LidarSpec.height` metres above the road.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcseg.data.outdoor import (
    BOX,
    CYLINDER,
    ELLIPSOID,
    MATERIAL_FACADE,
    MATERIAL_GLASS,
    SEMANTIC_KITTI_COLORS_BGR,
    SEMANTIC_KITTI_LABELS,
    SEMANTIC_KITTI_LEARNING_MAP,
    SEMANTIC_KITTI_LEARNING_MAP_INV,
    VEGETATION,
    OutdoorScene,
    build_street,
)
from pcseg.utils.atomic import atomic_write_file


def _hdl64e_elevations() -> np.ndarray:
    # Nominal angles, not a unit's calibration: Velodyne specifies a 26.8 degree vertical field
    # of view (+2 to -24.8 degrees) for the HDL-64E, with an upper block of 32 lasers about 1/3
    # degree apart and a lower block of 32 about 1/2 degree apart (the S2 user's manual,
    # "Specifications" and "Laser and detector arrangement"). The exact per-laser angles differ
    # from unit to unit (each ships its own db.xml calibration); the test against the real
    # SemanticKITTI scan checks that the ring spacing of this model agrees with it.
    upper = 2.0 - np.arange(32) / 3.0
    lower = -8.83 - np.arange(32) / 2.0
    return np.concatenate([upper, lower])


@dataclass(frozen=True)
class LidarSpec:
    """A spinning multi-beam LiDAR.

    elevations_deg: (L,) laser elevations in degrees, highest first; azimuth_steps: firings
    per laser per revolution; rate_hz: revolutions per second; min_range / max_range: metres;
    range_noise: 1-sigma range error in metres; detection_threshold: the smallest
    `reflectivity * cos(incidence) / range**2` that returns (the datasheet's "50 m on 10 %
    pavement, 120 m on 80 % cars and foliage" both give about 4e-5 to 6e-5);
    detection_spread: log-normal spread of that threshold (shot noise, sun); dropout: the
    chance any return is lost; height: mount height above the road in metres.
    """

    elevations_deg: np.ndarray = field(default_factory=_hdl64e_elevations)
    # ~1.3 million points per second at 10 Hz (HDL-64E S2 datasheet): 2083 firings per laser
    azimuth_steps: int = 2083
    rate_hz: float = 10.0
    min_range: float = 0.9
    max_range: float = 120.0
    range_noise: float = 0.02
    detection_threshold: float = 5e-5
    detection_spread: float = 0.6
    dropout: float = 0.01
    height: float = 1.73
    # the car the sensor is mounted on, in the sensor frame: (centre xyz, half extents xyz)
    # per box, a roof 0.4 m below the optical centre and a body 0.95 m below it; rays
    # that meet it return nothing (KITTI drops the self-returns), which leaves the blind
    # circle of a few metres that real scans show around the car
    vehicle: tuple = (((0.0, 0.0, -0.7), (0.9, 0.8, 0.3)), ((0.0, 0.0, -1.3), (2.3, 0.9, 0.35)))

    @property
    def num_lasers(self) -> int:
        return len(self.elevations_deg)


HDL64E = LidarSpec()

_EPS = 1e-9
# raw SemanticKITTI id -> learning class, as an array to index with
_LEARNING_TABLE = np.zeros(max(SEMANTIC_KITTI_LEARNING_MAP) + 1, dtype=np.int64)
_LEARNING_TABLE[list(SEMANTIC_KITTI_LEARNING_MAP)] = list(SEMANTIC_KITTI_LEARNING_MAP.values())


# ----------------------------------------------------------------------------- culling
def _footprint_corners(center: np.ndarray, half: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(P, 4, 2) corners of every primitive's footprint (its oriented xy bounding box)."""
    hx, hy = half[:, 0], half[:, 1]
    local = np.stack([np.stack([sx * hx, sy * hy], -1) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))], 1)
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], 1)  # (P, 2, 2)
    return np.einsum("pij,pkj->pki", rot, local) + center[:, None, :2]


def _ray_pairs(
    scene: OutdoorScene,
    spec: LidarSpec,
    center: np.ndarray,
    origin_xy: np.ndarray,
    z: float,
    margin: np.ndarray,
    elevations: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate (laser, column) rays of every primitive: the rays whose azimuth and
    elevation fall in the primitive's footprint seen from the sensor (grown by `margin`
    (P,) metres, the motion of sensor and object during the sweep).

    Args:
        scene: the primitives; center: (P, 3) float64 their centres at the sweep's start;
        spec: the sensor; origin_xy: (2,) the sensor at the sweep's start; z: its height;
        margin: (P,) float64 metres; elevations: (L,) float64 radians, highest first.

    Returns:
        prim: (M,) int64 primitive indices and ray: (M,) int64 `laser * azimuth_steps + column`.
    """
    n_col = spec.azimuth_steps
    corners = _footprint_corners(center, scene.half, scene.yaw) - origin_xy
    centre = center[:, :2] - origin_xy
    centre_az = np.arctan2(centre[:, 1], centre[:, 0])
    corner_az = np.arctan2(corners[..., 1], corners[..., 0])
    rel = np.mod(corner_az - centre_az[:, None] + np.pi, 2 * np.pi) - np.pi
    dist_c = np.linalg.norm(corners, axis=-1)
    # horizontal distance from the sensor to the footprint (0 inside it)
    local = _to_local_xy(-centre, scene.yaw)
    outside = np.maximum(np.abs(local) - scene.half[:, :2], 0.0)
    near = np.linalg.norm(outside, axis=-1) - margin
    far = dist_c.max(1) + margin
    widen = np.arcsin(np.clip(margin / np.maximum(near, _EPS), 0.0, 1.0))
    az_lo = centre_az + rel.min(1) - widen
    az_hi = centre_az + rel.max(1) + widen
    everywhere = near <= 0.5
    z_lo = center[:, 2] - scene.half[:, 2] - z
    z_hi = center[:, 2] + scene.half[:, 2] - z
    near_c = np.maximum(near, 0.05)
    el_hi = np.where(z_hi > 0, np.arctan2(z_hi, near_c), np.arctan2(z_hi, far))
    el_lo = np.where(z_lo < 0, np.arctan2(z_lo, near_c), np.arctan2(z_lo, far))
    step = 2 * np.pi / n_col
    col_lo = np.floor((az_lo + np.pi) / step).astype(np.int64) - 1
    col_count = np.where(everywhere, n_col, np.minimum(np.ceil((az_hi - az_lo) / step).astype(np.int64) + 3, n_col))
    col_lo = np.where(everywhere, 0, col_lo)
    # elevations are sorted high to low: lasers [l0, l1) lie in [el_lo, el_hi]
    descending = -elevations
    l0 = np.searchsorted(descending, -el_hi - 1e-4, side="left")
    l1 = np.searchsorted(descending, -el_lo + 1e-4, side="right")
    prims, rays = [], []
    for p in np.flatnonzero((l1 > l0) & (near < spec.max_range)):
        cols = np.mod(col_lo[p] + np.arange(col_count[p]), n_col)
        lasers = np.arange(l0[p], l1[p])
        ray = (lasers[:, None] * n_col + cols[None, :]).ravel()
        rays.append(ray)
        prims.append(np.full(len(ray), p, dtype=np.int64))
    if not rays:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(prims), np.concatenate(rays)


def _to_local_xy(xy: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Rotates (M, 2) vectors by -yaw (M,): world -> a primitive's local frame."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * xy[:, 0] + s * xy[:, 1], -s * xy[:, 0] + c * xy[:, 1]], -1)


# ----------------------------------------------------------------------------- intersection
def _intersect(kind: int, q: np.ndarray, e: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry distance t (M,) (inf for a miss) and local normal (M, 3) of rays q + t e
    (local frame, (M, 3) each) with primitives of one kind of half extents (M, 3)."""
    if kind == BOX:
        inv = 1.0 / np.where(np.abs(e) < _EPS, _EPS, e)
        t1, t2 = (-half - q) * inv, (half - q) * inv
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        t_in, t_out = near.max(1), far.min(1)
        t = np.where((t_in <= t_out) & (t_in > _EPS), t_in, np.inf)
        axis = near.argmax(1)
        normal = np.zeros_like(q)
        normal[np.arange(len(q)), axis] = -np.sign(e[np.arange(len(q)), axis])
        return t, normal
    if kind == ELLIPSOID:
        qs, es = q / half, e / half
        a = (es * es).sum(1)
        b = (qs * es).sum(1)
        c = (qs * qs).sum(1) - 1.0
        disc = b * b - a * c
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        t = np.where((disc >= 0) & (t > _EPS) & (c > 0), t, np.inf)
        hit = q + np.where(np.isfinite(t), t, 0.0)[:, None] * e
        normal = hit / (half * half)
        return t, normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), _EPS)
    # vertical cylinder: side wall, then the cap the ray meets first
    r, hz = half[:, 0], half[:, 2]
    a = e[:, 0] ** 2 + e[:, 1] ** 2
    b = q[:, 0] * e[:, 0] + q[:, 1] * e[:, 1]
    c = q[:, 0] ** 2 + q[:, 1] ** 2 - r * r
    disc = b * b - a * c
    t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / np.maximum(a, _EPS)
    z_side = q[:, 2] + t_side * e[:, 2]
    t_side = np.where((disc >= 0) & (t_side > _EPS) & (np.abs(z_side) <= hz) & (c > 0), t_side, np.inf)
    cap_z = np.where(q[:, 2] > 0, hz, -hz)
    ez = np.where(np.abs(e[:, 2]) < _EPS, _EPS, e[:, 2])
    t_cap = (cap_z - q[:, 2]) / ez
    cap_xy = q[:, :2] + t_cap[:, None] * e[:, :2]
    t_cap = np.where((t_cap > _EPS) & ((cap_xy**2).sum(1) <= r * r) & (np.abs(q[:, 2]) > hz), t_cap, np.inf)
    on_side = t_side <= t_cap
    t = np.minimum(t_side, t_cap)
    hit = q + np.where(np.isfinite(t), t, 0.0)[:, None] * e
    normal = np.where(
        on_side[:, None],
        np.stack([hit[:, 0], hit[:, 1], np.zeros(len(q))], 1) / r[:, None],
        np.stack([np.zeros(len(q)), np.zeros(len(q)), np.sign(cap_z)], 1),
    )
    return t, normal


# ----------------------------------------------------------------------------- the scan
def _sensor_pose(scene: OutdoorScene, spec: LidarSpec, time: float, speed: float) -> np.ndarray:
    """T_world_from_sensor (4, 4) float64 at `time` seconds after the scene's start, the
    vehicle driving along +x at `speed` m/s from the scene's sensor spot."""
    pose = np.eye(4)
    pose[:3, 3] = [scene.sensor_xy[0] + speed * time, scene.sensor_xy[1], spec.height]
    return pose


def simulate_scan(
    scene: OutdoorScene, spec: LidarSpec = HDL64E, speed: float = 8.0, time: float = 0.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """Scans `scene` with one revolution of `spec`, deterministic in `seed`.

    Args:
        scene: a street from `pcseg.data.outdoor.build_street`.
        spec: the sensor (HDL64E: KITTI's Velodyne HDL-64E at 1.73 m).
        speed: the vehicle's speed along +x in m/s during and between sweeps.
        time: seconds since the scene's start when the sweep begins (moving objects and the
            vehicle have moved by then; consecutive scans of a sequence are 1 / rate_hz apart).
        seed: the random seed of noise, dropouts and porosity.

    Returns:
        scan: a dict with coord (N, 3) float32 (sensor frame at each point's firing time,
        metres), remission (N,) float32 in [0, 1], semantic (N,) int64 raw SemanticKITTI
        ids, label (N,) int64 learning-mapped classes 0..19, instance (N,) int64 (0 for
        stuff), ring (N,) int64 laser index (0 = highest), time (N,) float32 seconds into
        the sweep, pose (4, 4) float64 T_world_from_sensor at the sweep's start.
    """
    if spec.azimuth_steps < 1 or spec.rate_hz <= 0:
        raise ValueError(f"spec needs azimuth_steps >= 1 and rate_hz > 0, got {spec.azimuth_steps}, {spec.rate_hz}")
    rng = np.random.default_rng([seed, round(time * 1000)])
    rays = _fire(scene, spec, time, speed)
    hits = _cast(scene, spec, rays, rng)
    return _measure(scene, spec, rays, hits, rng)


@dataclass
class _Rays:
    """One revolution's rays, laser-major: direction (R, 3) float64 unit vectors (world
    axes, which the sensor's share while driving straight), origin (R, 3) float64 the
    sensor at each firing, time (R,) float64 seconds since the scene's start, start:
    T_world_from_sensor (4, 4) at the sweep's start, speed m/s."""

    direction: np.ndarray
    origin: np.ndarray
    time: np.ndarray
    start: np.ndarray
    speed: float

    @property
    def sweep_start(self) -> float:
        return float(self.time[0])


def _fire(scene: OutdoorScene, spec: LidarSpec, time: float, speed: float) -> _Rays:
    n_laser, n_col = spec.num_lasers, spec.azimuth_steps
    elevations = np.radians(np.asarray(spec.elevations_deg, dtype=np.float64))
    # the head starts facing backwards and turns counter-clockwise (increasing azimuth)
    azimuth = -np.pi + (np.arange(n_col) + 0.5) * (2 * np.pi / n_col)
    fire_time = np.arange(n_col) / n_col / spec.rate_hz
    cos_el = np.cos(elevations)
    direction = np.stack(
        [
            cos_el[:, None] * np.cos(azimuth)[None],
            cos_el[:, None] * np.sin(azimuth)[None],
            np.broadcast_to(np.sin(elevations)[:, None], (n_laser, n_col)),
        ],
        -1,
    ).reshape(-1, 3)
    ray_time = np.broadcast_to(time + fire_time[None], (n_laser, n_col)).ravel()
    start = _sensor_pose(scene, spec, time, speed)
    origin = np.broadcast_to(start[:3, 3], (len(direction), 3)).copy()
    origin[:, 0] += speed * (ray_time - time)
    return _Rays(direction, origin, ray_time, start, speed)


@dataclass
class _Hits:
    """The first surface along each ray: t (R,) float64 distance (inf: nothing, -1: the
    sensor's own car), prim (R,) int64 primitive (-1: the ground), normal (R, 3) world."""

    t: np.ndarray
    prim: np.ndarray
    normal: np.ndarray


def _cast(scene: OutdoorScene, spec: LidarSpec, rays: _Rays, rng: np.random.Generator, cull: bool = True) -> _Hits:
    """Casts every ray against the ground plane, the sensor's car and the primitives; with
    `cull=False` every ray meets every primitive (the reference the culling is tested against)."""
    direction, origin = rays.direction, rays.origin
    # ground plane z = 0
    down = direction[:, 2] < -_EPS
    best_t = np.where(down, -origin[:, 2] / np.where(down, direction[:, 2], -1.0), np.inf)
    best_prim = np.full(len(direction), -1, dtype=np.int64)
    best_normal = np.zeros((len(direction), 3))
    best_normal[:, 2] = 1.0
    for centre, half in spec.vehicle:
        t_car, _ = _intersect(
            BOX,
            -np.broadcast_to(np.asarray(centre, dtype=np.float64), direction.shape),
            direction,
            np.broadcast_to(np.asarray(half, dtype=np.float64), direction.shape),
        )
        best_t = np.where(t_car < best_t, -1.0, best_t)  # below min_range: no return
    if cull:
        period = 1.0 / spec.rate_hz
        margin = (abs(rays.speed) + np.linalg.norm(scene.velocity, axis=1)) * period + 0.05
        center = scene.center.copy()
        center[:, :2] += scene.velocity * rays.sweep_start
        elevations = np.radians(np.asarray(spec.elevations_deg, dtype=np.float64))
        prim, ray = _ray_pairs(scene, spec, center, rays.start[:2, 3], spec.height, margin, elevations)
    else:
        prim, ray = (g.ravel() for g in np.meshgrid(np.arange(len(scene)), np.arange(len(direction)), indexing="ij"))
    centre = scene.center[prim].copy()
    centre[:, :2] += scene.velocity[prim] * rays.time[ray, None]
    q = origin[ray] - centre
    q[:, :2] = _to_local_xy(q[:, :2], scene.yaw[prim])
    e = direction[ray].copy()
    e[:, :2] = _to_local_xy(e[:, :2], scene.yaw[prim])
    t = np.full(len(prim), np.inf)
    normal = np.zeros((len(prim), 3))
    for kind in (BOX, CYLINDER, ELLIPSOID):
        rows = scene.kind[prim] == kind
        t[rows], normal[rows] = _intersect(kind, q[rows], e[rows], scene.half[prim[rows]])
    # porous surfaces (foliage, wire fences, spokes) let some rays through; the ones that
    # return come from a little inside the crown
    porosity = scene.porosity[prim]
    porous = porosity > 0
    passed = rng.random(len(prim)) < porosity
    t = np.where(porous & passed, np.inf, t)
    t = np.where(porous & ~passed & (scene.label[prim] == VEGETATION), t + rng.exponential(0.15, len(prim)), t)
    hit = np.isfinite(t)
    prim, ray, t, normal = prim[hit], ray[hit], t[hit], normal[hit]
    order = np.lexsort((t, ray))
    prim, ray, t, normal = prim[order], ray[order], t[order], normal[order]
    first = np.ones(len(ray), dtype=bool)
    first[1:] = ray[1:] != ray[:-1]
    prim, ray, t, normal = prim[first], ray[first], t[first], normal[first]
    closer = t < best_t[ray]
    ray, prim, t, normal = ray[closer], prim[closer], t[closer], normal[closer]
    best_t[ray], best_prim[ray] = t, prim
    c, s = np.cos(scene.yaw[prim]), np.sin(scene.yaw[prim])
    best_normal[ray] = np.stack(
        [c * normal[:, 0] - s * normal[:, 1], s * normal[:, 0] + c * normal[:, 1], normal[:, 2]], 1
    )
    return _Hits(best_t, best_prim, best_normal)


def _measure(scene: OutdoorScene, spec: LidarSpec, rays: _Rays, hits: _Hits, rng: np.random.Generator) -> dict:
    """The sensor model on the first hits: labels, reflectivity, dropouts, intensity, noise."""
    n_col = spec.azimuth_steps
    valid = np.flatnonzero((hits.t >= spec.min_range) & (hits.t <= spec.max_range))
    t, prim, normal = hits.t[valid], hits.prim[valid], hits.normal[valid]
    direction = rays.direction[valid]
    world = rays.origin[valid] + t[:, None] * direction
    on_ground = prim < 0
    semantic = np.where(on_ground, 0, scene.label[np.maximum(prim, 0)])
    semantic[on_ground] = scene.layout.ground_labels(world[on_ground, 0], world[on_ground, 1])
    instance = np.where(on_ground, 0, scene.instance[np.maximum(prim, 0)])
    reflectivity = np.where(on_ground, 0.0, scene.reflectivity[np.maximum(prim, 0)])
    for raw, value in scene.layout.reflectivity.items():
        reflectivity[on_ground & (semantic == raw)] = value
    material = np.where(on_ground, 0, scene.material[np.maximum(prim, 0)])
    # facades: a grid of windows (glass returns little), one row per 3 m storey
    facade = material == MATERIAL_FACADE
    along = np.where(np.abs(normal[:, 0]) > 0.5, world[:, 1], world[:, 0])
    storey = np.mod(world[:, 2], 3.0)
    window = facade & (np.mod(along, 3.0) > 1.2) & (storey > 0.9) & (storey < 2.4)
    reflectivity[window] = 0.05
    reflectivity *= rng.lognormal(0.0, 0.2, len(valid))
    reflectivity = np.clip(reflectivity, 0.0, 1.0)
    cos_incidence = np.abs((normal * direction).sum(1))
    # rough surfaces scatter part of the light straight back, so the returned power falls
    # off more gently than the cosine at grazing incidence (enough for asphalt to return
    # from the 50 m the datasheet gives for pavement)
    apparent = reflectivity * (0.5 + 0.5 * cos_incidence)
    # returns whose received power falls below the (noisy) detection threshold are lost:
    # dark and grazing surfaces first, and more of them with range
    power = apparent / np.maximum(t, 1.0) ** 2
    threshold = spec.detection_threshold * rng.lognormal(0.0, spec.detection_spread, len(valid))
    glass = (material == MATERIAL_GLASS) | window
    keep = (power > threshold) & (rng.random(len(valid)) > spec.dropout) & ~(glass & (rng.random(len(valid)) < 0.6))
    # the receiver's gain control compresses the dynamic range, which the square root stands for
    remission = np.sqrt(apparent) + rng.normal(0.0, 0.02, len(valid))
    measured = t + rng.normal(0.0, spec.range_noise, len(valid))
    local = direction * measured[:, None]
    # stored ring by ring, each ring from straight ahead counter-clockwise, as KITTI's files
    # are (tools recover the rings from where the azimuth crosses zero)
    column = valid % n_col
    order = np.flatnonzero(keep)
    order = order[np.lexsort(((column[order] - n_col // 2) % n_col, valid[order] // n_col))]
    return {
        "coord": local[order].astype(np.float32),
        "remission": np.clip(remission[order], 0.0, 0.99).astype(np.float32),
        "semantic": semantic[order].astype(np.int64),
        "label": _LEARNING_TABLE[semantic[order]],
        "instance": instance[order].astype(np.int64),
        "ring": (valid[order] // n_col).astype(np.int64),
        "time": (rays.time[valid[order]] - rays.sweep_start).astype(np.float32),
        "pose": rays.start,
    }


def generate_scan(seed: int, spec: LidarSpec = HDL64E, speed: float = 8.0) -> dict[str, np.ndarray]:
    """One scan of the street `build_street(seed)`, deterministic in `seed`.

    Args:
        seed: the seed of the street and of the sensor noise.
        spec: the sensor.
        speed: the vehicle's speed along +x in m/s.

    Returns:
        scan: the dict `simulate_scan` returns (about 100,000 points for the HDL-64E).
    """
    return simulate_scan(build_street(seed), spec, speed=speed, seed=seed)


def simulate_sequence(seed: int, num_scans: int, spec: LidarSpec = HDL64E, speed: float = 8.0) -> list[dict]:
    """Consecutive sweeps (1 / rate_hz apart) of one street while driving along it.

    Args:
        seed: the seed of the street and of the sensor noise.
        num_scans: how many sweeps (>= 1).
        spec: the sensor.
        speed: the vehicle's speed along +x in m/s.

    Returns:
        scans: `num_scans` dicts as `simulate_scan` returns, each with its own "pose".

    Raises:
        ValueError: when `num_scans` is under 1.
    """
    if num_scans < 1:
        raise ValueError(f"num_scans must be >= 1, got {num_scans}")
    scene = build_street(seed)
    return [simulate_scan(scene, spec, speed=speed, time=i / spec.rate_hz, seed=seed) for i in range(num_scans)]


# ----------------------------------------------------------------------------- writer
# KITTI's velodyne -> camera-0 axes (x right, y down, z forward), no offset; a generic
# 1241 x 376 pinhole stands in for the four rectified cameras.
T_CAM0_FROM_VELO = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
_CAMERA = np.array([[720.0, 0.0, 620.5, 0.0], [0.0, 720.0, 187.5, 0.0], [0.0, 0.0, 1.0, 0.0]])


def semantickitti_label_config(split: dict[str, list[int]] | None = None) -> dict:
    """The content of a SemanticKITTI label file (`semantic-kitti.yaml`), from the package's constants.

    Args:
        split: "train" / "valid" / "test" -> sequence numbers; None for SemanticKITTI's own
            (train 0-7, 9, 10; valid 8; test 11-21).

    Returns:
        config: a dict with name, labels, color_map (BGR), learning_map, learning_map_inv,
        learning_ignore and split, the keys SemanticKITTI tools and `SemanticKittiConfig` read.
    """
    return {
        "name": "kitti",
        "labels": dict(SEMANTIC_KITTI_LABELS),
        "color_map": {k: list(v) for k, v in SEMANTIC_KITTI_COLORS_BGR.items()},
        "learning_map": dict(SEMANTIC_KITTI_LEARNING_MAP),
        "learning_map_inv": dict(SEMANTIC_KITTI_LEARNING_MAP_INV),
        "learning_ignore": {k: k == 0 for k in SEMANTIC_KITTI_LEARNING_MAP_INV},
        "split": split
        if split is not None
        else {"train": [0, 1, 2, 3, 4, 5, 6, 7, 9, 10], "valid": [8], "test": list(range(11, 22))},
    }


def write_semantickitti_yaml(path: str | Path, split: dict[str, list[int]] | None = None) -> Path:
    """Writes `semantickitti_label_config(split)` as YAML.

    Args:
        path: the file to write (its folder is created).
        split: the sequences of each split (None: SemanticKITTI's own).

    Returns:
        path: the written file.
    """
    import yaml

    return atomic_write_file(path, yaml.safe_dump(semantickitti_label_config(split), sort_keys=False))


def write_semantickitti_sequence(
    root: str | Path, sequence: int, scans: list[dict], poses: list[np.ndarray] | None = None
) -> Path:
    """Writes scans as `root/sequences/<NN>/` in the SemanticKITTI layout.

    Args:
        root: the data set folder (`semantic-kitti.yaml` is written there unless one exists).
        sequence: the sequence number (0..99).
        scans: dicts with coord (N, 3), remission (N,), semantic (N,) raw ids and
            instance (N,) (as `simulate_scan` returns).
        poses: T_world_from_sensor (4, 4) per scan; defaults to each scan's "pose".

    Returns:
        folder: the sequence folder holding velodyne/*.bin, labels/*.label, poses.txt
        (camera-0 poses relative to the first scan, 3 x 4 row-major per line), calib.txt
        (P0..P3 and Tr) and times.txt.

    Raises:
        ValueError: naming the argument on a bad sequence number, an empty `scans`, or a
        scan whose arrays disagree in length.
    """
    if not 0 <= sequence <= 99:
        raise ValueError(f"sequence must be in 0..99, got {sequence}")
    if not scans:
        raise ValueError("scans must not be empty")
    poses = [scan["pose"] for scan in scans] if poses is None else list(poses)
    if len(poses) != len(scans):
        raise ValueError(f"poses has {len(poses)} entries but scans has {len(scans)}")
    root = Path(root)
    folder = root / "sequences" / f"{sequence:02d}"
    (folder / "velodyne").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    lines, times = [], []
    first_inverse = np.linalg.inv(np.asarray(poses[0], dtype=np.float64))
    velo_from_cam = np.linalg.inv(T_CAM0_FROM_VELO)
    for index, (scan, pose) in enumerate(zip(scans, poses)):
        coord = np.asarray(scan["coord"], dtype=np.float32)
        n = len(coord)
        for key in ("remission", "semantic", "instance"):
            if len(scan[key]) != n:
                raise ValueError(f"scans[{index}]['{key}'] has {len(scan[key])} entries, coord has {n}")
        cloud = np.concatenate([coord, np.asarray(scan["remission"], dtype=np.float32)[:, None]], 1)
        atomic_write_file(folder / "velodyne" / f"{index:06d}.bin", cloud.astype("<f4").tobytes())
        semantic = (np.asarray(scan["semantic"]) & 0xFFFF).astype(np.uint32)
        label = (np.asarray(scan["instance"], dtype=np.uint32) << 16) | semantic
        atomic_write_file(folder / "labels" / f"{index:06d}.label", label.astype("<u4").tobytes())
        relative = T_CAM0_FROM_VELO @ first_inverse @ np.asarray(pose, dtype=np.float64) @ velo_from_cam
        lines.append(" ".join(f"{v:.9e}" for v in relative[:3].ravel()))
        times.append(f"{index / HDL64E.rate_hz:.6e}")
    atomic_write_file(folder / "poses.txt", "\n".join(lines) + "\n")
    atomic_write_file(folder / "times.txt", "\n".join(times) + "\n")
    calib = [f"P{i}: " + " ".join(f"{v:.12e}" for v in _CAMERA.ravel()) for i in range(4)]
    calib.append("Tr: " + " ".join(f"{v:.12e}" for v in T_CAM0_FROM_VELO[:3].ravel()))
    atomic_write_file(folder / "calib.txt", "\n".join(calib) + "\n")
    if not (root / "semantic-kitti.yaml").is_file():
        write_semantickitti_yaml(root / "semantic-kitti.yaml")
    return folder


def write_simulated_semantickitti(
    root: str | Path,
    train_seeds,
    valid_seeds,
    scans_per_street: int = 1,
    spec: LidarSpec = HDL64E,
    speed: float = 8.0,
    show_progress: bool = False,
) -> Path:
    """Writes a simulated data set in the SemanticKITTI layout: one sequence per street.

    Train streets become sequences 00, 01, ... and the validation streets follow; the
    `semantic-kitti.yaml` written to `root` names them in its split, so
    `SemanticKITTIScans(root, SemanticKittiConfig.from_yaml(yaml), "train")` (and any
    SemanticKITTI tool) reads the set as it reads the real one.

    Args:
        root: the data set folder.
        train_seeds: the street seeds of the training split.
        valid_seeds: the street seeds of the validation split.
        scans_per_street: consecutive sweeps per street (>= 1).
        spec: the sensor.
        speed: the vehicle's speed along each street in m/s.
        show_progress: report progress (a bar on a terminal, one line per step in a log).

    Returns:
        path: the written `semantic-kitti.yaml`.

    Raises:
        ValueError: with more than 100 streets, none at all, or `scans_per_street` < 1.
    """
    from pcseg.utils.progress import progress

    seeds = [int(s) for s in train_seeds] + [int(s) for s in valid_seeds]
    if not seeds or len(seeds) > 100:
        raise ValueError(f"train_seeds and valid_seeds must hold 1..100 streets together, got {len(seeds)}")
    if scans_per_street < 1:
        raise ValueError(f"scans_per_street must be >= 1, got {scans_per_street}")
    num_train = len(seeds) - len(list(valid_seeds))
    for sequence in progress(
        range(len(seeds)), desc="simulating streets", unit="street", total=len(seeds), enabled=show_progress
    ):
        scans = simulate_sequence(seeds[sequence], scans_per_street, spec, speed)
        write_semantickitti_sequence(root, sequence, scans)
    split = {"train": list(range(num_train)), "valid": list(range(num_train, len(seeds))), "test": []}
    return write_semantickitti_yaml(Path(root) / "semantic-kitti.yaml", split)
