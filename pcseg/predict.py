"""Prediction on clouds of any size: xy tiles of bounded size, sliding blocks inside each tile.

A cloud is split (recursively, along its longer xy side) into tiles whose context, the tile
plus a margin of one block around it, holds at most ``max_tile_points`` points and which span
at most ``max_tile_extent`` metres. Each context goes through ``pcseg.data.predict_room``
and only the tile's own points keep their result: every block covering a tile point lies
inside the context, so those points get logits from whole blocks. The block features are
taken in the frame (lowest z, extent) of the whole cloud, not of the tile, so a tile's blocks
look to the model as they would untiled.

Splitting stops at tiles ``min_tile_width(...)`` metres wide. A context still too
dense there is dealt at random into parts of at most ``max_tile_points`` points, each a
uniform sample of the whole tile and margin: sliding-block prediction already feeds the model
random ``num_points`` samples of each block, and a part still holds that many points per
block, so a part's blocks look like the untiled blocks. Memory is bounded by the tile size,
not the cloud size, so a 10-million-point scan (or 10 million points in one block) runs in
the memory of a few hundred thousand points (plus the (N,) outputs).

``pcseg predict INPUT --checkpoint K --out OUT.ply`` = ``predict_file``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from pcseg.config import Config
from pcseg.evaluate import cloud_frame, predict_points

__all__ = ["iter_tiles", "min_tile_width", "segment_cloud", "predict_file"]


def iter_tiles(coord: np.ndarray, max_points: int = 300_000, max_extent: float = 10.0,
               margin: float = 1.0, min_width: float | None = None,
               seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields ``(core, context)`` sorted int64 index arrays into ``coord (N, 3)``: every point
    is in exactly one (non-empty) ``core``; every ``context`` holds its core and at most
    ``max_points`` points. A tile is split in halves along its
    longer xy side while it spans more than ``max_extent`` metres, or while its context (the
    points within ``margin`` of its xy rectangle) exceeds ``max_points`` and it is wider than
    ``min_width`` (default ``margin``: one block). A tile that narrow whose context is still
    too large is dealt at random (``seed``) into ``ceil(len(context) / max_points)`` parts of
    its context, each with the tile points dealt to it as its core."""
    if max_points < 1 or max_extent <= 0 or margin < 0:
        raise ValueError(f"max_points must be >= 1, max_extent > 0 and margin >= 0, got {max_points}, "
                         f"{max_extent}, {margin}")
    min_width = margin if min_width is None else min_width
    xy = np.asarray(coord)[:, :2]
    if len(xy) == 0:
        return
    rng = np.random.default_rng(seed)
    all_idx = np.arange(len(xy))
    lo, hi = xy.min(0).astype(np.float64), xy.max(0).astype(np.float64)
    stack = [(all_idx, all_idx, lo, hi)]
    while stack:
        core, context, lo, hi = stack.pop()
        if len(core) == 0:
            continue
        extent = hi - lo
        axis = int(np.argmax(extent))
        too_dense = len(context) > max_points
        if extent[axis] > max_extent or (too_dense and extent[axis] > min_width):
            mid = (lo[axis] + hi[axis]) / 2.0
            for lower in (True, False):
                sub_lo, sub_hi = lo.copy(), hi.copy()
                if lower:
                    sub_hi[axis] = mid
                    in_core = xy[core, axis] < mid
                else:
                    sub_lo[axis] = mid
                    in_core = xy[core, axis] >= mid
                c = xy[context, axis]
                in_context = (c >= sub_lo[axis] - margin) & (c <= sub_hi[axis] + margin)
                stack.append((core[in_core], context[in_context], sub_lo, sub_hi))
        elif too_dense:
            yield from _deal_into_parts(core, context, max_points, rng)
        else:
            yield core, context


