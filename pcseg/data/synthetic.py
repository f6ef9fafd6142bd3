"""Procedural indoor rooms labelled with the 13 S3DIS classes: pcseg's embedded data set.

A room is built from planar rectangles ("quads": floor, ceiling, walls with openings, and
boxes composed into beams, columns, doors, windows, boards, tables, chairs, sofas,
bookcases and clutter), then points are sampled on the quads with sensor-like noise. The
classes differ by local geometry *and* colour, as in S3DIS: doors are recessed panels with
a protruding casing, windows are deep reveals with glass, boards stand 2 cm proud of the
wall, beams and columns have the wall's colour but not its shape, chairs and tables span
the same heights. Everything is seeded: the same seed gives the same room, bit for bit.

    room = generate_room(seed=0)                 # dict of numpy arrays, ~100k points
    scene = build_room(seed=0)                   # the primitives, for rendering RGB-D views
    points = sample_room(scene, 200_000, seed=1)
    view = render_view(scene, PinholeCamera(fx, fy, cx, cy, width, height), look_at_pose(eye, target))

Coordinates: metres, z up, the room spans x in [0, W], y in [0, D], z in [0, H].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch.utils.data

from pcseg.data.classes import S3DIS_CLASS_NAMES

CEILING, FLOOR, WALL, BEAM, COLUMN, WINDOW, DOOR = 0, 1, 2, 3, 4, 5, 6
TABLE, CHAIR, SOFA, BOOKCASE, BOARD, CLUTTER = 7, 8, 9, 10, 11, 12
NUM_CLASSES = len(S3DIS_CLASS_NAMES)

TEXTURE_NONE, TEXTURE_TILES = 0, 1

# Relative sampling density per class: a scanner standing in the room is closer to the
# furniture than to the far walls and ceiling, so objects get more points per m^2 (S3DIS
# shows the same); it also keeps the small classes from drowning in walls and floor.
CLASS_DENSITY = np.array(
    [
        1.0,  # ceiling
        1.0,  # floor
        1.0,  # wall
        1.0,  # beam
        1.5,  # column
        1.5,  # window
        1.5,  # door
        2.0,  # table
        2.0,  # chair
        2.0,  # sofa
        1.0,  # bookcase (books already add much area)
        2.0,  # board
        2.0,  # clutter
    ]
)


@dataclass
class Quad:
    """A planar rectangle `origin + a * edge_u + b * edge_v`, (a, b) in [0, 1]^2.

    The outward normal is `edge_u x edge_v` normalised. `holes` are rectangles
    `(a0, a1, b0, b1)` in (a, b) coordinates where the surface is absent (a door opening
    in a wall, the wall behind a bookcase). `color` is the base RGB in [0, 1].
    """

    origin: np.ndarray
    edge_u: np.ndarray
    edge_v: np.ndarray
    label: int
    instance: int
    color: np.ndarray
    density: float = 1.0
    texture: int = TEXTURE_NONE
    holes: list[tuple[float, float, float, float]] = field(default_factory=list)

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.edge_u, self.edge_v)
        return n / np.linalg.norm(n)

    @property
    def area(self) -> float:
        return float(np.linalg.norm(np.cross(self.edge_u, self.edge_v)))

    @property
    def open_area(self) -> float:
        """Area without the holes (holes are placed so that they do not overlap)."""
        hole_fraction = sum((a1 - a0) * (b1 - b0) for a0, a1, b0, b1 in self.holes)
        return self.area * max(0.0, 1.0 - hole_fraction)


@dataclass
class RoomScene:
    """The primitives of one generated room.

    quads: every surface; size: (W, D, H) in metres; light_direction: (3,) unit vector used
    for shading; seed: the seed it was built from.
    """

    quads: list[Quad]
    size: tuple[float, float, float]
    light_direction: np.ndarray
    seed: int

    def arrays(self) -> dict[str, np.ndarray]:
        """The quads as stacked arrays.

        Returns:
            arrays: origin / edge_u / edge_v / normal / color (Q, 3) float64, label / instance /
                texture (Q,) int64, density / area / open_area (Q,) float64.
        """
        return {
            "origin": np.stack([q.origin for q in self.quads]),
            "edge_u": np.stack([q.edge_u for q in self.quads]),
            "edge_v": np.stack([q.edge_v for q in self.quads]),
            "normal": np.stack([q.normal for q in self.quads]),
            "color": np.stack([q.color for q in self.quads]),
            "label": np.array([q.label for q in self.quads], dtype=np.int64),
            "instance": np.array([q.instance for q in self.quads], dtype=np.int64),
            "texture": np.array([q.texture for q in self.quads], dtype=np.int64),
            "density": np.array([q.density for q in self.quads]),
            "area": np.array([q.area for q in self.quads]),
            "open_area": np.array([q.open_area for q in self.quads]),
        }


# ----------------------------------------------------------------------------- palettes
# Base colours in [0, 1]. Structure shares one family of off-whites so that walls,
# columns, beams and ceilings must be told apart by shape, as in S3DIS.
_STRUCTURE_WHITES = np.array(
    [[0.86, 0.85, 0.80], [0.80, 0.80, 0.78], [0.88, 0.84, 0.74], [0.78, 0.80, 0.82], [0.84, 0.78, 0.70]]
)
_FLOORS = np.array([[0.55, 0.50, 0.45], [0.45, 0.45, 0.47], [0.62, 0.48, 0.32], [0.35, 0.38, 0.42], [0.70, 0.68, 0.62]])
_WOODS = np.array([[0.55, 0.38, 0.22], [0.66, 0.50, 0.32], [0.42, 0.28, 0.16], [0.75, 0.62, 0.45]])
_DOOR_PAINTS = np.array(
    [[0.55, 0.38, 0.22], [0.42, 0.28, 0.16], [0.30, 0.36, 0.48], [0.62, 0.30, 0.22], [0.58, 0.60, 0.62]]
)
_TABLE_TOPS = np.array(
    [[0.66, 0.50, 0.32], [0.90, 0.90, 0.88], [0.55, 0.55, 0.55], [0.75, 0.62, 0.45], [0.30, 0.30, 0.32]]
)
_CHAIR_FABRICS = np.array(
    [
        [0.12, 0.12, 0.14],
        [0.20, 0.25, 0.55],
        [0.60, 0.12, 0.12],
        [0.85, 0.45, 0.10],
        [0.25, 0.45, 0.25],
        [0.35, 0.35, 0.38],
    ]
)
_SOFA_FABRICS = np.array(
    [[0.45, 0.30, 0.22], [0.30, 0.32, 0.40], [0.50, 0.12, 0.15], [0.25, 0.40, 0.35], [0.60, 0.55, 0.45]]
)
_METALS = np.array([[0.55, 0.56, 0.58], [0.25, 0.25, 0.27], [0.70, 0.70, 0.72]])
_GLASS = np.array([[0.35, 0.45, 0.55], [0.25, 0.32, 0.38], [0.55, 0.65, 0.72]])
_BOARD_SURFACES = np.array([[0.97, 0.98, 1.00], [0.15, 0.30, 0.22], [0.72, 0.55, 0.35]])


class _Builder:
    """Accumulates quads and hands out instance ids while a room is being built."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.quads: list[Quad] = []
        self.next_instance = 0

    def new_instance(self) -> int:
        self.next_instance += 1
        return self.next_instance - 1

    def jitter_color(self, palette: np.ndarray, spread: float = 0.04) -> np.ndarray:
        base = palette[self.rng.integers(len(palette))]
        return np.clip(base + self.rng.normal(0.0, spread, 3), 0.0, 1.0)

    def quad(
        self, origin, edge_u, edge_v, label, instance, color, density=1.0, texture=TEXTURE_NONE, outward=None
    ) -> Quad:
        """Adds a quad; when `outward` is given the edges are swapped if needed so that the
        normal points along it."""
        origin, edge_u, edge_v = (np.asarray(x, dtype=np.float64) for x in (origin, edge_u, edge_v))
        if outward is not None and np.dot(np.cross(edge_u, edge_v), outward) < 0:
            edge_u, edge_v = edge_v, edge_u
        q = Quad(origin, edge_u, edge_v, label, instance, np.asarray(color, dtype=np.float64), density, texture)
        self.quads.append(q)
        return q

    def box(
        self, center_xy, z0, size, yaw, label, instance, color, density=1.0, skip=("-z",), texture=TEXTURE_NONE
    ) -> None:
        """An oriented box: footprint centred at `center_xy`, bottom at `z0`,
        `size = (sx, sy, sz)` along the box's local x/y (rotated by `yaw` about z) and z.
        Faces named in `skip` ("+x", "-x", "+y", "-y", "+z", "-z") are left out (resting on
        the floor, pressed against a wall)."""
        sx, sy, sz = size
        hx, hy = sx / 2.0, sy / 2.0
        faces = {
            "+z": ((-hx, -hy, sz), (sx, 0, 0), (0, sy, 0)),
            "-z": ((-hx, -hy, 0), (0, sy, 0), (sx, 0, 0)),
            "+x": ((hx, -hy, 0), (0, sy, 0), (0, 0, sz)),
            "-x": ((-hx, -hy, 0), (0, 0, sz), (0, sy, 0)),
            "+y": ((-hx, hy, 0), (0, 0, sz), (sx, 0, 0)),
            "-y": ((-hx, -hy, 0), (sx, 0, 0), (0, 0, sz)),
        }
        c, s = math.cos(yaw), math.sin(yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        shift = np.array([center_xy[0], center_xy[1], z0], dtype=np.float64)
        for name, (o, u, v) in faces.items():
            if name in skip:
                continue
            self.quad(
                rot @ np.array(o, float) + shift,
                rot @ np.array(u, float),
                rot @ np.array(v, float),
                label,
                instance,
                color,
                density,
                texture,
            )


@dataclass
class _Wall:
    """One wall: runs from `start` (x, y) along unit `direction` for `length`; `normal`
    points into the room; `quad` is its surface (a = along the wall, b = up)."""

    start: np.ndarray
    direction: np.ndarray
    normal: np.ndarray
    length: float
    quad: Quad
    # occupied (s0, s1, z0, z1) spans, so openings and wall-mounted objects do not overlap
    spans: list[tuple[float, float, float, float]] = field(default_factory=list)

    def point(self, s: float, z: float, offset: float = 0.0) -> np.ndarray:
        """World point `s` metres along the wall, at height `z`, `offset` metres into the room."""
        xy = self.start + s * self.direction + offset * self.normal
        return np.array([xy[0], xy[1], z])

    @property
    def yaw(self) -> float:
        """Yaw of a box whose local +y axis is the wall's inward normal."""
        return math.atan2(-self.normal[0], self.normal[1])

    def free(self, s0: float, s1: float, z0: float, z1: float, margin: float = 0.1) -> bool:
        if s0 < margin or s1 > self.length - margin:
            return False
        return all(s1 + margin <= a0 or s0 - margin >= a1 or z1 <= b0 or z0 >= b1 for a0, a1, b0, b1 in self.spans)

    def cut(self, s0: float, s1: float, z0: float, z1: float, height: float) -> None:
        """Marks the span occupied and removes the wall surface behind it."""
        self.spans.append((s0, s1, z0, z1))
        self.quad.holes.append((s0 / self.length, s1 / self.length, z0 / height, z1 / height))


class _Footprints:
    """Axis-aligned 2D rectangles already occupied on the floor, for placing furniture."""

    def __init__(self):
        self.rects: list[tuple[float, float, float, float]] = []

    def free(self, x0, x1, y0, y1, margin=0.05) -> bool:
        return all(
            x1 + margin <= a0 or x0 - margin >= a1 or y1 + margin <= b0 or y0 - margin >= b1
            for a0, a1, b0, b1 in self.rects
        )

    def add(self, x0, x1, y0, y1) -> None:
        self.rects.append((x0, x1, y0, y1))


def _rotated_extent(sx: float, sy: float, yaw: float) -> tuple[float, float]:
    c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
    return (sx * c + sy * s) / 2.0, (sx * s + sy * c) / 2.0


def build_room(seed: int) -> RoomScene:
    """Builds the primitives of one random room.

    Args:
        seed: the room's seed; the scene is deterministic in it.

    Returns:
        scene: the room's `RoomScene`.
    """
    rng = np.random.default_rng(seed)
    b = _Builder(rng)
    width, depth = rng.uniform(4.0, 9.0), rng.uniform(4.0, 8.0)
    height = rng.uniform(2.7, 3.4)
    structure_color = _STRUCTURE_WHITES[rng.integers(len(_STRUCTURE_WHITES))]

    # Floor (a along x, b along y) and ceiling (a along y, b along x), normals into the room.
    floor_quad = b.quad(
        (0, 0, 0), (width, 0, 0), (0, depth, 0), FLOOR, b.new_instance(), b.jitter_color(_FLOORS), texture=TEXTURE_TILES
    )
    ceiling_quad = b.quad(
        (0, 0, height),
        (0, depth, 0),
        (width, 0, 0),
        CEILING,
        b.new_instance(),
        np.clip(structure_color + 0.05, 0, 1),
        texture=TEXTURE_TILES,
    )

    # Walls traversed so that `direction x z` points into the room.
    corners = [(0.0, 0.0), (0.0, depth), (width, depth), (width, 0.0)]
    walls: list[_Wall] = []
    for i in range(4):
        start = np.array(corners[i])
        end = np.array(corners[(i + 1) % 4])
        length = float(np.linalg.norm(end - start))
        direction = (end - start) / length
        normal = np.array([direction[1], -direction[0]])
        color = np.clip(structure_color + rng.normal(0, 0.015, 3), 0, 1)
        quad = b.quad(
            (start[0], start[1], 0.0),
            (end[0] - start[0], end[1] - start[1], 0.0),
            (0, 0, height),
            WALL,
            b.new_instance(),
            color,
        )
        walls.append(_Wall(start, direction, normal, length, quad))

    footprints = _Footprints()
    _add_beams(b, width, depth, height, ceiling_quad, structure_color)
    _add_columns(b, walls, height, footprints, floor_quad, ceiling_quad, width, depth, structure_color)
    _add_doors(b, walls, height, footprints)
    _add_windows(b, walls, height)
    _add_boards(b, walls, height)
    _add_bookcases(b, walls, height, footprints, floor_quad, width, depth)
    _add_sofas(b, walls, footprints, width, depth)
    tables = _add_tables_and_chairs(b, footprints, width, depth)
    _add_clutter(b, walls, height, footprints, tables, width, depth)

    light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 1.0])
    return RoomScene(b.quads, (float(width), float(depth), float(height)), light / np.linalg.norm(light), int(seed))


