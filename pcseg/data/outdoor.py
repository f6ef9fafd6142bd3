"""Procedural outdoor streets labelled with the SemanticKITTI classes: the outdoor twin of
`pcseg.data.synthetic`, scanned by the LiDAR model of `pcseg.data.lidar_sim`.

A street is a ground plane (road with lane markings, parking lanes, terrain) plus analytic
primitives: oriented boxes (sidewalks with their curbs, buildings with windowed facades,
fences, car bodies, trucks, signs), vertical cylinders (poles, trunks, legs) and ellipsoids
(tree crowns, bushes, torsos, heads). Every primitive carries a raw SemanticKITTI id, an
instance id (0 for "stuff"), a near-infrared reflectivity, a porosity (the chance that a
ray passes through foliage or a fence) and a velocity (moving cars and people).
Everything is seeded: the same seed gives the same street, bit for bit.

    scene = build_street(seed=0)
    scan = simulate_scan(scene, seed=0)          # pcseg.data.lidar_sim

Coordinates: metres, z up, road surface at z = 0, the street runs along x, the road is
centred on y = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------- SemanticKITTI
# The class definitions of the SemanticKITTI benchmark (Behley et al., ICCV 2019): raw ids,
# names, the learning map to the 19 evaluated classes (0 = ignored) and the colours (BGR) its
# tools draw with. Written here so a generated data set carries its own label file.
SEMANTIC_KITTI_LABELS: dict[int, str] = {
    0: "unlabeled",
    1: "outlier",
    10: "car",
    11: "bicycle",
    13: "bus",
    15: "motorcycle",
    16: "on-rails",
    18: "truck",
    20: "other-vehicle",
    30: "person",
    31: "bicyclist",
    32: "motorcyclist",
    40: "road",
    44: "parking",
    48: "sidewalk",
    49: "other-ground",
    50: "building",
    51: "fence",
    52: "other-structure",
    60: "lane-marking",
    70: "vegetation",
    71: "trunk",
    72: "terrain",
    80: "pole",
    81: "traffic-sign",
    99: "other-object",
    252: "moving-car",
    253: "moving-bicyclist",
    254: "moving-person",
    255: "moving-motorcyclist",
    256: "moving-on-rails",
    257: "moving-bus",
    258: "moving-truck",
    259: "moving-other-vehicle",
}
SEMANTIC_KITTI_LEARNING_MAP: dict[int, int] = {
    0: 0,
    1: 0,
    10: 1,
    11: 2,
    13: 5,
    15: 3,
    16: 5,
    18: 4,
    20: 5,
    30: 6,
    31: 7,
    32: 8,
    40: 9,
    44: 10,
    48: 11,
    49: 12,
    50: 13,
    51: 14,
    52: 0,
    60: 9,
    70: 15,
    71: 16,
    72: 17,
    80: 18,
    81: 19,
    99: 0,
    252: 1,
    253: 7,
    254: 6,
    255: 8,
    256: 5,
    257: 5,
    258: 4,
    259: 5,
}
SEMANTIC_KITTI_LEARNING_MAP_INV: dict[int, int] = {
    0: 0,
    1: 10,
    2: 11,
    3: 15,
    4: 18,
    5: 20,
    6: 30,
    7: 31,
    8: 32,
    9: 40,
    10: 44,
    11: 48,
    12: 49,
    13: 50,
    14: 51,
    15: 70,
    16: 71,
    17: 72,
    18: 80,
    19: 81,
}
SEMANTIC_KITTI_COLORS_BGR: dict[int, tuple[int, int, int]] = {
    0: (0, 0, 0),
    1: (0, 0, 255),
    10: (245, 150, 100),
    11: (245, 230, 100),
    13: (250, 80, 100),
    15: (150, 60, 30),
    16: (255, 0, 0),
    18: (180, 30, 80),
    20: (255, 0, 0),
    30: (30, 30, 255),
    31: (200, 40, 255),
    32: (90, 30, 150),
    40: (255, 0, 255),
    44: (255, 150, 255),
    48: (75, 0, 75),
    49: (75, 0, 175),
    50: (0, 200, 255),
    51: (50, 120, 255),
    52: (0, 150, 255),
    60: (170, 255, 150),
    70: (0, 175, 0),
    71: (0, 60, 135),
    72: (80, 240, 150),
    80: (150, 240, 255),
    81: (0, 0, 255),
    99: (255, 255, 50),
    252: (245, 150, 100),
    253: (200, 40, 255),
    254: (30, 30, 255),
    255: (90, 30, 150),
    256: (255, 0, 0),
    257: (250, 80, 100),
    258: (180, 30, 80),
    259: (255, 0, 0),
}

UNLABELED, CAR, BICYCLE, MOTORCYCLE, TRUCK, PERSON = 0, 10, 11, 15, 18, 30
ROAD, PARKING, SIDEWALK, BUILDING, FENCE, LANE_MARKING = 40, 44, 48, 50, 51, 60
VEGETATION, TRUNK, TERRAIN, POLE, TRAFFIC_SIGN, OTHER_OBJECT = 70, 71, 72, 80, 81, 99
MOVING_CAR, MOVING_PERSON, MOVING_TRUCK = 252, 254, 258

BOX, CYLINDER, ELLIPSOID = 0, 1, 2
MATERIAL_PLAIN, MATERIAL_FACADE, MATERIAL_GLASS = 0, 1, 2

# Near-infrared (905 nm) reflectivities of the ground, drawn around these per street.
# Asphalt is dark (the HDL-64E datasheet quotes its range on "pavement" at 10 %), paint
# and concrete are brighter, vegetated soil in between.
_GROUND_REFLECTIVITY = {ROAD: 0.12, PARKING: 0.14, LANE_MARKING: 0.55, TERRAIN: 0.30}


@dataclass
class StreetLayout:
    """The ground of a street (everything at z = 0 that is not a primitive).

    road_half_width: the road covers |y| < road_half_width; parking_width: (2,) width of
    the parking lane beyond the road edge on the y < 0 and y > 0 sides (0 for none);
    cross_x / cross_half_width: a side street crossing at x = cross_x (None for none);
    lane_width: lanes from the centre line; reflectivity: raw id -> reflectivity of the
    road, parking, lane marking and terrain.
    """

    road_half_width: float
    parking_width: tuple[float, float]
    cross_x: float | None
    cross_half_width: float
    lane_width: float
    reflectivity: dict[int, float]

    def ground_labels(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Labels ground points by where they lie on the street.

        Args:
            x: (N,) float64 coordinates along the street in metres.
            y: (N,) float64 coordinates across the street in metres.

        Returns:
            labels: (N,) int64 raw SemanticKITTI ids (road, lane-marking, parking, terrain).
        """
        ay = np.abs(y)
        parking = np.where(y < 0, self.parking_width[0], self.parking_width[1])
        on_cross = (
            np.zeros(len(x), dtype=bool) if self.cross_x is None else np.abs(x - self.cross_x) < self.cross_half_width
        )
        labels = np.full(len(x), TERRAIN, dtype=np.int64)
        labels[(ay < self.road_half_width + parking) & (parking > 0)] = PARKING
        road = (ay < self.road_half_width) | on_cross
        labels[road] = ROAD
        # centre line dashed (3 m of 9 m), edge lines solid, 12 cm wide paint
        centre = (ay < 0.06) & (np.mod(x, 9.0) < 3.0)
        edge = np.abs(ay - (self.road_half_width - 0.3)) < 0.06
        labels[road & ~on_cross & (centre | edge)] = LANE_MARKING
        return labels


