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
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.utils.data

NUM_FEATURES = 9


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


def block_features(points: np.ndarray, colors: np.ndarray, block_size: float,
                   room_min: np.ndarray, room_extent: np.ndarray) -> np.ndarray:
    """The 9 PointNet features of the sampled points of one block (see the module docstring).

    Args:
        points: (P, 3) float coordinates as fed to the network (P >= 1, repeats included,
            since PointNet takes its minimum over them too).
        colors: (P, 3) uint8 0..255 or float in [0, 1].
        block_size: the block's side in metres.
        room_min: (3,) float64 lowest corner of the whole room (``room_frame``).
        room_extent: (3,) float64 extent of the whole room (zero axes count as 1).

    Returns:
        features: (P, 9) float32.

    Raises:
        ValueError: when float colours exceed 1.
    """
    shifted = points.astype(np.float64) - room_min
    features = np.empty((len(points), NUM_FEATURES), dtype=np.float32)
    # PointNet centres on the sampled points' own corner, not on the grid cell's centre
    centre = points[:, :2].astype(np.float64).min(0) + block_size / 2.0
    features[:, 0:2] = points[:, :2] - centre
    features[:, 2] = shifted[:, 2]
    features[:, 3:6] = _color01(colors)
    features[:, 6:9] = shifted / np.where(room_extent > 0, room_extent, 1.0)
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