def _add_beams(b: _Builder, width, depth, height, ceiling_quad: Quad, color) -> None:
    """0-2 beams under the ceiling, spanning the room along x or y, in the ceiling colour."""
    rng = b.rng
    along_x = rng.random() < 0.5
    span, across = (width, depth) if along_x else (depth, width)
    for _ in range(rng.choice([0, 1, 1, 2])):
        beam_w, beam_h = rng.uniform(0.25, 0.5), rng.uniform(0.25, 0.5)
        c = rng.uniform(0.25 * across, 0.75 * across)
        # ceiling a runs along y, b along x
        if along_x:
            center, size, yaw = (span / 2, c), (span, beam_w, beam_h), 0.0
            ceiling_quad.holes.append(((c - beam_w / 2) / depth, (c + beam_w / 2) / depth, 0.0, 1.0))
        else:
            center, size, yaw = (c, span / 2), (span, beam_w, beam_h), math.pi / 2
            ceiling_quad.holes.append((0.0, 1.0, (c - beam_w / 2) / width, (c + beam_w / 2) / width))
        # The ends touch the walls and the top touches the ceiling: not visible.
        b.box(
            center,
            height - beam_h,
            size,
            yaw,
            BEAM,
            b.new_instance(),
            np.clip(color + rng.normal(0, 0.02, 3), 0, 1),
            skip=("+z", "-x", "+x"),
        )