def _deal_into_parts(core: np.ndarray, context: np.ndarray, max_points: int,
                     rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Deals the sorted ``context`` round-robin in a random order into parts of at most
    ``max_points`` points; yields each part with the ``core`` points dealt to it."""
    parts = -(-len(context) // max_points)
    order = rng.permutation(len(context))
    part_of = np.empty(len(context), dtype=np.int64)
    part_of[order] = np.arange(len(context)) % parts  # part p: order[p::parts]
    core_part = part_of[np.searchsorted(context, core)]
    # group once (stable: each group stays sorted) instead of scanning everything per part
    core_groups = np.split(core[np.argsort(core_part, kind="stable")],
                           np.cumsum(np.bincount(core_part, minlength=parts))[:-1])
    for part, part_core in enumerate(core_groups):
        if len(part_core):  # a narrow tile's few points may miss some parts
            yield part_core, context[np.sort(order[part::parts])]


def min_tile_width(block_size: float, num_points: int, max_tile_points: int) -> float:
    """The narrowest tile ``segment_cloud`` splits to, in metres: a tile this wide with its
    one-block margin, dealt into parts of ``max_tile_points``, still gives every part
    ``num_points`` points per block area where the cloud has more than that (so parts see
    blocks as dense as the model's inputs), and needs no parts where it has fewer. At least
    one block: narrower tiles would mostly predict their margin."""
    blocks_across = math.sqrt(max_tile_points / num_points)  # a square context of this many blocks
    return block_size * max(1.0, blocks_across - 2.0)


def segment_cloud(model: torch.nn.Module, cfg: Config, coord: np.ndarray, color: np.ndarray | None,
                  device="cpu", amp_dtype: torch.dtype | None = None, keep_probabilities: bool = True,
                  max_tile_points: int = 300_000, max_tile_extent: float = 10.0, batch_size: int = 16,
                  progress: bool = False) -> dict:
    """Segments ``coord (N, 3)`` with ``color (N, 3)`` in [0, 1] (None: mid grey) in tiles whose
    context holds at most ``max_tile_points`` points (see the module docstring).

    Returns {"labels": (N,) int64, "confidence": (N,) float32 (the winning probability),
    "probabilities": (N, C) float32 or None (``keep_probabilities=False`` saves N * C floats)}.
    """
    coord = np.asarray(coord, dtype=np.float32)
    if coord.ndim != 2 or coord.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {coord.shape}")
    n = len(coord)
    if color is None:
        color = np.full((n, 3), 0.5, dtype=np.float32)
    color = np.asarray(color)
    if color.shape != (n, 3):
        raise ValueError(f"colors must be ({n}, 3) like the points, got {color.shape}")
    if color.dtype != np.uint8:
        color = color.astype(np.float32)
        if n and (color.min() < 0 or color.max() > 1.0 + 1e-6):
            raise ValueError("float colors must lie in [0, 1] (or pass uint8 0..255)")
    c = cfg.data.num_classes
    labels = np.zeros(n, dtype=np.int64)
    confidence = np.zeros(n, dtype=np.float32)
    probabilities = np.zeros((n, c), dtype=np.float32) if keep_probabilities else None
    if n == 0:
        return {"labels": labels, "confidence": confidence, "probabilities": probabilities}
    frame = cloud_frame(coord)
    tiles = iter_tiles(coord, max_tile_points, max_tile_extent, cfg.data.block_size,
                       min_tile_width(cfg.data.block_size, cfg.data.num_points, max_tile_points))
    with tqdm(total=n, desc="segmenting", unit="pt", unit_scale=True, disable=not progress, leave=False) as bar:
        for core, context in tiles:
            logits, _ = predict_points(model, cfg.data, coord[context], color[context], device, amp_dtype,
                                       batch_size=batch_size, frame=frame)
            # rows of the core points within the context (context is sorted ascending)
            rows = np.searchsorted(context, core)
            probs = torch.softmax(torch.from_numpy(logits[rows]), dim=1).numpy()
            labels[core] = probs.argmax(1)
            confidence[core] = probs.max(1)
            if probabilities is not None:
                probabilities[core] = probs
            bar.update(len(core))
    return {"labels": labels, "confidence": confidence, "probabilities": probabilities}


def predict_file(input_path: str | Path, checkpoint: str | Path, out_path: str | Path, device: str = "cpu",
                 progress: bool = True, max_tile_points: int = 300_000) -> dict:
    """``pcseg predict``: reads ``input_path`` (``pcseg.io.read_point_cloud`` formats), segments
    it with the checkpoint's model and writes ``out_path``: a labelled PLY (``.ply``) or an
    ``.npy`` of (N,) int64 labels. Returns a summary dict (also printed by the CLI)."""
    from pcseg.data import S3DIS_CLASS_COLORS
    from pcseg.bridge import default_palette
    from pcseg.io import read_point_cloud, write_labelled_ply
    from pcseg.train import model_from_checkpoint

    model, cfg, _ = model_from_checkpoint(checkpoint, device)
    cloud = read_point_cloud(input_path)
    start = time.perf_counter()
    result = segment_cloud(model, cfg, cloud["coord"], cloud["color"] if cfg.data.use_color else None, device,
                           keep_probabilities=False, max_tile_points=max_tile_points, progress=progress)
    seconds = time.perf_counter() - start
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix.lower() == ".npy":
        np.save(out_path, result["labels"])
    elif out_path.suffix.lower() == ".ply":
        palette = np.asarray(S3DIS_CLASS_COLORS, dtype=np.uint8) if cfg.data.num_classes == len(S3DIS_CLASS_COLORS) \
            else default_palette(cfg.data.num_classes)
        write_labelled_ply(out_path, cloud["coord"], result["labels"], palette, result["confidence"])
    else:
        raise ValueError(f"--out must end in .ply or .npy, got {out_path}")
    counts = np.bincount(result["labels"], minlength=cfg.data.num_classes)
    return {"input": str(input_path), "out": str(out_path), "points": int(len(cloud["coord"])),
            "seconds": seconds, "points_per_s": len(cloud["coord"]) / max(seconds, 1e-9),
            "label_counts": counts.tolist()}