def room_to_blocks(room: dict, block_size: float = 1.0, stride: float = 1.0, num_points: int = 4096,
                   min_points: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
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
        blocks: ``features`` (B, P, 9) float32, ``index`` (B, P) int64 (rows of the room's
        points) and, when the room has labels, ``label`` (B, P) int64.

    Raises:
        ValueError: when ``room["coord"]`` is not a non-empty (N, 3) array or no block has
            ``min_points`` points.
    """
    coord = np.asarray(room["coord"])
    if coord.ndim != 2 or coord.shape[1] != 3 or len(coord) == 0:
        raise ValueError(f"room['coord'] must be a non-empty (N, 3) array, got {coord.shape}")
    rng = np.random.default_rng(seed)
    room_min, room_extent = room_frame(coord)
    features, indices = [], []
    for origin in block_origins(coord, block_size, stride):
        inside = np.flatnonzero((coord[:, 0] >= origin[0]) & (coord[:, 0] <= origin[0] + block_size) &
                                (coord[:, 1] >= origin[1]) & (coord[:, 1] <= origin[1] + block_size))
        if len(inside) < min_points:
            continue
        pick = inside[rng.choice(len(inside), num_points, replace=len(inside) < num_points)]
        indices.append(pick)
        features.append(block_features(coord[pick], np.asarray(room["color"])[pick], block_size,
                                       room_min, room_extent))
    if not indices:
        raise ValueError(f"no block of the room has {min_points} points or more")
    out = {"features": np.stack(features), "index": np.stack(indices)}
    if "label" in room:
        out["label"] = np.asarray(room["label"]).astype(np.int64)[out["index"]]
    return out


def random_block(room: dict, rng: np.random.Generator, block_size: float = 1.0, num_points: int = 4096,
                 min_points: int = 100, max_tries: int = 20) -> dict[str, np.ndarray]:
    """One training block centred on a random point of the room (Pointcept / PointNet++ style).

    After ``max_tries`` centres without ``min_points`` points the last block is used as it is.

    Args:
        room: a dict with ``coord`` (N, 3), ``color`` (N, 3) and optionally ``label`` (N,).
        rng: the generator of the centre and the sample.
        block_size: the block's side in metres.
        num_points: points per block (P), drawn with replacement when the block has fewer.
        min_points: the fewest points of an acceptable block.
        max_tries: centres tried.

    Returns:
        block: ``features`` (P, 9) float32, ``index`` (P,) int64 and, when labelled, ``label``
        (P,) int64.
    """
    coord = np.asarray(room["coord"])
    room_min, room_extent = room_frame(coord)
    for _ in range(max_tries):
        centre = coord[rng.integers(len(coord)), :2]
        inside = np.flatnonzero((np.abs(coord[:, 0] - centre[0]) <= block_size / 2) &
                                (np.abs(coord[:, 1] - centre[1]) <= block_size / 2))
        if len(inside) >= min_points:
            break
    pick = inside[rng.choice(len(inside), num_points, replace=len(inside) < num_points)]
    out = {"features": block_features(coord[pick], np.asarray(room["color"])[pick], block_size,
                                      room_min, room_extent), "index": pick}
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

    def __init__(self, rooms, block_size: float = 1.0, stride: float = 1.0, num_points: int = 4096,
                 min_points: int = 100, seed: int = 0):
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


def predict_room(room: dict, predict_block: Callable, num_classes: int, block_size: float = 1.0,
                 stride: float = 0.5, num_points: int = 4096, batch_size: int = 16,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Whole-room inference by sliding blocks; every point gets a label.

    The lowest inference layer (``pcseg.predict`` maps the others). Blocks of ``block_size``
    slide with ``stride`` over the room. Each block's points are shuffled and split into
    chunks of ``num_points`` (the last chunk topped up with repeats of the block's points), so
    every point in a block is predicted at least once; the logits a point receives from all
    blocks and chunks are averaged.

    Args:
        room: a dict with ``coord`` (N, 3) and ``color`` (N, 3).
        predict_block: block features (B, num_points, 9) float32 tensor -> logits
            (B, num_points, num_classes) (tensor or numpy array).
        num_classes: the logits' classes.
        block_size: the block's side in metres.
        stride: the step between blocks in metres.
        num_points: points per chunk fed to ``predict_block``.
        batch_size: chunks per call of ``predict_block``.
        seed: the seed of the chunks' random point order.

    Returns:
        logits: (N, num_classes) float32, averaged.
        labels: (N,) int64, their argmax.

    Raises:
        ValueError: when ``predict_block`` returns logits of the wrong shape.
    """
    coord = np.asarray(room["coord"])
    color = np.asarray(room["color"])
    n = len(coord)
    room_min, room_extent = room_frame(coord)
    rng = np.random.default_rng(seed)
    logit_sum = np.zeros((n, num_classes), dtype=np.float64)
    counts = np.zeros(n, dtype=np.int64)
    pending_features, pending_index = [], []

    def flush():
        batch = torch.from_numpy(np.stack(pending_features))
        with torch.no_grad():
            out = predict_block(batch)
        out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
        if out.shape != (len(pending_features), num_points, num_classes):
            raise ValueError(f"predict_block returned shape {out.shape}, expected "
                             f"({len(pending_features)}, {num_points}, {num_classes})")
        index = np.stack(pending_index)
        np.add.at(logit_sum, index.ravel(), out.reshape(-1, num_classes))
        np.add.at(counts, index.ravel(), 1)
        pending_features.clear()
        pending_index.clear()

    for origin in block_origins(coord, block_size, stride):
        inside = np.flatnonzero((coord[:, 0] >= origin[0]) & (coord[:, 0] <= origin[0] + block_size) &
                                (coord[:, 1] >= origin[1]) & (coord[:, 1] <= origin[1] + block_size))
        if len(inside) == 0:
            continue
        order = inside[rng.permutation(len(inside))]
        num_chunks = int(math.ceil(len(order) / num_points))
        padded = np.concatenate([order, order[rng.integers(len(order), size=num_chunks * num_points - len(order))]])
        for chunk in padded.reshape(num_chunks, num_points):
            # each chunk is centred on its own points, as a sampled training block is
            pending_features.append(block_features(coord[chunk], color[chunk], block_size,
                                                   room_min, room_extent))
            pending_index.append(chunk)
            if len(pending_features) == batch_size:
                flush()
    if pending_features:
        flush()
    if (counts == 0).any():   # cannot happen with a grid covering the extent; guard anyway
        raise RuntimeError(f"{int((counts == 0).sum())} points were not covered by any block")
    logits = (logit_sum / counts[:, None]).astype(np.float32)
    return logits, logits.argmax(1).astype(np.int64)