def _add_columns(b: _Builder, walls, height, footprints, floor_quad, ceiling_quad, width, depth, color) -> None:
    """0-2 rectangular columns engaged in walls, full height, in the wall colour."""
    rng = b.rng
    for _ in range(rng.choice([0, 1, 2, 2])):
        wall = walls[rng.integers(4)]
        col_w, col_d = rng.uniform(0.35, 0.7), rng.uniform(0.25, 0.6)
        s = rng.uniform(col_w / 2 + 0.05, wall.length - col_w / 2 - 0.05)
        if not wall.free(s - col_w / 2, s + col_w / 2, 0, height, margin=0.0):
            continue
        wall.cut(s - col_w / 2, s + col_w / 2, 0.0, height, height)
        center = wall.point(s, 0.0, col_d / 2)
        b.box(
            center[:2],
            0.0,
            (col_w, col_d, height),
            wall.yaw,
            COLUMN,
            b.new_instance(),
            # columns are often clad or painted a shade off the wall colour
            np.clip(color * rng.uniform(0.85, 0.93) + rng.normal(0, 0.02, 3), 0, 1),
            skip=("-z", "+z", "-y"),
        )
        ext = _rotated_extent(col_w, col_d, wall.yaw)
        x0, x1 = center[0] - ext[0], center[0] + ext[0]
        y0, y1 = center[1] - ext[1], center[1] + ext[1]
        footprints.add(x0, x1, y0, y1)
        _cut_xy(floor_quad, x0, x1, y0, y1, width, depth, a_is_x=True)
        _cut_xy(ceiling_quad, x0, x1, y0, y1, width, depth, a_is_x=False)


def _cut_xy(quad: Quad, x0, x1, y0, y1, width, depth, a_is_x: bool) -> None:
    x0, x1 = max(x0, 0.0) / width, min(x1, width) / width
    y0, y1 = max(y0, 0.0) / depth, min(y1, depth) / depth
    quad.holes.append((x0, x1, y0, y1) if a_is_x else (y0, y1, x0, x1))


def _wall_box(
    b: _Builder, wall: _Wall, s: float, z0: float, offset: float, size, label, instance, color, skip=("-y",)
) -> None:
    """A box against a wall: local x along the wall, local y into the room starting
    `offset` metres from the wall plane, size = (along, out, up)."""
    center = wall.point(s, z0, offset + size[1] / 2)
    b.box(center[:2], z0, size, wall.yaw, label, instance, color, skip=skip)


def _opening(
    b: _Builder,
    wall: _Wall,
    s0,
    s1,
    z0,
    z1,
    recess,
    label,
    instance,
    color,
    reveal_color,
    sides=("left", "right", "top", "bottom"),
) -> None:
    """The reveal of an opening: quads from the wall plane back to `recess` metres behind it,
    and the recessed panel itself, all facing into the room/opening."""
    p = wall.point
    back = -recess
    n3 = np.array([wall.normal[0], wall.normal[1], 0.0])
    d3 = np.array([wall.direction[0], wall.direction[1], 0.0])
    depth_vec = n3 * recess
    b.quad(
        p(s0, z0, back),
        p(s1, z0, back) - p(s0, z0, back),
        p(s0, z1, back) - p(s0, z0, back),
        label,
        instance,
        color,
        outward=n3,
    )
    if "left" in sides:
        b.quad(p(s0, z0, back), depth_vec, p(s0, z1, 0) - p(s0, z0, 0), label, instance, reveal_color, outward=d3)
    if "right" in sides:
        b.quad(p(s1, z0, back), depth_vec, p(s1, z1, 0) - p(s1, z0, 0), label, instance, reveal_color, outward=-d3)
    if "top" in sides:
        b.quad(
            p(s0, z1, back),
            depth_vec,
            p(s1, z1, 0) - p(s0, z1, 0),
            label,
            instance,
            reveal_color,
            outward=np.array([0.0, 0.0, -1.0]),
        )
    if "bottom" in sides:
        b.quad(
            p(s0, z0, back),
            depth_vec,
            p(s1, z0, 0) - p(s0, z0, 0),
            label,
            instance,
            reveal_color,
            outward=np.array([0.0, 0.0, 1.0]),
        )


def _add_doors(b: _Builder, walls, height, footprints) -> None:
    """1-2 doors: a panel recessed 4-8 cm, a casing 1-2.5 cm proud of the wall, a handle."""
    rng = b.rng
    for _ in range(rng.choice([1, 1, 2])):
        for _attempt in range(10):
            wall = walls[rng.integers(4)]
            door_w, door_h = rng.uniform(0.8, 1.0), rng.uniform(2.0, 2.2)
            casing = rng.uniform(0.07, 0.12)
            s0 = rng.uniform(0.2, max(0.21, wall.length - door_w - 0.2))
            s1 = s0 + door_w
            if not wall.free(s0 - casing, s1 + casing, 0.0, door_h + casing):
                continue
            wall.cut(s0, s1, 0.0, door_h, height)
            wall.spans[-1] = (s0 - casing, s1 + casing, 0.0, door_h + casing)
            inst = b.new_instance()
            panel = b.jitter_color(_DOOR_PAINTS)
            frame = np.clip(panel * rng.uniform(0.8, 1.1) + rng.normal(0, 0.03, 3), 0, 1)
            _opening(
                b,
                wall,
                s0,
                s1,
                0.0,
                door_h,
                rng.uniform(0.04, 0.08),
                DOOR,
                inst,
                panel,
                frame,
                sides=("left", "right", "top"),
            )
            proud = rng.uniform(0.02, 0.04)
            _wall_box(b, wall, s0 - casing / 2, 0.0, 0.0, (casing, proud, door_h), DOOR, inst, frame)
            _wall_box(b, wall, s1 + casing / 2, 0.0, 0.0, (casing, proud, door_h), DOOR, inst, frame)
            _wall_box(b, wall, (s0 + s1) / 2, door_h, 0.0, (door_w + 2 * casing, proud, casing), DOOR, inst, frame)
            handle_s = s1 - 0.08 if rng.random() < 0.5 else s0 + 0.08
            _wall_box(
                b,
                wall,
                handle_s,
                rng.uniform(0.95, 1.05),
                -0.04,
                (0.12, 0.10, 0.03),
                DOOR,
                inst,
                b.jitter_color(_METALS),
            )
            # keep the swing area clear of furniture
            c = wall.point((s0 + s1) / 2, 0.0, door_w / 2)
            ext = _rotated_extent(door_w + 2 * casing, door_w, wall.yaw)
            footprints.add(c[0] - ext[0], c[0] + ext[0], c[1] - ext[1], c[1] + ext[1])
            break


def _add_windows(b: _Builder, walls, height) -> None:
    """0-3 windows: deep reveal (12-25 cm) to a glass pane with mullions, and a sill."""
    rng = b.rng
    for _ in range(rng.choice([1, 2, 2, 3])):
        for _attempt in range(10):
            wall = walls[rng.integers(4)]
            win_w = rng.uniform(0.8, min(2.6, wall.length - 0.6))
            z0 = rng.uniform(0.75, 1.1)
            z1 = min(height - 0.25, z0 + rng.uniform(1.0, 1.7))
            s0 = rng.uniform(0.3, max(0.31, wall.length - win_w - 0.3))
            s1 = s0 + win_w
            if not wall.free(s0, s1, z0 - 0.1, z1):
                continue
            wall.cut(s0, s1, z0, z1, height)
            inst = b.new_instance()
            glass = b.jitter_color(_GLASS, 0.05)
            frame = b.jitter_color(np.vstack([_METALS, _STRUCTURE_WHITES[:2]]), 0.03)
            recess = rng.uniform(0.12, 0.25)
            _opening(b, wall, s0, s1, z0, z1, recess, WINDOW, inst, glass, frame)
            # mullions and a transom in the frame colour, just in front of the glass
            n_panes = max(1, int(round(win_w / rng.uniform(0.6, 1.0))))
            for k in range(1, n_panes):
                s = s0 + k * win_w / n_panes
                _wall_box(b, wall, s, z0, -recess, (0.05, 0.05, z1 - z0), WINDOW, inst, frame, skip=("-y", "-z", "+z"))
            sill_out = rng.uniform(0.03, 0.12)
            _wall_box(b, wall, (s0 + s1) / 2, z0 - 0.03, 0.0, (win_w + 0.1, sill_out, 0.03), WINDOW, inst, frame)
            break


