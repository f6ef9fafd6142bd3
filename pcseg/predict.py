"""Prediction on clouds of any size: xy tiles of bounded size, sliding blocks inside each tile.

A cloud is split (recursively, along its longer xy side) into tiles holding at most
``max_tile_points`` points (with their context margin) and spanning at most ``max_tile_extent``
metres; each tile plus a margin of one block around it goes through
``pcseg.data.predict_room`` and only the tile's own points keep their result. Memory is
bounded by the tile size, not the cloud size, so a 10-million-point scan runs in the memory
of a few hundred thousand points (plus the (N,) outputs).

``pcseg predict INPUT --checkpoint K --out OUT.ply`` = ``predict_file``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from pcseg.config import Config
from pcseg.evaluate import predict_points

__all__ = ["iter_tiles", "segment_cloud", "predict_file"]


def iter_tiles(coord: np.ndarray, max_points: int = 300_000, max_extent: float = 10.0,
               margin: float = 1.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields ``(core, context)`` int64 index arrays: every point is in exactly one ``core``;
    ``context`` holds the core and the points within ``margin`` of the tile's xy rectangle.
    Tiles are split until the context has at most ``max_points`` points and the tile spans at
    most ``max_extent`` metres (tiles narrower than ``4 * margin`` are not split further)."""
    xy = np.asarray(coord)[:, :2]
    if len(xy) == 0:
        return
    all_idx = np.arange(len(xy))
    lo, hi = xy.min(0).astype(np.float64), xy.max(0).astype(np.float64)
    stack = [(all_idx, all_idx, lo, hi)]
    while stack:
        core, context, lo, hi = stack.pop()
        if len(core) == 0:
            continue
        extent = hi - lo
        axis = int(np.argmax(extent))
        small_enough = len(context) <= max_points and extent.max() <= max_extent
        if small_enough or extent[axis] < 4 * margin:
            yield core, context
            continue
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


def segment_cloud(model: torch.nn.Module, cfg: Config, coord: np.ndarray, color: np.ndarray | None,
                  device="cpu", amp_dtype: torch.dtype | None = None, keep_probabilities: bool = True,
                  max_tile_points: int = 300_000, max_tile_extent: float = 10.0, batch_size: int = 16,
                  progress: bool = False) -> dict:
    """Segments ``coord (N, 3)`` with ``color (N, 3)`` in [0, 1] (None: mid grey).

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
    tiles = iter_tiles(coord, max_tile_points, max_tile_extent, cfg.data.block_size)
    with tqdm(total=n, desc="segmenting", unit="pt", unit_scale=True, disable=not progress, leave=False) as bar:
        for core, context in tiles:
            logits, _ = predict_points(model, cfg.data, coord[context], color[context], device, amp_dtype,
                                       batch_size=batch_size)
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
