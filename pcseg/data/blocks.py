"""PointNet-style 1 m blocks: cutting rooms into columns, the 9 block features, whole-room
inference by sliding blocks.

A room is any dict with coord (N, 3) float and color (N, 3) (uint8 0..255 or float in
[0, 1]) — an S3DIS room (`pcseg.data.s3dis.load_room`) or a procedural one
(`pcseg.data.synthetic.generate_room`).

The 9 features are computed exactly as PointNet's `indoor3d_util.room2blocks_plus_normalized`
(charlesq34/pointnet sem_seg), which wrote the released `indoor3d_sem_seg_hdf5_data`:
    0-2  x minus (the smallest x of the block's sampled points + block_size / 2), the same
         for y — not the grid cell's centre: a block whose points do not reach its cell's
         lower edge is shifted accordingly; z minus the room's lowest z (z is not centred)
    3-5  rgb in [0, 1]
    6-8  xyz minus the room's minimum, divided by the room's extent (max after shifting)
So, given the same sampled points, `block_features` reproduces an HDF5 block to float32
rounding. What is not copied is PointNet's random sampling (it draws a block's 4,096
points with replacement, or keeps all and adds repeats when the block has fewer): the
points chosen here differ, as two PointNet runs with different seeds would. Extent axes of
zero length count as 1 (PointNet would divide by zero).

A LiDAR room (a dict that also holds ``intensity`` (N,) in [0, 1], ``range`` (N,) metres and
``height``, ``sensor_x``, ``sensor_y`` (N,) metres, ``pcseg.inputs.lidar_room_fields``) gets
five more columns, which ``pcseg.inputs`` turns into model inputs:
    9    intensity (remission) in [0, 1]
    10   range from the sensor in metres
    11   z in the sensor's frame in metres
    12   x in the sensor's frame in metres (with 11 and 13: where the sensor is, seen from
    13   y in the sensor's frame in metres  the point, which the normals face)
A room that holds ``multiscale`` (N, F) (``pcseg.inputs.multiscale_features``) gets F more
columns after these: from column 14 on in a LiDAR room, from column 9 on in another.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.utils.data

NUM_FEATURES = 9
# the LiDAR columns after the 9 PointNet features (see the module docstring)
LIDAR_FIELDS = ("intensity", "range", "height", "sensor_x", "sensor_y")


def _color01(color: np.ndarray) -> np.ndarray:
    color = np.asarray(color)
    if color.dtype == np.uint8:
        return color.astype(np.float32) / 255.0
    color = color.astype(np.float32)
    if color.size and color.max() > 1.0 + 1e-6:
        raise ValueError(f"float colours must be in [0, 1] (or pass uint8 0..255), got max {color.max()}")
    return color


def block_origins(points: np.ndarray, block_size: float = 1.0, stride: float = 1.0) -> np.ndarray:
    """The grid of blocks covering a room's xy extent, as in PointNet.

    Args:
        points: (N, 3) float coordinates in metres.
        block_size: the block's side in metres.
        stride: the grid's step in metres.

    Returns:
        origins: (K, 2) float64 lower-left (x, y) corners, ``ceil((extent - block_size) /
        stride) + 1`` per axis.

    Raises:
        ValueError: when ``block_size`` or ``stride`` is not positive.
    """
    if block_size <= 0 or stride <= 0:
        raise ValueError(f"block_size and stride must be positive, got {block_size}, {stride}")
    low = points[:, :2].min(0).astype(np.float64)
    extent = points[:, :2].max(0) - low
    counts = [max(1, int(math.ceil((e - block_size) / stride)) + 1) for e in extent]
    gx, gy = np.meshgrid(np.arange(counts[0]) * stride, np.arange(counts[1]) * stride, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], 1) + low


def room_columns(room: dict, index: np.ndarray | None = None) -> np.ndarray | None:
    """The columns of a room after the 9 PointNet features: its LiDAR fields (intensity, range,
    sensor-frame height, x and y) and its multiscale features, where it holds them.

    Args:
        room: a dict, optionally with ``intensity`` (N,) float in [0, 1], ``range``,
            ``height``, ``sensor_x`` and ``sensor_y`` (N,) float metres, and ``multiscale``
            (N, F) float.
        index: (M,) int64 rows to take, or None for all.

    Returns:
        columns: (M, 5) (or (N, 5)) float32 with ``intensity``, (M, 5 + F) with ``multiscale``
        too, (M, F) with ``multiscale`` only, or None with neither.

    Raises:
        ValueError: when the room has ``intensity`` without the other four fields (named).
    """
    rows = slice(None) if index is None else index
    columns = []
    if "intensity" in room:
        missing = [name for name in LIDAR_FIELDS if name not in room]
        if missing:
            raise ValueError(f"a room with 'intensity' also needs {missing} (pcseg.inputs.lidar_room_fields)")
        columns.append(np.stack([np.asarray(room[name], np.float32)[rows] for name in LIDAR_FIELDS], 1))
    if "multiscale" in room:
        columns.append(np.asarray(room["multiscale"], np.float32)[rows])
    return np.concatenate(columns, 1) if columns else None


def block_features(
    points: np.ndarray,
    colors: np.ndarray,
    block_size: float,
    room_min: np.ndarray,
    room_extent: np.ndarray,
    lidar: np.ndarray | None = None,
) -> np.ndarray:
    """The 9 PointNet features of the sampled points of one block (see the module docstring).

    Args:
        points: (P, 3) float coordinates as fed to the network (P >= 1, repeats included,
            since PointNet takes its minimum over them too), or (B, P, 3) for B blocks.
        colors: (P, 3) (or (B, P, 3)) uint8 0..255 or float in [0, 1].
        block_size: the block's side in metres.
        room_min: (3,) float64 lowest corner of the whole room (``room_frame``).
        room_extent: (3,) float64 extent of the whole room (zero axes count as 1).
        lidar: (P, L) (or (B, P, L)) float ``room_columns``, or None.

    Returns:
        features: (P, 9) (or (B, P, 9)) float32; (P, 9 + L) with ``lidar``.

    Raises:
        ValueError: when float colours exceed 1.
    """
    shifted = points.astype(np.float64) - room_min
    width = NUM_FEATURES + (lidar.shape[-1] if lidar is not None else 0)
    features = np.empty(points.shape[:-1] + (width,), dtype=np.float32)
    # PointNet centres on the sampled points' own corner, not on the grid cell's centre
    centre = points[..., :2].astype(np.float64).min(-2, keepdims=True) + block_size / 2.0
    features[..., 0:2] = points[..., :2] - centre
    features[..., 2] = shifted[..., 2]
    features[..., 3:6] = _color01(colors)
    features[..., 6:9] = shifted / np.where(room_extent > 0, room_extent, 1.0)
    if lidar is not None:
        features[..., NUM_FEATURES:] = lidar
    return features


def room_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frame the block features are taken in: the lowest corner and the extent of a cloud.

    Args:
        points: (N, 3) float coordinates, N >= 1.

    Returns:
        low: (3,) float64 smallest x, y, z.
        extent: (3,) float64 largest x, y, z minus ``low``.
    """
    low = points.min(0).astype(np.float64)
    return low, points.max(0) - low