def _add_boards(b: _Builder, walls, height) -> None:
    """0-2 boards (white, chalk or cork), 2 cm proud of the wall, with a metal frame and tray."""
    rng = b.rng
    for _ in range(rng.choice([1, 1, 2])):
        for _attempt in range(10):
            wall = walls[rng.integers(4)]
            board_w = rng.uniform(1.0, min(2.8, wall.length - 0.5))
            board_h = rng.uniform(0.9, 1.3)
            z0 = rng.uniform(0.8, 1.0)
            s0 = rng.uniform(0.25, max(0.26, wall.length - board_w - 0.25))
            s1 = s0 + board_w
            if not wall.free(s0, s1, z0, z0 + board_h):
                continue
            wall.cut(s0, s1, z0, z0 + board_h, height)
            inst = b.new_instance()
            surface = b.jitter_color(_BOARD_SURFACES, 0.02)
            frame = b.jitter_color(_METALS, 0.02)
            proud = rng.uniform(0.02, 0.04)
            _wall_box(b, wall, (s0 + s1) / 2, z0, 0.0, (board_w, proud, board_h), BOARD, inst, surface, skip=("-y",))
            # frame bars along the edges, slightly prouder than the surface
            bar = rng.uniform(0.03, 0.05)
            for z in (z0, z0 + board_h - bar):
                _wall_box(b, wall, (s0 + s1) / 2, z, 0.0, (board_w, proud + 0.008, bar), BOARD, inst, frame)
            for s in (s0 + bar / 2, s1 - bar / 2):
                _wall_box(b, wall, s, z0, 0.0, (bar, proud + 0.008, board_h), BOARD, inst, frame)
            _wall_box(b, wall, (s0 + s1) / 2, z0 - 0.02, 0.0, (board_w * 0.9, 0.07, 0.02), BOARD, inst, frame)
            break


def _add_bookcases(b: _Builder, walls, height, footprints, floor_quad, width, depth) -> None:
    """0-3 bookcases against walls: sides, shelves, a back, and rows of coloured books."""
    rng = b.rng
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        for _attempt in range(10):
            wall = walls[rng.integers(4)]
            case_w, case_d = rng.uniform(0.7, 1.6), rng.uniform(0.3, 0.45)
            case_h = rng.uniform(1.6, min(2.3, height - 0.2))
            s0 = rng.uniform(0.15, max(0.16, wall.length - case_w - 0.15))
            s1 = s0 + case_w
            center = wall.point((s0 + s1) / 2, 0.0, case_d / 2)
            ext = _rotated_extent(case_w, case_d, wall.yaw)
            x0, x1 = center[0] - ext[0], center[0] + ext[0]
            y0, y1 = center[1] - ext[1], center[1] + ext[1]
            if not wall.free(s0, s1, 0.0, case_h, margin=0.02) or not footprints.free(x0, x1, y0, y1):
                continue
            wall.cut(s0, s1, 0.0, case_h, height)
            footprints.add(x0, x1, y0, y1)
            _cut_xy(floor_quad, x0, x1, y0, y1, width, depth, a_is_x=True)
            inst = b.new_instance()
            wood = b.jitter_color(np.vstack([_WOODS, _METALS[:1], _STRUCTURE_WHITES[:1]]))
            board = 0.02
            s_mid = (s0 + s1) / 2
            for s in (s0 + board / 2, s1 - board / 2):
                _wall_box(b, wall, s, 0.0, 0.0, (board, case_d, case_h), BOOKCASE, inst, wood)
            # back panel seen through the shelves
            b.quad(
                wall.point(s0, 0.0, 0.005),
                wall.point(s1, 0.0, 0.005) - wall.point(s0, 0.0, 0.005),
                (0, 0, case_h),
                BOOKCASE,
                inst,
                wood * 0.8,
                outward=np.array([wall.normal[0], wall.normal[1], 0.0]),
            )
            n_shelves = int(rng.integers(4, 7))
            plinth = 0.06
            shelf_z = np.linspace(plinth, case_h - board, n_shelves + 1)
            # kick plate: the floor under the case is cut away, so close the gap below
            _wall_box(
                b,
                wall,
                s_mid,
                0.0,
                case_d - 0.02,
                (case_w - 2 * board, 0.02, plinth),
                BOOKCASE,
                inst,
                wood,
                skip=("-z", "+z"),
            )
            for z in shelf_z:
                _wall_box(b, wall, s_mid, z, 0.0, (case_w - 2 * board, case_d, board), BOOKCASE, inst, wood)
            for z_lo, z_hi in zip(shelf_z[:-1], shelf_z[1:]):
                gap = z_hi - z_lo - board
                s = s0 + board
                while s < s1 - board - 0.03:
                    book_w = rng.uniform(0.02, 0.06)
                    if rng.random() < 0.15:  # an empty stretch of shelf
                        s += rng.uniform(0.05, 0.2)
                        continue
                    book_w = min(book_w, s1 - board - s)
                    book_h = min(gap - 0.01, rng.uniform(0.15, 0.32))
                    book_d = rng.uniform(0.15, case_d - 0.03)
                    color = np.clip(rng.uniform(0.05, 0.9, 3), 0, 1)
                    _wall_box(
                        b,
                        wall,
                        s + book_w / 2,
                        z_lo + board,
                        0.01,
                        (book_w, book_d, book_h),
                        BOOKCASE,
                        inst,
                        color,
                        skip=("-y", "-z"),
                    )
                    s += book_w
            break


def _add_sofas(b: _Builder, walls, footprints, width, depth) -> None:
    """0-2 sofas, back to a wall or free-standing: seat, backrest, two armrests."""
    rng = b.rng
    for _ in range(rng.choice([0, 1, 1, 2])):
        for _attempt in range(10):
            sofa_l, sofa_d = rng.uniform(1.4, 2.4), rng.uniform(0.8, 1.0)
            if rng.random() < 0.7:
                wall = walls[rng.integers(4)]
                s = rng.uniform(sofa_l / 2 + 0.2, max(sofa_l / 2 + 0.21, wall.length - sofa_l / 2 - 0.2))
                center = wall.point(s, 0.0, sofa_d / 2 + 0.05)[:2]
                yaw = wall.yaw
            else:
                center = np.array([rng.uniform(1.5, width - 1.5), rng.uniform(1.5, depth - 1.5)])
                yaw = rng.uniform(0, 2 * math.pi)
            ext = _rotated_extent(sofa_l, sofa_d, yaw)
            x0, x1, y0, y1 = center[0] - ext[0], center[0] + ext[0], center[1] - ext[1], center[1] + ext[1]
            if x0 < 0.05 or y0 < 0.05 or x1 > width - 0.05 or y1 > depth - 0.05:
                continue
            if not footprints.free(x0, x1, y0, y1):
                continue
            footprints.add(x0, x1, y0, y1)
            inst = b.new_instance()
            fabric = b.jitter_color(_SOFA_FABRICS)
            c, s_ = math.cos(yaw), math.sin(yaw)
            local_x, local_y = np.array([c, s_]), np.array([-s_, c])

            def at(lx, ly, center=center, local_x=local_x, local_y=local_y):
                return center + lx * local_x + ly * local_y

            arm_w, back_d = rng.uniform(0.15, 0.25), rng.uniform(0.15, 0.25)
            seat_h, back_h, arm_h = rng.uniform(0.38, 0.46), rng.uniform(0.75, 0.9), rng.uniform(0.55, 0.65)
            # the sofa's back is at local -y (towards the wall it stands against)
            b.box(at(0, back_d / 2), 0.0, (sofa_l - 2 * arm_w, sofa_d - back_d, seat_h), yaw, SOFA, inst, fabric)
            b.box(at(0, -sofa_d / 2 + back_d / 2), 0.0, (sofa_l, back_d, back_h), yaw, SOFA, inst, fabric * 0.92)
            for side in (-1, 1):
                b.box(
                    at(side * (sofa_l / 2 - arm_w / 2), back_d / 2),
                    0.0,
                    (arm_w, sofa_d - back_d, arm_h),
                    yaw,
                    SOFA,
                    inst,
                    fabric * 0.95,
                )
            # seat cushions slightly proud of the base
            for k in range(2 if sofa_l < 1.9 else 3):
                n = 2 if sofa_l < 1.9 else 3
                cw = (sofa_l - 2 * arm_w) / n
                lx = -sofa_l / 2 + arm_w + cw * (k + 0.5)
                b.box(
                    at(lx, back_d / 2),
                    seat_h,
                    (cw - 0.02, sofa_d - back_d - 0.02, 0.08),
                    yaw,
                    SOFA,
                    inst,
                    np.clip(fabric * 1.05, 0, 1),
                    skip=("-z",),
                )
            break