@dataclass
class OutdoorScene:
    """The primitives of one generated street.

    kind: (P,) int64 BOX / CYLINDER / ELLIPSOID; center: (P, 3) float64 centre (metres);
    half: (P, 3) float64 half extents along the local axes (box), (r, r, half height)
    (vertical cylinder) or the semi-axes (ellipsoid); yaw: (P,) float64 rotation about z;
    label: (P,) int64 raw SemanticKITTI id; instance: (P,) int64 (0 for stuff);
    reflectivity: (P,) float64 in [0, 1]; porosity: (P,) float64 chance a ray passes
    through; material: (P,) int64 MATERIAL_*; velocity: (P, 2) float64 m/s in x, y.
    layout: the ground; sensor_xy: (2,) a free spot on the road for the scanner, heading
    +x; seed: the seed it was built from.
    """

    kind: np.ndarray
    center: np.ndarray
    half: np.ndarray
    yaw: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    reflectivity: np.ndarray
    porosity: np.ndarray
    material: np.ndarray
    velocity: np.ndarray
    layout: StreetLayout
    sensor_xy: np.ndarray
    seed: int

    def __len__(self) -> int:
        return len(self.kind)


class _Builder:
    """Accumulates primitives and hands out instance ids while a street is built."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.rows: list[tuple] = []
        self.next_instance = 1

    def new_instance(self) -> int:
        self.next_instance += 1
        return self.next_instance - 1

    def add(
        self,
        kind,
        center,
        half,
        yaw,
        label,
        reflectivity,
        instance=0,
        porosity=0.0,
        material=MATERIAL_PLAIN,
        velocity=(0.0, 0.0),
    ) -> None:
        self.rows.append(
            (kind, tuple(center), tuple(half), yaw, label, instance, reflectivity, porosity, material, tuple(velocity))
        )

    def local(self, x, y, yaw, dx, dy) -> tuple[float, float]:
        """(x, y) + the offset (dx, dy) given in a frame rotated by `yaw`."""
        c, s = math.cos(yaw), math.sin(yaw)
        return x + c * dx - s * dy, y + s * dx + c * dy

    def scene(self, layout: StreetLayout, sensor_xy, seed: int) -> OutdoorScene:
        columns = list(zip(*self.rows))
        return OutdoorScene(
            kind=np.array(columns[0], dtype=np.int64),
            center=np.array(columns[1], dtype=np.float64),
            half=np.array(columns[2], dtype=np.float64),
            yaw=np.array(columns[3], dtype=np.float64),
            label=np.array(columns[4], dtype=np.int64),
            instance=np.array(columns[5], dtype=np.int64),
            reflectivity=np.array(columns[6], dtype=np.float64),
            porosity=np.array(columns[7], dtype=np.float64),
            material=np.array(columns[8], dtype=np.int64),
            velocity=np.array(columns[9], dtype=np.float64),
            layout=layout,
            sensor_xy=np.asarray(sensor_xy, dtype=np.float64),
            seed=seed,
        )


# ----------------------------------------------------------------------------- objects
def _foliage(rng: np.random.Generator) -> float:
    """Near-infrared reflectivity of a crown or hedge: below a single leaf's, since the
    light also meets shadowed leaves and twigs."""
    return float(rng.uniform(0.3, 0.5))


def _add_building_or_tree(b, rng: np.random.Generator, centre, half_extent, building_share: float) -> None:
    """A building (a facade box of random height) or, otherwise, a tree crown on the same footprint.

    Args:
        b: the scene builder.
        rng: the street's generator (drawn from in a fixed order, so streets stay reproducible).
        centre: (x, y) of the footprint's centre in metres.
        half_extent: (x, y) half sizes of the footprint in metres.
        building_share: the probability of a building.
    """
    if rng.random() < building_share:
        height = rng.uniform(6.0, 25.0)
        b.add(
            BOX,
            (*centre, height / 2),
            (*half_extent, height / 2),
            0.0,
            BUILDING,
            rng.uniform(0.2, 0.6),
            material=MATERIAL_FACADE,
        )
    else:
        crown = rng.uniform(3.0, 6.0)
        b.add(
            ELLIPSOID,
            (*centre, crown + 1.0),
            (*half_extent, crown),
            0.0,
            VEGETATION,
            _foliage(rng),
            porosity=0.2,
        )


def _add_car(b: _Builder, x, y, yaw, label, speed=0.0, truck=False) -> None:
    """A car (body, glass cabin, four dark tyres) or a truck (cab and cargo box)."""
    rng = b.rng
    instance = b.new_instance()
    velocity = (speed * math.cos(yaw), speed * math.sin(yaw))
    paint = float(rng.choice([0.05, 0.15, 0.3, 0.55]))
    if truck:
        length, width = rng.uniform(6.0, 9.0), rng.uniform(2.2, 2.5)
        height = rng.uniform(2.8, 3.6)
        cab = 1.8
        b.add(
            BOX,
            (*b.local(x, y, yaw, length / 2 - cab / 2, 0), 1.5),
            (cab / 2, width / 2, 1.1),
            yaw,
            label,
            paint,
            instance,
            velocity=velocity,
        )
        cargo = length - cab - 0.2
        b.add(
            BOX,
            (*b.local(x, y, yaw, -length / 2 + cargo / 2, 0), 0.5 + height / 2),
            (cargo / 2, width / 2, height / 2),
            yaw,
            label,
            rng.uniform(0.3, 0.7),
            instance,
            velocity=velocity,
        )
        wheel_x = (length / 2 - 1.0, -length / 2 + 1.2)
    else:
        length, width = rng.uniform(3.8, 4.9), rng.uniform(1.65, 1.9)
        body_top = rng.uniform(0.85, 1.0)
        b.add(
            BOX,
            (*b.local(x, y, yaw, 0, 0), (0.3 + body_top) / 2),
            (length / 2, width / 2, (body_top - 0.3) / 2),
            yaw,
            label,
            paint,
            instance,
            velocity=velocity,
        )
        cabin = length * rng.uniform(0.45, 0.6)
        cabin_height = rng.uniform(0.45, 0.6)
        b.add(
            BOX,
            (*b.local(x, y, yaw, -0.1 * length, 0), body_top + cabin_height / 2),
            (cabin / 2, width * 0.45, cabin_height / 2),
            yaw,
            label,
            0.08,
            instance,
            material=MATERIAL_GLASS,
            velocity=velocity,
        )
        wheel_x = (length / 2 - 0.75, -length / 2 + 0.75)
    for wx in wheel_x:
        for side in (-1, 1):
            b.add(
                BOX,
                (*b.local(x, y, yaw, wx, side * (width / 2 - 0.12)), 0.33),
                (0.32, 0.13, 0.33),
                yaw,
                label,
                0.04,
                instance,
                velocity=velocity,
            )


def _add_person(b: _Builder, x, y, yaw, speed) -> None:
    rng = b.rng
    instance = b.new_instance()
    label = MOVING_PERSON if speed > 0 else PERSON
    velocity = (speed * math.cos(yaw), speed * math.sin(yaw))
    height = rng.uniform(1.55, 1.95)
    clothes = rng.uniform(0.1, 0.5)
    b.add(
        CYLINDER, (x, y, 0.24 * height), (0.16, 0.16, 0.24 * height), 0.0, label, clothes, instance, velocity=velocity
    )
    b.add(
        ELLIPSOID, (x, y, 0.66 * height), (0.14, 0.23, 0.2 * height), yaw, label, clothes, instance, velocity=velocity
    )
    b.add(ELLIPSOID, (x, y, 0.93 * height), (0.1, 0.09, 0.12), yaw, label, 0.3, instance, velocity=velocity)


def _add_two_wheeler(b: _Builder, x, y, yaw, motor: bool) -> None:
    rng = b.rng
    instance = b.new_instance()
    label = MOTORCYCLE if motor else BICYCLE
    wheel = 0.33 if motor else 0.34
    base = 0.7 if motor else 0.55
    for wx in (-base, base):
        # spokes and rims let most of a bicycle wheel's rays through
        b.add(
            BOX,
            (*b.local(x, y, yaw, wx, 0), wheel),
            (wheel, 0.06 if motor else 0.03, wheel),
            yaw,
            label,
            0.1,
            instance,
            porosity=0.2 if motor else 0.6,
        )
    if motor:
        b.add(BOX, (*b.local(x, y, yaw, 0, 0), 0.75), (0.55, 0.2, 0.3), yaw, label, rng.uniform(0.1, 0.6), instance)
    else:
        b.add(
            BOX,
            (*b.local(x, y, yaw, 0, 0), 0.7),
            (0.45, 0.025, 0.2),
            yaw,
            label,
            rng.uniform(0.1, 0.6),
            instance,
            porosity=0.5,
        )


def _add_tree(b: _Builder, x, y) -> None:
    rng = b.rng
    trunk_height = rng.uniform(1.5, 3.0)
    radius = rng.uniform(0.1, 0.25)
    b.add(CYLINDER, (x, y, trunk_height / 2), (radius, radius, trunk_height / 2), 0.0, TRUNK, rng.uniform(0.2, 0.4))
    crown = rng.uniform(1.5, 3.5)
    b.add(
        ELLIPSOID,
        (x, y, trunk_height + crown * 0.8),
        (crown, crown, crown * rng.uniform(0.8, 1.3)),
        rng.uniform(0, math.pi),
        VEGETATION,
        _foliage(rng),
        porosity=0.35,
    )


def _add_pole(b: _Builder, x, y, sign: bool) -> None:
    rng = b.rng
    if sign:
        height = rng.uniform(2.2, 3.0)
        b.add(CYLINDER, (x, y, height / 2), (0.035, 0.035, height / 2), 0.0, POLE, 0.3)
        size = rng.uniform(0.3, 0.45)
        facing = rng.choice([0.0, math.pi / 2])
        # signs are retro-reflective: the brightest returns of a street
        b.add(BOX, (x, y, height + size), (0.02, size, size), float(facing), TRAFFIC_SIGN, 0.9)
    else:
        height = rng.uniform(5.0, 9.0)
        radius = rng.uniform(0.07, 0.15)
        b.add(CYLINDER, (x, y, height / 2), (radius, radius, height / 2), 0.0, POLE, rng.uniform(0.2, 0.4))


# ----------------------------------------------------------------------------- street
def _segments(x0: float, x1: float, cross_x, cross_half_width) -> list[tuple[float, float]]:
    """The x intervals of [x0, x1] outside the side street."""
    if cross_x is None:
        return [(x0, x1)]
    return [(x0, cross_x - cross_half_width), (cross_x + cross_half_width, x1)]


def build_street(seed: int, length: float = 160.0) -> OutdoorScene:
    """A procedural street of `length` metres along x centred on x = 0, deterministic in `seed`.

    Args:
        seed: the random seed; the same seed gives the same street.
        length: the street's extent along x in metres (the scanner sits near x = 0).

    Returns:
        scene: an `OutdoorScene` (primitives, ground layout and a sensor position).

    Raises:
        ValueError: when `length` is under 40 m.
    """
    if length < 40.0:
        raise ValueError(f"length must be >= 40 m, got {length}")
    rng = np.random.default_rng(seed)
    b = _Builder(rng)
    lanes = 1 if rng.random() < 0.7 else 2  # per direction
    lane_width = rng.uniform(3.0, 3.6)
    road_half = lanes * lane_width + 0.3
    parking = tuple(2.3 if rng.random() < 0.35 else 0.0 for _ in range(2))
    cross_x = float(rng.uniform(-40, 40)) if rng.random() < 0.5 else None
    cross_half = road_half
    jitter = {k: v * rng.uniform(0.8, 1.25) for k, v in _GROUND_REFLECTIVITY.items()}
    layout = StreetLayout(road_half, parking, cross_x, cross_half, lane_width, jitter)
    x0, x1 = -length / 2, length / 2
    sensor_xy = np.array([rng.uniform(-5.0, 5.0), -(int(rng.integers(0, lanes)) + 0.5) * lane_width])

    def free(x, y):  # keeps vehicles off the scanner's own spot
        return abs(y - sensor_xy[1]) > 2.2 or abs(x - sensor_xy[0]) > 8.0

    segments = _segments(x0, x1, cross_x, cross_half)
    sidewalk_reflectivity = rng.uniform(0.2, 0.35)
    for side_index, side in enumerate((-1.0, 1.0)):
        curb = road_half + parking[side_index]
        sidewalk = rng.uniform(1.8, 4.0)
        verge = rng.uniform(0.0, 8.0) if rng.random() < 0.7 else 0.0
        front = curb + sidewalk + verge
        curb_height = rng.uniform(0.1, 0.16)
        for a, c in segments:
            b.add(
                BOX,
                ((a + c) / 2, side * (curb + sidewalk / 2), curb_height / 2),
                ((c - a) / 2, sidewalk / 2, curb_height / 2),
                0.0,
                SIDEWALK,
                sidewalk_reflectivity,
            )
        _add_side(b, segments, side, curb, sidewalk, verge, front)
        # parked cars in the parking lane (a side without one has none: they would stand
        # in the driving lane)
        park_y = side * (curb - 1.15)
        for a, c in segments if parking[side_index] else []:
            x = a + rng.uniform(0.5, 6.0)
            while x < c - 3.0:
                if rng.random() < 0.3 and free(x + 2.5, park_y):
                    truck = rng.random() < 0.04
                    _add_car(
                        b, x + 2.5, park_y, 0.0 if rng.random() < 0.8 else math.pi, TRUCK if truck else CAR, truck=truck
                    )
                    x += rng.uniform(5.2, 7.0) + (4.0 if truck else 0.0)
                else:
                    x += rng.uniform(3.0, 12.0)
    # streets bend and end: buildings and trees across both ends close the view
    for end in (x0, x1):
        y = -60.0
        while y < 60.0:
            size = rng.uniform(10.0, 30.0)
            depth = rng.uniform(10.0, 20.0)
            centre = (end + math.copysign(depth / 2, end), y + size / 2)
            _add_building_or_tree(b, rng, centre, (depth / 2, size / 2), building_share=0.7)
            y += size + rng.uniform(0.0, 3.0)
    # traffic in the lanes, leaving the scanner's own lane free near it
    for lane in range(lanes):
        for side in (-1.0, 1.0):
            y = side * (lane + 0.5) * lane_width
            heading = 0.0 if side < 0 else math.pi
            for _ in range(int(rng.integers(0, 3))):
                x = rng.uniform(x0 + 10, x1 - 10)
                if not free(x, y):
                    continue
                truck = rng.random() < 0.03
                _add_car(b, x, y, heading, MOVING_TRUCK if truck else MOVING_CAR, rng.uniform(3.0, 14.0), truck)
    return b.scene(layout, sensor_xy, seed)


def _add_side(b: _Builder, segments, side, curb, sidewalk, verge, front) -> None:
    """One side of the street: street furniture on the sidewalk, the verge, buildings."""
    rng = b.rng
    for a, c in segments:
        # poles and signs near the curb
        x = a + rng.uniform(1.0, 10.0)
        while x < c - 1.0:
            _add_pole(b, x, side * (curb + 0.5), sign=rng.random() < 0.4)
            x += rng.uniform(8.0, 30.0)
        # trees in the verge or in the sidewalk
        x = a + rng.uniform(1.0, 8.0)
        tree_y = curb + sidewalk + verge / 2 if verge > 2.0 else curb + sidewalk - 0.8
        while x < c - 1.0:
            if rng.random() < 0.8:
                _add_tree(b, x, side * (tree_y + rng.uniform(-0.3, 0.3)))
            x += rng.uniform(5.0, 12.0)
        # bushes in the verge
        if verge > 1.0:
            for _ in range(int((c - a) / 6 * rng.uniform(0.2, 1.5))):
                size = rng.uniform(0.4, min(1.5, verge / 2))
                b.add(
                    ELLIPSOID,
                    (rng.uniform(a, c), side * (curb + sidewalk + rng.uniform(size, verge - size * 0.5)), size * 0.5),
                    (size, size, size * 0.8),
                    rng.uniform(0, math.pi),
                    VEGETATION,
                    _foliage(rng),
                    porosity=0.25,
                )
        # people, bicycles, motorcycles, bins on the sidewalk
        for _ in range(int(rng.poisson((c - a) / 120))):
            speed = rng.uniform(0.8, 1.8) if rng.random() < 0.6 else 0.0
            _add_person(
                b,
                rng.uniform(a, c),
                side * (curb + rng.uniform(0.5, sidewalk - 0.4)),
                rng.choice([0.0, math.pi]),
                speed,
            )
        for _ in range(int(rng.poisson((c - a) / 80))):
            _add_two_wheeler(
                b,
                rng.uniform(a, c),
                side * (curb + rng.uniform(0.6, sidewalk - 0.5)),
                rng.uniform(-0.3, 0.3),
                motor=rng.random() < 0.4,
            )
        for _ in range(int(rng.poisson((c - a) / 50))):
            b.add(
                BOX,
                (rng.uniform(a, c), side * (curb + sidewalk - 0.5), 0.5),
                (0.3, 0.3, 0.5),
                0.0,
                OTHER_OBJECT,
                rng.uniform(0.1, 0.5),
            )
        # plots: a hedge or a fence on the property line, then a house set back behind a
        # front garden, or a garden with trees
        x = a
        while x < c - 2.0:
            plot = min(rng.uniform(8.0, 30.0), c - x)
            middle = x + plot / 2
            frontage = rng.random()
            height = rng.uniform(0.8, 2.2)
            if frontage < 0.45:
                b.add(
                    BOX,
                    (middle, side * (front + 0.5), height / 2),
                    (plot / 2, 0.5, height / 2),
                    0.0,
                    VEGETATION,
                    _foliage(rng),
                    porosity=0.2,
                )
            elif frontage < 0.75:
                b.add(
                    BOX,
                    (middle, side * (front + 0.1), height / 2),
                    (plot / 2, 0.03, height / 2),
                    0.0,
                    FENCE,
                    rng.uniform(0.2, 0.5),
                    porosity=float(rng.choice([0.0, 0.5])),
                )
            setback = rng.uniform(1.0, 10.0)
            if rng.random() < 0.75:
                depth = rng.uniform(8.0, 15.0)
                house = plot * rng.uniform(0.6, 1.0)
                storeys = rng.uniform(5.0, 20.0)
                b.add(
                    BOX,
                    (middle, side * (front + setback + depth / 2), storeys / 2),
                    (house / 2, depth / 2, storeys / 2),
                    0.0,
                    BUILDING,
                    rng.uniform(0.2, 0.6),
                    material=MATERIAL_FACADE,
                )
            else:
                setback = 12.0
            for _ in range(int(rng.integers(0, 3)) if setback > 3.0 else 0):  # the front garden
                if rng.random() < 0.5:
                    _add_tree(b, x + rng.uniform(0, plot), side * (front + rng.uniform(1.5, setback - 1.0)))
                else:
                    size = rng.uniform(0.5, 1.5)
                    b.add(
                        ELLIPSOID,
                        (x + rng.uniform(0, plot), side * (front + rng.uniform(1.5, setback - 1.0)), size * 0.6),
                        (size, size, size * 0.8),
                        0.0,
                        VEGETATION,
                        _foliage(rng),
                        porosity=0.25,
                    )
            x += plot
    # the next block behind: what the near-horizontal lasers see through the gaps
    x = segments[0][0]
    while x < segments[-1][1]:
        size = rng.uniform(10.0, 40.0)
        depth = rng.uniform(10.0, 25.0)
        y = side * (front + rng.uniform(20.0, 35.0) + depth / 2)
        _add_building_or_tree(b, rng, (x + size / 2, y), (size / 2, depth / 2), building_share=0.6)
        x += size + rng.uniform(0.0, 6.0)