def to_local(points: np.ndarray, low: np.ndarray | None = None) -> np.ndarray:
    """Coordinates relative to a corner, as float32: the float64 offset is removed first.

    float32 has 0.5 m steps at 5,000,000 m (UTM northings), so map-frame clouds must lose
    their offset before any float32 work, not after (inference: ``pcseg.predict``; a loader of
    map-frame training data would do the same).

    Args:
        points: (N, 3) float coordinates in metres, any frame.
        low: (3,) float64 corner subtracted; None: the cloud's lowest x, y, z.

    Returns:
        local: (N, 3) float32 ``points - low``.
    """
    points = np.asarray(points)
    if low is None:
        low = points.min(0).astype(np.float64) if len(points) else np.zeros(3)
    return (points.astype(np.float64) - low).astype(np.float32)


def room_to_blocks(
    room: dict,
    block_size: float = 1.0,
    stride: float = 1.0,
    num_points: int = 4096,
    min_points: int = 100,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Cuts a room into blocks of ``num_points`` points, as PointNet's training data.

    Every grid block with at least ``min_points`` points yields one sample of ``num_points``
    points drawn without replacement (with replacement when it has fewer).

    Args:
        room: a dict with ``coord`` (N, 3), ``color`` (N, 3) and optionally ``label`` (N,).
        block_size: the block's side in metres.
        stride: the grid's step in metres.
        num_points: points per block (P).
        min_points: the fewest points of a block that is kept.
        seed: the sampling seed (the result is deterministic in it).

    Returns:
        blocks: ``features`` (B, P, 9) float32 ((B, P, 14) for a LiDAR room), ``index``
        (B, P) int64 (rows of the room's points) and, when the room has labels, ``label``
        (B, P) int64.

    Raises:
        ValueError: when ``room["coord"]`` is not a non-empty (N, 3) array or no block has
            ``min_points`` points.
    """
    coord = np.asarray(room["coord"])
    if coord.ndim != 2 or coord.shape[1] != 3 or len(coord) == 0:
        raise ValueError(f"room['coord'] must be a non-empty (N, 3) array, got {coord.shape}")
    rng = np.random.default_rng(seed)
    room_min, room_extent = room_frame(coord)
    lidar = room_columns(room)
    features, indices = [], []
    for origin in block_origins(coord, block_size, stride):
        inside = np.flatnonzero(
            (coord[:, 0] >= origin[0])
            & (coord[:, 0] <= origin[0] + block_size)
            & (coord[:, 1] >= origin[1])
            & (coord[:, 1] <= origin[1] + block_size)
        )
        if len(inside) < min_points:
            continue
        pick = inside[rng.choice(len(inside), num_points, replace=len(inside) < num_points)]
        indices.append(pick)
        features.append(
            block_features(
                coord[pick],
                np.asarray(room["color"])[pick],
                block_size,
                room_min,
                room_extent,
                None if lidar is None else lidar[pick],
            )
        )
    if not indices:
        raise ValueError(f"no block of the room has {min_points} points or more")
    out = {"features": np.stack(features), "index": np.stack(indices)}
    if "label" in room:
        out["label"] = np.asarray(room["label"]).astype(np.int64)[out["index"]]
    return out


def class_balanced_centres(labels: np.ndarray, ignore_index: int) -> np.ndarray | None:
    """Cumulative weights that make every class of a room equally likely as a block's centre.

    KPConv's class-balanced sampling: a class is drawn uniformly among those the room holds,
    then one of its points, so a class of a few hundred points (a person, a pole) centres as
    many training blocks as the road. Points labelled ``ignore_index`` never centre a block.

    Args:
        labels: (N,) int the room's labels.
        ignore_index: the label that is not trained on.

    Returns:
        cdf: (N,) float64 nondecreasing, for `random_block`'s ``centre_cdf``; None when every
        point is ignored.
    """
    labels = np.asarray(labels).astype(np.int64, copy=False)
    kept = labels != ignore_index
    if not kept.any():
        return None
    classes, inverse, counts = np.unique(labels[kept], return_inverse=True, return_counts=True)
    weights = np.zeros(len(labels))
    weights[kept] = 1.0 / (len(classes) * counts[inverse])
    return np.cumsum(weights)


def random_block(
    room: dict,
    rng: np.random.Generator,
    block_size: float = 1.0,
    num_points: int = 4096,
    min_points: int = 100,
    max_tries: int = 20,
    centre_cdf: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One training block centred on a random point of the room (Pointcept / PointNet++ style).

    After ``max_tries`` centres without ``min_points`` points the last block is used as it is.

    Args:
        room: a dict with ``coord`` (N, 3), ``color`` (N, 3) and optionally ``label`` (N,).
        rng: the generator of the centre and the sample.
        block_size: the block's side in metres.
        num_points: points per block (P), drawn with replacement when the block has fewer.
        min_points: the fewest points of an acceptable block.
        max_tries: centres tried.
        centre_cdf: (N,) float64 cumulative weights of the points as centres
            (`class_balanced_centres`); None: every point alike.

    Returns:
        block: ``features`` (P, 9) float32, ``index`` (P,) int64 and, when labelled, ``label``
        (P,) int64.
    """
    coord = np.asarray(room["coord"])
    room_min, room_extent = room_frame(coord)
    for _ in range(max_tries):
        if centre_cdf is None:
            centre = coord[rng.integers(len(coord)), :2]
        else:
            drawn = np.searchsorted(centre_cdf, rng.random() * centre_cdf[-1], side="right")
            centre = coord[min(int(drawn), len(coord) - 1), :2]
        inside = np.flatnonzero(
            (np.abs(coord[:, 0] - centre[0]) <= block_size / 2) & (np.abs(coord[:, 1] - centre[1]) <= block_size / 2)
        )
        if len(inside) >= min_points:
            break
    pick = inside[rng.choice(len(inside), num_points, replace=len(inside) < num_points)]
    out = {
        "features": block_features(
            coord[pick], np.asarray(room["color"])[pick], block_size, room_min, room_extent, room_columns(room, pick)
        ),
        "index": pick,
    }
    if "label" in room:
        out["label"] = np.asarray(room["label"]).astype(np.int64)[pick]
    return out


class BlockDataset(torch.utils.data.Dataset):
    """Fixed PointNet blocks of a list of rooms, cut once when constructed (``room_to_blocks``).

    The rooms are already in memory; nothing is read or written. Item ``i`` is a dict:
    ``features`` (P, 9) float32, ``coord`` (P, 3) float32 (features 0-2), ``color`` (P, 3)
    float32, ``label`` (P,) int64, ``room`` (int, index into ``rooms``).

    Args:
        rooms: dicts with ``coord``, ``color`` and ``label``.
        block_size: the block's side in metres.
        stride: the grid's step in metres.
        num_points: points per block (P).
        min_points: the fewest points of a block that is kept.
        seed: the sampling seed of room 0 (room ``i`` uses ``seed + i``).
    """

    def __init__(
        self,
        rooms,
        block_size: float = 1.0,
        stride: float = 1.0,
        num_points: int = 4096,
        min_points: int = 100,
        seed: int = 0,
    ):
        features, labels, room_ids = [], [], []
        for i, room in enumerate(rooms):
            blocks = room_to_blocks(room, block_size, stride, num_points, min_points, seed + i)
            features.append(blocks["features"])
            labels.append(blocks["label"])
            room_ids.append(np.full(len(blocks["features"]), i))
        self.features = np.concatenate(features)
        self.label = np.concatenate(labels)
        self.room = np.concatenate(room_ids)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        features = self.features[index]
        return {
            "features": torch.from_numpy(features),
            "coord": torch.from_numpy(features[:, 0:3].copy()),
            "color": torch.from_numpy(features[:, 3:6].copy()),
            "label": torch.from_numpy(self.label[index]),
            "room": int(self.room[index]),
        }


def block_chunks(
    coord: np.ndarray,
    block_size: float,
    stride: float,
    num_points: int,
    rng: np.random.Generator,
    anchor: np.ndarray | None = None,
    min_overlap_points: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The occupied blocks of a cloud, cut into chunks of at most ``num_points`` points.

    Blocks of ``block_size`` lie on a grid of step ``stride`` anchored at ``anchor`` (the
    cloud's own lowest x, y by default, so their placement follows the cloud, not the absolute
    coordinates) and reaching its far edge, as in PointNet (``block_origins``); only blocks
    holding points are visited, so the work follows the points, not the area. A point
    belongs to every block whose half-open xy square ``[origin, origin + block_size)`` holds
    it (the last block of an axis is closed), so each point is in at most
    ``ceil(block_size / stride) ** 2`` blocks. A block's points are shuffled and split into
    chunks of ``num_points``; when a block holds more than that, its last chunk is topped up
    with other points of the block, so every chunk of a dense block is as dense as a training
    block. A block with ``num_points`` or fewer is one chunk of its real points.

    With ``min_overlap_points``, overlap is kept only where it pays: each point has a home
    block (every ``ceil(block_size / stride)``-th block along each axis, so home blocks tile
    the plane when ``block_size`` is a multiple of ``stride``), always visited; the other
    blocks are visited only when they hold ``min_overlap_points`` points or more. In a
    sparse cloud (a LiDAR scan far from the sensor) every point is then fed about once
    instead of ``ceil(block_size / stride) ** 2`` times, while dense clouds keep the full
    sliding overlap.

    Args:
        coord: (N, 3) float coordinates in metres.
        block_size: the block's side in metres.
        stride: the grid's step in metres.
        num_points: the most points of a chunk.
        rng: the generator of the shuffles and top-ups.
        anchor: (2,) float64 grid origin at or below the cloud's lowest x, y; None: that lowest x, y.
        min_overlap_points: the fewest points of a visited block that is no point's home;
            0: every block holding points is visited.

    Returns:
        index: (M,) int64 rows of ``coord``, the chunks one after the other.
        lengths: (K,) int64 points of each chunk, in [1, num_points], summing to M.

    Raises:
        ValueError: when ``block_size``, ``stride`` or ``num_points`` is not positive.
    """
    if block_size <= 0 or stride <= 0 or num_points < 1:
        raise ValueError(
            f"block_size, stride and num_points must be positive, got {block_size}, {stride}, {num_points}"
        )
    xy = np.asarray(coord)[:, :2].astype(np.float64)
    if len(xy) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    low = xy.min(0) if anchor is None else np.asarray(anchor, dtype=np.float64)
    local = xy - low
    extent = local.max(0)
    counts = np.array([max(1, int(math.ceil((e - block_size) / stride)) + 1) for e in extent])
    last = np.minimum(np.floor(local / stride).astype(np.int64), counts - 1)  # the last block holding a point
    first = np.maximum(np.floor((local - block_size) / stride).astype(np.int64) + 1, 0)
    first = np.minimum(first, last)  # a point on the far edge of the last block
    reach = int(math.ceil(block_size / stride))
    rows, keys = [], []
    for dx in range(reach):
        for dy in range(reach):
            bx, by = last[:, 0] - dx, last[:, 1] - dy
            ok = np.flatnonzero((bx >= first[:, 0]) & (by >= first[:, 1]))
            rows.append(ok)
            keys.append(bx[ok] * counts[1] + by[ok])
    rows, keys = np.concatenate(rows), np.concatenate(keys)
    if min_overlap_points > 0:
        home = np.maximum(first, last // reach * reach)  # within [first, last] up to the far edge
        home_keys = np.unique(home[:, 0] * counts[1] + home[:, 1])
        block_keys, block_of, block_sizes = np.unique(keys, return_inverse=True, return_counts=True)
        kept = np.isin(block_keys, home_keys) | (block_sizes >= min_overlap_points)
        rows, keys = rows[kept[block_of]], keys[kept[block_of]]
    # grouped by block, in a random order within each block
    order = np.lexsort((rng.random(len(rows)), keys))
    rows, keys = rows[order], keys[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    # dense blocks: top the last chunk up to num_points with other points of the block
    top_up = np.where(sizes > num_points, -sizes % num_points, 0)
    extra_block = np.repeat(np.arange(len(sizes)), top_up)
    extra = rows[starts[extra_block] + (rng.random(len(extra_block)) * sizes[extra_block]).astype(np.int64)]
    # chunk of every entry: blocks in order, num_points entries per chunk
    chunks_per_block = -(-(sizes + top_up) // num_points)
    first_chunk = np.r_[0, np.cumsum(chunks_per_block)[:-1]]
    rank = np.arange(len(rows)) - np.repeat(starts, sizes)
    chunk = np.repeat(first_chunk, sizes) + rank // num_points
    extra_chunk = first_chunk[extra_block] + chunks_per_block[extra_block] - 1
    all_chunk = np.concatenate([chunk, extra_chunk])
    order = np.argsort(all_chunk, kind="stable")
    index = np.concatenate([rows, extra])[order]
    lengths = np.bincount(all_chunk, minlength=int(chunks_per_block.sum()))
    return index.astype(np.int64), lengths.astype(np.int64)


def predict_room(
    room: dict,
    predict_block: Callable,
    num_classes: int,
    block_size: float = 1.0,
    stride: float = 0.5,
    num_points: int = 4096,
    batch_size: int = 16,
    seed: int = 0,
    real_counts: bool = False,
    frame: tuple[np.ndarray, np.ndarray] | None = None,
    min_overlap_points: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Whole-room inference by sliding blocks; every point gets a label.

    The lowest inference layer (``pcseg.predict`` maps the others). Blocks of ``block_size``
    slide with ``stride`` over the room, visiting only the blocks that hold points; each is
    cut into chunks of at most ``num_points`` points (``block_chunks``), so every point in a
    block is predicted at least once, and the logits a point receives from all blocks and
    chunks are averaged.

    A chunk shorter than ``num_points`` (a block with fewer points) is fed in one of two ways:

    - ``real_counts=False`` (PointNet's rule): topped up with repeats of its own points, and
      ``predict_block(features)`` gets (B, num_points, 9) features;
    - ``real_counts=True``: as it is, and ``predict_block(features, lengths)`` gets (B, P, 9)
      features of chunks of similar sizes padded to the longest (P <= num_points; padded rows
      repeat the chunk's first point) with their ``lengths`` (B,) int64. Batches hold about
      ``batch_size * num_points`` points, so the cost follows the points, not the blocks.

    Args:
        room: a dict with ``coord`` (N, 3) and ``color`` (N, 3).
        predict_block: block features (B, P, 9) float32 tensor [, lengths (B,) int64 tensor]
            -> logits (B, P, num_classes) (tensor or numpy array).
        num_classes: the logits' classes.
        block_size: the block's side in metres.
        stride: the step between blocks in metres.
        num_points: points per chunk fed to ``predict_block``.
        batch_size: chunks per call of ``predict_block`` (of ``num_points`` points each with
            ``real_counts``).
        seed: the seed of the chunks' random point order.
        real_counts: feed sparse chunks at their real point count (see above).
        frame: ``(low, extent)`` (``room_frame``) of the cloud the room is a part of: the block
            features are taken in it and the block grid is anchored at its lowest x, y; None:
            the room's own.
        min_overlap_points: visit the blocks that are no point's home only when they hold
            this many points (``block_chunks``); 0: every block holding points.

    Returns:
        logits: (N, num_classes) float32, averaged.
        labels: (N,) int64, their argmax.

    Raises:
        ValueError: when ``predict_block`` returns logits of the wrong shape.
    """
    coord = np.asarray(room["coord"])
    color = np.asarray(room["color"])
    lidar = room_columns(room)
    n = len(coord)
    room_min, room_extent = room_frame(coord) if frame is None else frame
    rng = np.random.default_rng(seed)
    index, lengths = block_chunks(
        coord, block_size, stride, num_points, rng, anchor=room_min[:2], min_overlap_points=min_overlap_points
    )
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    logit_sum = torch.zeros((n, num_classes), dtype=torch.float64)
    counts = np.bincount(index, minlength=n) if real_counts else np.zeros(n, dtype=np.int64)

    for batch in _chunk_batches(lengths, num_points, batch_size, real_counts):
        width = int(lengths[batch].max()) if real_counts else num_points
        offset = np.arange(width)[None, :]
        real = offset < lengths[batch, None]
        if real_counts:  # padded rows repeat the chunk's first point
            rows = starts[batch, None] + np.where(real, offset, 0)
        else:  # topped up with random repeats of the chunk's own points
            rows = starts[batch, None] + np.where(
                real, offset, (rng.random(real.shape) * lengths[batch, None]).astype(np.int64)
            )
        chunk_index = index[rows]
        features = torch.from_numpy(
            block_features(
                coord[chunk_index],
                color[chunk_index],
                block_size,
                room_min,
                room_extent,
                None if lidar is None else lidar[chunk_index],
            )
        )
        with torch.no_grad():
            out = predict_block(features, torch.from_numpy(lengths[batch])) if real_counts else predict_block(features)
        out = out.detach().cpu() if isinstance(out, torch.Tensor) else torch.from_numpy(np.asarray(out))
        if tuple(out.shape) != (len(batch), width, num_classes):
            raise ValueError(
                f"predict_block returned shape {tuple(out.shape)}, expected ({len(batch)}, {width}, {num_classes})"
            )
        if real_counts:  # padded rows carry no prediction
            keep = torch.from_numpy(real.ravel())
            logit_sum.index_add_(
                0, torch.from_numpy(chunk_index.ravel())[keep], out.reshape(-1, num_classes)[keep].double()
            )
        else:
            logit_sum.index_add_(0, torch.from_numpy(chunk_index.ravel()), out.reshape(-1, num_classes).double())
            counts += np.bincount(chunk_index.ravel(), minlength=n)
    if (counts == 0).any():  # cannot happen: every point lies in a block; guard anyway
        raise RuntimeError(f"{int((counts == 0).sum())} points were not covered by any block")
    logits = (logit_sum.numpy() / counts[:, None]).astype(np.float32)
    return logits, logits.argmax(1).astype(np.int64)


def _chunk_batches(lengths: np.ndarray, num_points: int, batch_size: int, real_counts: bool) -> list[np.ndarray]:
    """The chunks of each call of ``predict_block``: ``batch_size`` chunks in order, or with
    ``real_counts`` chunks of similar lengths (longest first) holding about
    ``batch_size * num_points`` padded points."""
    if not real_counts:
        return np.array_split(np.arange(len(lengths)), np.arange(batch_size, len(lengths), batch_size))
    order = np.argsort(-lengths, kind="stable")
    budget = batch_size * num_points
    batches, i = [], 0
    while i < len(order):
        take = max(1, budget // int(lengths[order[i]]))
        batches.append(order[i : i + take])
        i += take
    return batches