def _add_chair(b: _Builder, center, yaw, color, metal, style: int) -> None:
    """A chair whose front faces local +y: 4-leg chair (style 0) or office chair (style 1)."""
    rng = b.rng
    inst = b.new_instance()
    seat_w = rng.uniform(0.42, 0.52)
    seat_z = rng.uniform(0.42, 0.50)
    c, s = math.cos(yaw), math.sin(yaw)
    local_x, local_y = np.array([c, s]), np.array([-s, c])

    def at(lx, ly):
        return np.asarray(center) + lx * local_x + ly * local_y

    seat_t = rng.uniform(0.04, 0.08)
    b.box(at(0, 0), seat_z, (seat_w, seat_w, seat_t), yaw, CHAIR, inst, color, skip=())
    back_h = rng.uniform(0.35, 0.55)
    back_gap = rng.uniform(0.0, 0.08)
    b.box(
        at(0, -seat_w / 2 + 0.03),
        seat_z + seat_t + back_gap,
        (seat_w * rng.uniform(0.85, 1.0), 0.05, back_h),
        yaw,
        CHAIR,
        inst,
        color,
        skip=(),
    )
    if style == 0:
        leg = rng.uniform(0.025, 0.04)
        for lx in (-1, 1):
            for ly in (-1, 1):
                b.box(
                    at(lx * (seat_w / 2 - leg), ly * (seat_w / 2 - leg)),
                    0.0,
                    (leg, leg, seat_z),
                    yaw,
                    CHAIR,
                    inst,
                    metal,
                    skip=("-z", "+z"),
                )
        # back posts
        for lx in (-1, 1):
            b.box(
                at(lx * (seat_w / 2 - leg), -seat_w / 2 + 0.03),
                seat_z + seat_t,
                (leg, leg, back_gap + 0.05),
                yaw,
                CHAIR,
                inst,
                metal,
                skip=("-z", "+z"),
            )
    else:
        b.box(at(0, 0), 0.08, (0.05, 0.05, seat_z - 0.08), yaw, CHAIR, inst, metal, skip=("-z", "+z"))
        for k in range(5):
            a = yaw + 2 * math.pi * k / 5
            d = np.array([math.cos(a), math.sin(a)])
            b.box(np.asarray(center) + 0.16 * d, 0.03, (0.32, 0.04, 0.04), a, CHAIR, inst, metal)
        if rng.random() < 0.6:
            for lx in (-1, 1):
                b.box(
                    at(lx * (seat_w / 2 + 0.02), 0.0),
                    seat_z + 0.18,
                    (0.05, seat_w * 0.7, 0.04),
                    yaw,
                    CHAIR,
                    inst,
                    metal,
                )


def _add_tables_and_chairs(
    b: _Builder, footprints, width, depth
) -> list[tuple[np.ndarray, float, float, float, float]]:
    """1-4 tables with chairs around them facing the table, plus a few free chairs.

    Returns each table as (center (2,), yaw, length, width, top height) for placing clutter.
    """
    rng = b.rng
    tables = []
    for _ in range(rng.choice([1, 2, 2, 3, 4])):
        for _attempt in range(15):
            tab_l, tab_w = rng.uniform(1.0, 2.4), rng.uniform(0.6, 1.0)
            yaw = rng.choice([0.0, math.pi / 2]) + (rng.normal(0, 0.2) if rng.random() < 0.3 else 0.0)
            center = np.array([rng.uniform(0.6, width - 0.6), rng.uniform(0.6, depth - 0.6)])
            ext = _rotated_extent(tab_l + 1.0, tab_w + 1.4, yaw)  # room for chairs around it
            x0, x1, y0, y1 = center[0] - ext[0], center[0] + ext[0], center[1] - ext[1], center[1] + ext[1]
            if x0 < 0.0 or y0 < 0.0 or x1 > width or y1 > depth or not footprints.free(x0, x1, y0, y1):
                continue
            footprints.add(x0, x1, y0, y1)
            inst = b.new_instance()
            top = b.jitter_color(_TABLE_TOPS)
            metal = b.jitter_color(_METALS)
            top_z, top_t = rng.uniform(0.70, 0.78), rng.uniform(0.025, 0.05)
            b.box(center, top_z - top_t, (tab_l, tab_w, top_t), yaw, TABLE, inst, top, skip=())
            c, s = math.cos(yaw), math.sin(yaw)
            local_x, local_y = np.array([c, s]), np.array([-s, c])
            leg = rng.uniform(0.04, 0.07)
            if rng.random() < 0.7:
                for lx in (-1, 1):
                    for ly in (-1, 1):
                        p = center + lx * (tab_l / 2 - leg) * local_x + ly * (tab_w / 2 - leg) * local_y
                        b.box(p, 0.0, (leg, leg, top_z - top_t), yaw, TABLE, inst, metal, skip=("-z", "+z"))
            else:  # panel ends, as on many office desks
                for lx in (-1, 1):
                    p = center + lx * (tab_l / 2 - 0.03) * local_x
                    b.box(p, 0.0, (0.03, tab_w * 0.9, top_z - top_t), yaw, TABLE, inst, top * 0.9, skip=("-z", "+z"))
            tables.append((center, yaw, tab_l, tab_w, top_z))
            chair_color = b.jitter_color(_CHAIR_FABRICS)
            chair_metal = b.jitter_color(_METALS)
            style = int(rng.integers(2))
            per_side = max(1, int(tab_l / 0.7))
            for side in (-1, 1):
                for k in range(per_side):
                    if rng.random() < 0.3:
                        continue
                    lx = -tab_l / 2 + tab_l * (k + 0.5) / per_side + rng.normal(0, 0.05)
                    ly = side * (tab_w / 2 + rng.uniform(0.1, 0.4))
                    p = center + lx * local_x + ly * local_y
                    # the chair's front (local +y) faces the table
                    chair_yaw = yaw + (math.pi if side > 0 else 0.0) + rng.normal(0, 0.25)
                    _add_chair(b, p, chair_yaw, chair_color, chair_metal, style)
            break
    for _ in range(rng.choice([0, 1, 2, 3])):
        for _attempt in range(10):
            p = np.array([rng.uniform(0.5, width - 0.5), rng.uniform(0.5, depth - 0.5)])
            if not footprints.free(p[0] - 0.35, p[0] + 0.35, p[1] - 0.35, p[1] + 0.35):
                continue
            footprints.add(p[0] - 0.35, p[0] + 0.35, p[1] - 0.35, p[1] + 0.35)
            _add_chair(
                b,
                p,
                rng.uniform(0, 2 * math.pi),
                b.jitter_color(_CHAIR_FABRICS),
                b.jitter_color(_METALS),
                int(rng.integers(2)),
            )
            break
    return tables


