"""Seconds and points/s of ``Segmenter.predict`` on the real SemanticKITTI scan (124,668
points over ~156 x 101 m) with an indoor demo-like model, and where the time goes.

The model is the demo's PointNet (``configs/pointnet_synthetic.yaml``: quarter width, 1,024
points per 1 m block, stride 0.5 m, rgb + local geometry; the scan has no colour: mid grey),
freshly initialised unless ``--checkpoint`` names one (the cost does not depend on the
weights). The breakdown of the block path (``pcseg.data.predict_room`` as ``predict_tile``
calls it: real counts, overlap only in full blocks): the per-scan fields
(``pcseg.inputs.room_fields``: a LiDAR model's range, and the multiscale features where the
model takes them), block placement (``block_chunks``),
the 9 block features and merging (the averaged logits: the rest of ``predict_room``), the
local geometric inputs (``pcseg.inputs.block_inputs``) and the model's forward.

A LiDAR model (``data.use_intensity`` / ``data.use_range``, e.g. the ``pcseg demo --lidar``
checkpoint ``demo_lidar_out/run/last.pt``) is given the scan's remission: it is timed through
``pcseg.predict.segment_cloud(..., intensity=...)``, the function ``Segmenter.predict`` calls,
with the Segmenter's tile and batch sizes. ``--device cuda`` times the same path on a GPU.

Today's path (before blocks followed the points: every block of the dense grid resampled to
``num_points``) is timed with ``--baseline ROOT``, a checkout of the earlier commit whose
``pcseg`` is imported in a subprocess with the same weights; ``--crop M`` keeps the points
within M metres of the sensor (both paths) to time it on part of the scan.

    python benchmarks/bm_predict_scan.py [--threads 2] [--crop 20] [--baseline /tmp/base] [--checkpoint x.pt]
        [--device cuda] [--votes 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pcseg.checkpoint import build_model_from_config, model_from_checkpoint
from pcseg.config import load_config
from pcseg.data.blocks import block_chunks, predict_room, room_frame, to_local
from pcseg.inputs import block_inputs, input_normals, room_fields
from pcseg.predict import segment_cloud
from pcseg.segmenter import Segmenter

ROOT = Path(__file__).resolve().parents[1]
SCAN = ROOT.parent / "shared" / "data" / "semantickitti" / "000000.bin"

BASELINE = """
import sys, time, numpy as np, torch
from pcseg.config import load_config
from pcseg.checkpoint import build_model_from_config
from pcseg.segmenter import Segmenter
torch.set_num_threads({threads})
cfg = load_config({config!r})
model = build_model_from_config(cfg)
model.load_state_dict(torch.load({weights!r}, weights_only=True))
points = np.load({points!r})
start = time.perf_counter()
Segmenter(model, cfg).predict(points)
print(time.perf_counter() - start)
"""


def load_scan(crop: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The scan's xyz (N, 3) float32 and remission (N,) float32, optionally only the points
    within ``crop`` m in xy."""
    scan = np.fromfile(SCAN, dtype=np.float32).reshape(-1, 4)
    if crop:
        scan = scan[np.linalg.norm(scan[:, :2], axis=1) <= crop]
    return np.ascontiguousarray(scan[:, :3]), np.ascontiguousarray(scan[:, 3])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def breakdown(
    model: torch.nn.Module, cfg, points: np.ndarray, intensity: np.ndarray, device: torch.device = torch.device("cpu")
) -> dict:
    """Seconds of each stage of the block path on one tile holding the whole cloud."""
    data = cfg.data
    local = np.asfortranarray(to_local(points))
    start = time.perf_counter()
    fields = room_fields(points, intensity if data.use_intensity else None, data)
    scan_fields = time.perf_counter() - start
    room = {"coord": local, "color": np.full((len(local), 3), 0.5, dtype=np.float32), **fields}
    times = {"inputs": 0.0, "model": 0.0, "scan fields": scan_fields}
    start = time.perf_counter()
    _, lengths = block_chunks(
        local,
        data.block_size,
        data.eval_stride,
        data.num_points,
        np.random.default_rng(0),
        min_overlap_points=data.num_points,
    )
    times["placement"] = time.perf_counter() - start

    def predict_block(features, lengths):
        t = time.perf_counter()
        lengths = None if bool((lengths == features.shape[1]).all()) else lengths.to(device)
        pts, feats = block_inputs(features.to(device), data, lengths)
        _sync(device)
        times["inputs"] += time.perf_counter() - t
        t = time.perf_counter()
        kwargs = {} if lengths is None else {"lengths": lengths}
        logits = model(pts, feats, normals=input_normals(feats, data), **kwargs).transpose(1, 2).cpu()
        times["model"] += time.perf_counter() - t
        return logits

    start = time.perf_counter()
    with torch.no_grad():
        # as pcseg.predict.predict_tile calls it
        predict_room(
            room,
            predict_block,
            data.num_classes,
            data.block_size,
            data.eval_stride,
            data.num_points,
            real_counts=True,
            frame=room_frame(local),
            min_overlap_points=data.num_points,
        )
    total = time.perf_counter() - start
    # block features (the 9 PointNet ones) and merging: the rest of predict_room
    times["features + merging"] = total - times["inputs"] - times["model"] - times["placement"]
    times["total"] = total + scan_fields
    times["chunks"] = len(lengths)
    times["fed points"] = int(lengths.sum())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--crop", type=float, default=None, help="keep points within this many metres (xy)")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint instead of fresh demo-like weights")
    parser.add_argument("--baseline", default=None, help="a checkout of today's path, timed in a subprocess")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--votes", type=int, default=1, help="test-time votes (segment_cloud(votes=...)); 1: one pass")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = ROOT / "configs" / "pointnet_synthetic.yaml"
    if args.checkpoint:
        model, cfg, _ = model_from_checkpoint(args.checkpoint)
    else:
        cfg = load_config(config)
        torch.manual_seed(0)
        model = build_model_from_config(cfg)
    model.eval().to(device)
    points, intensity = load_scan(args.crop)
    lidar = cfg.data.use_intensity or cfg.data.use_range
    print(
        f"scan: {len(points):,} points, extent {np.ptp(points, 0).round(1).tolist()} m; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {device}, load averages "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    segmenter = Segmenter(model, cfg, device, votes=args.votes)
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        if lidar:  # what Segmenter.predict runs, given the remission
            with torch.no_grad():
                segment_cloud(
                    model,
                    cfg,
                    points,
                    None,
                    device,
                    max_tile_points=segmenter.max_tile_points,
                    batch_size=segmenter.batch_size,
                    intensity=intensity,
                    votes=args.votes,
                )
        else:
            segmenter.predict(points)
        _sync(device)
        seconds.append(time.perf_counter() - start)
    best = min(seconds)
    print(
        f"{'segment_cloud' if lidar else 'Segmenter.predict'}, {args.votes} vote(s): {best:.2f} s "
        f"(best of {args.repeats}: {', '.join(f'{s:.2f}' for s in seconds)}), "
        f"{len(points) / best:,.0f} points/s"
    )
    with torch.no_grad():
        parts = breakdown(model, cfg, points, intensity, device)
    print(
        f"breakdown: {parts['chunks']:,} chunks, {parts['fed points']:,} points fed "
        f"({parts['fed points'] / len(points):.2f} per scan point)"
    )
    for name in ("scan fields", "placement", "features + merging", "inputs", "model", "total"):
        label = {
            "inputs": "geometric inputs (knn, normals)",
            "scan fields": "scan fields (range, multiscale)",
        }.get(name, name)
        print(f"  {label:<32} {parts[name]:7.2f} s  {100 * parts[name] / parts['total']:5.1f} %")
    if args.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            weights, cloud = Path(tmp) / "weights.pt", Path(tmp) / "points.npy"
            torch.save(model.state_dict(), weights)
            np.save(cloud, points)
            code = BASELINE.format(
                threads=torch.get_num_threads(), config=str(config), weights=str(weights), points=str(cloud)
            )
            out = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONPATH": str(args.baseline)},
                cwd=args.baseline,
            )
        base = float(out.stdout.strip().splitlines()[-1])
        print(
            f"today's path ({args.baseline}): {base:.1f} s, {len(points) / base:,.0f} points/s; "
            f"new path {base / best:.1f}x faster (load {os.getloadavg()[0]:.1f})"
        )


if __name__ == "__main__":
    main()