def _add_clutter(b: _Builder, walls, height, footprints, tables, width, depth) -> None:
    """Clutter: monitors/boxes/cups/papers on tables, bins/boxes/plants/cabinets on the floor,
    pictures, radiators and wall cabinets on walls, a ceiling lamp or two."""
    rng = b.rng
    for center, yaw, tab_l, tab_w, top_z in tables:
        c, s = math.cos(yaw), math.sin(yaw)
        local_x, local_y = np.array([c, s]), np.array([-s, c])
        for _ in range(rng.integers(0, 5)):
            kind = rng.integers(4)
            if kind == 0:  # monitor on a foot
                size = (rng.uniform(0.4, 0.6), 0.04, rng.uniform(0.28, 0.4))
                z = top_z + 0.1
            elif kind == 1:  # box / printer
                size = (rng.uniform(0.15, 0.45), rng.uniform(0.15, 0.4), rng.uniform(0.05, 0.3))
                z = top_z
            elif kind == 2:  # cup / bottle
                size = (0.08, 0.08, rng.uniform(0.1, 0.25))
                z = top_z
            else:  # papers, laptop
                size = (rng.uniform(0.25, 0.4), rng.uniform(0.2, 0.3), rng.uniform(0.005, 0.025))
                z = top_z
            lx = rng.uniform(-tab_l / 2 + size[0] / 2, tab_l / 2 - size[0] / 2)
            ly = rng.uniform(-tab_w / 2 + 0.15, tab_w / 2 - 0.15)
            p = center + lx * local_x + ly * local_y
            inst = b.new_instance()
            color = np.clip(rng.uniform(0.05, 0.95, 3), 0, 1)
            obj_yaw = yaw + rng.normal(0, 0.3)
            if kind == 0:
                dark = np.full(3, rng.uniform(0.05, 0.2))
                b.box(p, top_z, (0.2, 0.15, 0.02), obj_yaw, CLUTTER, inst, dark)
                b.box(p, top_z + 0.02, (0.04, 0.04, 0.1), obj_yaw, CLUTTER, inst, dark, skip=("-z", "+z"))
                color = dark
            b.box(p, z, size, obj_yaw, CLUTTER, inst, color)
    # free-standing clutter on the floor, often near walls
    for _ in range(rng.integers(2, 9)):
        for _attempt in range(10):
            kind = rng.integers(4)
            if kind == 0:  # waste bin
                size = (0.3, 0.3, rng.uniform(0.3, 0.5))
            elif kind == 1:  # cardboard box / crate
                size = (rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.6))
            elif kind == 2:  # plant: pot + foliage
                size = (0.3, 0.3, 0.3)
            else:  # low cabinet / filing cabinet
                size = (rng.uniform(0.4, 1.0), rng.uniform(0.4, 0.6), rng.uniform(0.6, 1.3))
            if rng.random() < 0.6:
                wall = walls[rng.integers(4)]
                s = rng.uniform(0.4, wall.length - 0.4)
                p = wall.point(s, 0.0, size[1] / 2 + 0.03)[:2]
                yaw = wall.yaw
            else:
                p = np.array([rng.uniform(0.4, width - 0.4), rng.uniform(0.4, depth - 0.4)])
                yaw = rng.uniform(0, 2 * math.pi)
            ext = _rotated_extent(size[0] * (2.0 if kind == 2 else 1.0), size[1] * (2.0 if kind == 2 else 1.0), yaw)
            x0, x1, y0, y1 = p[0] - ext[0], p[0] + ext[0], p[1] - ext[1], p[1] + ext[1]
            if x0 < 0.02 or y0 < 0.02 or x1 > width - 0.02 or y1 > depth - 0.02:
                continue
            if not footprints.free(x0, x1, y0, y1, margin=0.02):
                continue
            footprints.add(x0, x1, y0, y1)
            inst = b.new_instance()
            if kind == 2:
                b.box(p, 0.0, size, yaw, CLUTTER, inst, b.jitter_color(_WOODS))
                green = np.array([rng.uniform(0.1, 0.3), rng.uniform(0.35, 0.6), rng.uniform(0.1, 0.25)])
                for _ in range(5):
                    off = rng.normal(0, 0.12, 2)
                    b.box(
                        p + off,
                        0.3 + rng.uniform(0, 0.5),
                        (rng.uniform(0.15, 0.35),) * 2 + (rng.uniform(0.1, 0.3),),
                        rng.uniform(0, math.pi),
                        CLUTTER,
                        inst,
                        np.clip(green + rng.normal(0, 0.05, 3), 0, 1),
                        skip=(),
                    )
            else:
                color = rng.uniform(0.1, 0.9, 3) if kind != 1 else np.array([0.62, 0.48, 0.30]) + rng.normal(0, 0.04, 3)
                b.box(p, 0.0, size, yaw, CLUTTER, inst, np.clip(color, 0, 1))
            break
    # things on walls: pictures/posters (1 cm proud), radiators, wall cabinets
    for _ in range(rng.integers(1, 6)):
        for _attempt in range(10):
            wall = walls[rng.integers(4)]
            kind = rng.integers(3)
            if kind == 0:
                w, h, z0, proud = (
                    rng.uniform(0.3, 1.0),
                    rng.uniform(0.3, 0.9),
                    rng.uniform(1.2, 1.7),
                    rng.uniform(0.01, 0.04),
                )
            elif kind == 1:
                w, h, z0, proud = (
                    rng.uniform(0.6, 1.5),
                    rng.uniform(0.4, 0.6),
                    rng.uniform(0.1, 0.2),
                    rng.uniform(0.08, 0.12),
                )
            else:
                w, h, z0, proud = (
                    rng.uniform(0.6, 1.2),
                    rng.uniform(0.5, 0.8),
                    rng.uniform(1.5, 1.9),
                    rng.uniform(0.3, 0.4),
                )
            z1 = min(z0 + h, height - 0.1)
            s0 = rng.uniform(0.2, max(0.21, wall.length - w - 0.2))
            if not wall.free(s0, s0 + w, z0, z1, margin=0.05):
                continue
            if kind == 1:
                c = wall.point(s0 + w / 2, 0, proud / 2)
                ext = _rotated_extent(w, proud, wall.yaw)
                if not footprints.free(c[0] - ext[0], c[0] + ext[0], c[1] - ext[1], c[1] + ext[1], margin=0.0):
                    continue
                footprints.add(c[0] - ext[0], c[0] + ext[0], c[1] - ext[1], c[1] + ext[1])
            wall.cut(s0, s0 + w, z0, z1, height)
            inst = b.new_instance()
            if kind == 0:
                color = rng.uniform(0.05, 0.95, 3)
            elif kind == 1:
                color = np.clip(np.array([0.92, 0.92, 0.9]) + rng.normal(0, 0.02, 3), 0, 1)
            else:
                color = b.jitter_color(np.vstack([_WOODS, _STRUCTURE_WHITES[:2]]))
            _wall_box(b, wall, s0 + w / 2, z0, 0.0, (w, proud, z1 - z0), CLUTTER, inst, color, skip=("-y",))
            if kind == 1:  # radiator fins
                for k in range(int(w / 0.08)):
                    _wall_box(
                        b,
                        wall,
                        s0 + 0.04 + k * 0.08,
                        z0,
                        proud,
                        (0.02, 0.02, z1 - z0),
                        CLUTTER,
                        inst,
                        color * 0.95,
                        skip=("-y", "-z"),
                    )
            break
    for _ in range(rng.choice([0, 1, 2])):  # ceiling lamps (S3DIS labels them clutter)
        p = np.array([rng.uniform(1.0, width - 1.0), rng.uniform(1.0, depth - 1.0)])
        lamp_h = rng.uniform(0.05, 0.12)
        b.box(
            p,
            height - lamp_h,
            (rng.uniform(0.6, 1.2), rng.uniform(0.2, 0.6), lamp_h),
            rng.choice([0.0, math.pi / 2]),
            CLUTTER,
            b.new_instance(),
            np.clip(np.array([0.95, 0.95, 0.92]) + rng.normal(0, 0.02, 3), 0, 1),
            skip=("+z",),
        )


# ----------------------------------------------------------------------------- sampling
def _shade(color: np.ndarray, normal: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Ambient + Lambert shading, as the colour a scanner's camera would record."""
    lambert = np.abs(normal @ light)  # both sides lit: rooms are lit from many sides
    return color * (0.72 + 0.28 * lambert)[:, None]


def _texture(kind: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Brightness factor (N,) of the surface textures (floor and ceiling tiles)."""
    factor = np.ones(len(points))
    tiles = kind == TEXTURE_TILES
    if tiles.any():
        # 0.6 m tiles with 1 cm dark grout lines and a faint checker
        p = points[tiles, :2] / 0.6
        frac = p - np.floor(p)
        grout = (np.minimum(frac, 1 - frac) < 0.01 / 0.6).any(axis=1)
        checker = (np.floor(p[:, 0]) + np.floor(p[:, 1])) % 2
        factor[tiles] = np.where(grout, 0.75, 0.97 + 0.06 * checker)
    return factor


def sample_room(
    scene: RoomScene,
    num_points: int = 100_000,
    seed: int | None = None,
    noise_std: float = 0.004,
    color_noise_std: float = 0.03,
) -> dict[str, np.ndarray]:
    """Samples points on the scene's surfaces, weighted by area x density.

    Positions get Gaussian noise of `noise_std` metres, colours Gaussian noise of
    `color_noise_std` (in [0, 1] units). Deterministic in (`scene`, `seed`).

    Args:
        scene: a `RoomScene` from `build_room`.
        num_points: number of points N.
        seed: the sampling seed; None uses the scene's seed.
        noise_std: position noise in metres.
        color_noise_std: colour noise in [0, 1] units.

    Returns:
        room: a dict with coord (N, 3) float32 metres, color (N, 3) uint8, label (N,) int64 in
            0..12 (S3DIS order), normal (N, 3) float32 unit outward surface normals (exact,
            before noise), instance (N,) int64 object ids.

    Raises:
        ValueError: when `num_points` is not positive.
    """
    if num_points <= 0:
        raise ValueError(f"num_points must be positive, got {num_points}")
    rng = np.random.default_rng([scene.seed if seed is None else seed, 1])
    q = scene.arrays()
    weights = q["open_area"] * q["density"] * CLASS_DENSITY[q["label"]]
    weights = weights / weights.sum()
    hole_quad, hole_rect = [], []
    for i, quad in enumerate(scene.quads):
        for h in quad.holes:
            hole_quad.append(i)
            hole_rect.append(h)
    hole_quad = np.array(hole_quad, dtype=np.int64)
    hole_rect = np.array(hole_rect, dtype=np.float64).reshape(-1, 4)

    chosen_quads, chosen_ab = [], []
    remaining = num_points
    while remaining > 0:
        # draw a little more than needed; the holes reject a few percent
        n = int(remaining * 1.15) + 64
        qi = rng.choice(len(weights), size=n, p=weights)
        ab = rng.random((n, 2))
        keep = np.ones(n, dtype=bool)
        for hq, (a0, a1, b0, b1) in zip(hole_quad, hole_rect):
            keep &= ~((qi == hq) & (ab[:, 0] > a0) & (ab[:, 0] < a1) & (ab[:, 1] > b0) & (ab[:, 1] < b1))
        qi, ab = qi[keep][:remaining], ab[keep][:remaining]
        chosen_quads.append(qi)
        chosen_ab.append(ab)
        remaining -= len(qi)
    qi = np.concatenate(chosen_quads)
    ab = np.concatenate(chosen_ab)

    points = q["origin"][qi] + ab[:, :1] * q["edge_u"][qi] + ab[:, 1:] * q["edge_v"][qi]
    normals = q["normal"][qi]
    color = _shade(q["color"][qi], normals, scene.light_direction)
    color = color * _texture(q["texture"][qi], points)[:, None]
    color = color + rng.normal(0.0, color_noise_std, color.shape)
    # sensor noise mostly along the normal (range noise), a little tangential
    points = points + normals * rng.normal(0.0, noise_std, (len(points), 1))
    points = points + rng.normal(0.0, noise_std * 0.25, points.shape)
    return {
        "coord": points.astype(np.float32),
        "color": np.clip(np.round(color * 255.0), 0, 255).astype(np.uint8),
        "label": q["label"][qi],
        "normal": normals.astype(np.float32),
        "instance": q["instance"][qi],
    }


def generate_room(seed: int, num_points: int = 100_000) -> dict[str, np.ndarray]:
    """One procedural room, deterministic in `seed` (`sample_room(build_room(seed))`).

    Args:
        seed: the room's seed.
        num_points: number of points N.

    Returns:
        room: a dict with coord (N, 3) float32, color (N, 3) uint8, label (N,) int64 in 0..12
            (S3DIS order, see `pcseg.data.classes.S3DIS_CLASS_NAMES`), normal (N, 3) float32,
            instance (N,) int64.
    """
    return sample_room(build_room(seed), num_points, seed=seed)


# ----------------------------------------------------------------------------- rendering
def look_at_pose(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """The pose of a camera at `eye` looking at `target`.

    The camera frame is x right, y down, z forward, as in `pcseg.bridge`.

    Args:
        eye: (3,) camera position in metres.
        target: (3,) point looked at.
        up: (3,) the world's up direction.

    Returns:
        T_world_from_camera: (4, 4) float64.

    Raises:
        ValueError: when `eye` equals `target` or the viewing direction is parallel to `up`.
    """
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    if np.linalg.norm(forward) == 0:
        raise ValueError("eye and target must differ")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("the viewing direction must not be parallel to `up`")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye
    return pose


def render_view(
    scene: RoomScene, camera, T_world_from_camera: np.ndarray, max_depth: float = 20.0
) -> dict[str, np.ndarray]:
    """Ray-casts the scene's quads from a pinhole camera: an exact RGB-D + label view.

    Pixel (u, v) (column, row, 0-based centres) sees the ray through
    `((u - cx) / fx, (v - cy) / fy, 1)` in camera coordinates (x right, y down, z forward).

    Args:
        scene: a `RoomScene` from `build_room`.
        camera: a `pcseg.bridge.PinholeCamera` (any object with fx, fy, cx, cy, width, height).
        T_world_from_camera: (4, 4) camera pose, e.g. from `look_at_pose`.
        max_depth: rays hit nothing beyond this many metres.

    Returns:
        view: a dict with depth (H, W) float32 metres along the optical axis (0 where nothing
            is hit), label (H, W) int64 (-1 where nothing is hit), instance (H, W) int64 (-1
            likewise), color (H, W, 3) uint8 (shaded, noise-free), normal (H, W, 3) float32
            (world frame).

    Raises:
        ValueError: when `T_world_from_camera` is not (4, 4).
    """
    camera_to_world = np.asarray(T_world_from_camera, dtype=np.float64)
    if camera_to_world.shape != (4, 4):
        raise ValueError(f"T_world_from_camera must be (4, 4), got {camera_to_world.shape}")
    fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
    width, height = int(camera.width), int(camera.height)
    rot, eye = camera_to_world[:3, :3], camera_to_world[:3, 3]
    world_to_cam = rot.T
    q = scene.arrays()
    v_idx, u_idx = np.mgrid[0:height, 0:width]
    rays_cam = np.stack([(u_idx - cx) / fx, (v_idx - cy) / fy, np.ones_like(u_idx, dtype=np.float64)], -1)
    depth = np.full((height, width), np.inf)
    hit_quad = np.full((height, width), -1, dtype=np.int64)
    holes_of = [quad.holes for quad in scene.quads]
    for i in range(len(scene.quads)):
        origin, eu, ev, n = q["origin"][i], q["edge_u"][i], q["edge_v"][i], q["normal"][i]
        # back faces are invisible (surfaces are seen from the room side only)
        if np.dot(eye - origin, n) <= 0:
            continue
        corners = np.stack([origin, origin + eu, origin + ev, origin + eu + ev]) - eye
        cam = corners @ world_to_cam.T
        if (cam[:, 2] <= 1e-6).all():
            continue
        if (cam[:, 2] > 1e-6).all():
            pu = fx * cam[:, 0] / cam[:, 2] + cx
            pv = fy * cam[:, 1] / cam[:, 2] + cy
            u0, u1 = max(0, int(np.floor(pu.min()))), min(width, int(np.ceil(pu.max())) + 1)
            v0, v1 = max(0, int(np.floor(pv.min()))), min(height, int(np.ceil(pv.max())) + 1)
        else:  # straddles the camera plane: test the whole image
            u0, u1, v0, v1 = 0, width, 0, height
        if u0 >= u1 or v0 >= v1:
            continue
        rays = rays_cam[v0:v1, u0:u1] @ rot.T  # world directions, z_cam = 1
        n_cam_dot = rays @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.dot(origin - eye, n) / n_cam_dot  # = depth along the optical axis
        hit = eye + rays * t[..., None] - origin
        # solve hit = a * eu + b * ev in the quad's plane by least squares on the 2x2 Gram
        gram = np.array([[eu @ eu, eu @ ev], [eu @ ev, ev @ ev]])
        rhs = np.stack([hit @ eu, hit @ ev], -1)
        ab = rhs @ np.linalg.inv(gram).T
        inside = (
            (t > 1e-6) & (t < max_depth) & (ab[..., 0] >= 0) & (ab[..., 0] <= 1) & (ab[..., 1] >= 0) & (ab[..., 1] <= 1)
        )
        for a0, a1, b0, b1 in holes_of[i]:
            inside &= ~((ab[..., 0] > a0) & (ab[..., 0] < a1) & (ab[..., 1] > b0) & (ab[..., 1] < b1))
        sub_depth = depth[v0:v1, u0:u1]
        closer = inside & (t < sub_depth)
        sub_depth[closer] = t[closer]
        hit_quad[v0:v1, u0:u1][closer] = i
    seen = hit_quad >= 0
    label = np.where(seen, q["label"][hit_quad], -1)
    instance = np.where(seen, q["instance"][hit_quad], -1)
    normal = np.where(seen[..., None], q["normal"][hit_quad], 0.0)
    points = eye + (rays_cam @ rot.T) * np.where(seen, depth, 0.0)[..., None]
    color = _shade(q["color"][hit_quad].reshape(-1, 3), normal.reshape(-1, 3), scene.light_direction)
    color = color * _texture(q["texture"][hit_quad].reshape(-1), points.reshape(-1, 3))[:, None]
    color = np.where(seen.reshape(-1, 1), color, 0.0).reshape(height, width, 3)
    return {
        "depth": np.where(seen, depth, 0.0).astype(np.float32),
        "label": label.astype(np.int64),
        "instance": instance.astype(np.int64),
        "color": np.clip(np.round(color * 255.0), 0, 255).astype(np.uint8),
        "normal": normal.astype(np.float32),
    }


# Kinect v1 depth noise (C. V. Nguyen, S. Izadi, D. Lovell, "Modeling Kinect sensor noise for
# improved 3D reconstruction and tracking", 3DIMPVT 2012): axial sigma 0.0012 + 0.0019 (z - 0.4)^2
# metres at depth z, lateral sigma about 0.8 px.
KINECT_AXIAL_NOISE = (0.0012, 0.0019, 0.4)
KINECT_LATERAL_NOISE_PX = 0.8


@dataclass(frozen=True)
class ViewSensor:
    """A hand-held RGB-D sensor for `generate_views`: its image, range and where its depth fails.

    Attributes:
        width, height, fov_degrees: the image and its horizontal field of view (a Kinect v1 at
            half resolution: 320 x 240, 63 degrees).
        max_depth: metres beyond which there is no reading.
        edge_dropout: chance that a pixel at a depth discontinuity (the projector's shadow and
            mixed pixels) has no reading.
        hole_fraction: share of the image lost in blobs (dark, glossy or grazing surfaces).
        height_range: (low, high) metres of the camera above the floor.
        pitch_degrees: (low, high) downward tilt.
    """

    width: int = 320
    height: int = 240
    fov_degrees: float = 63.0
    max_depth: float = 8.0
    edge_dropout: float = 0.6
    hole_fraction: float = 0.06
    height_range: tuple = (1.0, 1.8)
    pitch_degrees: tuple = (5.0, 40.0)


def generate_views(
    seed: int, num_views: int, num_points: int, sensor: ViewSensor = ViewSensor()
) -> list[dict[str, np.ndarray]]:
    """Partial RGB-D views of a procedural room, as a hand-held depth camera sees it.

    Where `generate_room` samples every surface evenly, a real indoor frame is one view:
    surfaces hidden behind furniture are missing, far surfaces are sparse, depth is noisy and
    has holes, and the exposure differs between frames. Each view here is the room
    (`build_room(seed)`) rendered (`render_view`) from a random pose inside it: the camera
    1.0-1.8 m high, looking across the room towards a random point of it, pitched down. Then
    Kinect v1 depth noise (axial and lateral, `KINECT_AXIAL_NOISE`); no reading at depth
    discontinuities (by chance), in blobs and beyond `max_depth`; a random exposure and white
    balance. The valid pixels are back-projected into the room's frame (z up) and
    `num_points` of them drawn without replacement (all when fewer).

    Args:
        seed: the room's seed (the views' randomness derives from it).
        num_views: views of the room.
        num_points: points kept per view.
        sensor: the camera and its failure model.

    Returns:
        views: `num_views` dicts with coord (n, 3) float32 (room frame, z up), color (n, 3)
        uint8 and label (n,) int64, like `generate_room`'s rooms (views that see nothing are
        left out).
    """
    from scipy import ndimage

    from pcseg.bridge.camera import PinholeCamera

    scene = build_room(seed)
    rng = np.random.default_rng([seed, 1])
    focal = sensor.width / 2.0 / math.tan(math.radians(sensor.fov_degrees) / 2.0)
    camera = PinholeCamera(
        focal, focal, (sensor.width - 1) / 2.0, (sensor.height - 1) / 2.0, sensor.width, sensor.height
    )
    width, depth_extent, room_height = scene.size
    views = []
    for _ in range(num_views):
        margin = 0.4
        eye = np.array(
            [
                rng.uniform(margin, max(margin, width - margin)),
                rng.uniform(margin, max(margin, depth_extent - margin)),
                min(rng.uniform(*sensor.height_range), room_height - 0.2),
            ]
        )
        # across the room: towards a random point of it at least 1.5 m away (else a wall
        # filling the image), pitched down
        for _ in range(20):
            across = np.array([rng.uniform(0.0, width), rng.uniform(0.0, depth_extent)]) - eye[:2]
            if np.linalg.norm(across) >= 1.5:
                break
        pitch = math.radians(rng.uniform(*sensor.pitch_degrees))
        target = eye + np.r_[across / max(np.linalg.norm(across), 1e-9), -math.tan(pitch)]
        pose = look_at_pose(eye, target)
        view = render_view(scene, camera, pose, max_depth=sensor.max_depth)
        z = view["depth"].astype(np.float64)
        valid = z > 0
        # depth discontinuities: the 3x3 neighbourhood spans more than 10 % of the depth
        spread = ndimage.maximum_filter(np.where(valid, z, 0.0), 3) - ndimage.minimum_filter(
            np.where(valid, z, np.inf), 3
        )
        edge = valid & (spread > 0.1 * np.maximum(z, 1e-6))
        valid &= ~(edge & (rng.random(z.shape) < sensor.edge_dropout))
        if sensor.hole_fraction > 0:
            field = ndimage.gaussian_filter(rng.standard_normal(z.shape), sigma=sensor.width / 40.0)
            valid &= field < np.quantile(field, 1.0 - sensor.hole_fraction)
        a, b, c = KINECT_AXIAL_NOISE
        rows, cols = np.nonzero(valid)
        if len(rows) == 0:
            continue
        zs = z[rows, cols]
        zs = zs + rng.standard_normal(len(zs)) * (a + b * (zs - c) ** 2)
        u = cols + rng.standard_normal(len(cols)) * KINECT_LATERAL_NOISE_PX
        v = rows + rng.standard_normal(len(rows)) * KINECT_LATERAL_NOISE_PX
        camera_points = np.stack([(u - camera.cx) / camera.fx * zs, (v - camera.cy) / camera.fy * zs, zs], 1)
        coord = camera_points @ pose[:3, :3].T + pose[:3, 3]
        gain = rng.uniform(0.6, 1.3) * rng.uniform(0.9, 1.1, 3)
        color = np.clip(view["color"][rows, cols].astype(np.float64) * gain, 0, 255).round().astype(np.uint8)
        keep = rng.permutation(len(coord))[:num_points]
        views.append(
            {"coord": coord[keep].astype(np.float32), "color": color[keep], "label": view["label"][rows, cols][keep]}
        )
    return views


# ----------------------------------------------------------------------------- dataset
class SyntheticRooms(torch.utils.data.Dataset):
    """Procedural rooms as a torch Dataset: item i is room `seeds[i]`, regenerated on access.

    Nothing is cached or written. Item: coord (N, 3) float32, color (N, 3) float32 in [0, 1],
    normal (N, 3) float32, label (N,) int64, instance (N,) int64, name (str
    "synthetic_<seed>"). The transform is applied with a generator seeded by (`augment_seed`,
    epoch, index), so an item's augmentation depends on nothing else: not on the order items
    are read in, nor on which DataLoader worker reads it (a generator shared by the dataset
    would be copied into every worker, and the workers would repeat each other's draws). Call
    `set_epoch(e)` before each epoch for fresh augmentations, as with DistributedSampler;
    with `persistent_workers=True` the workers keep the epoch they started with.

    Args:
        seeds: the rooms' seeds.
        num_points: points per room.
        transform: `(sample, rng) -> sample`, e.g. `pcseg.data.transforms.Compose`, or None.
        augment_seed: seed of the augmentations, >= 0.

    Raises:
        ValueError: when `seeds` is empty or `augment_seed` is negative.
    """

    def __init__(self, seeds, num_points: int = 100_000, transform=None, augment_seed: int = 0):
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        self.num_points = num_points
        self.transform = transform
        if augment_seed < 0:
            raise ValueError(f"augment_seed must be >= 0, got {augment_seed}")
        self.augment_seed = int(augment_seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the augmentations of an epoch for the items read from now on.

        Args:
            epoch: the epoch, >= 0.

        Raises:
            ValueError: when `epoch` is negative.
        """
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, index: int) -> dict:
        index = range(len(self.seeds))[index]  # dataset[-1] and dataset[n - 1] draw alike
        seed = self.seeds[index]
        room = generate_room(seed, self.num_points)
        room["color"] = room["color"].astype(np.float32) / 255.0
        if self.transform is not None:
            # a pure function of (augment_seed, epoch, index): the same in every worker and order
            rng = np.random.default_rng([self.augment_seed, self.epoch, index])
            room = self.transform(room, rng)
        room["name"] = f"synthetic_{seed}"
        return room
