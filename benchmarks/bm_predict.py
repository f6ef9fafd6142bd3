"""Points per second of ``Segmenter.predict`` on a 1,000,000-point cloud on the CPU, for the
demo's PointNet and for A-CNN (block preset).

Both models are freshly initialised (prediction cost does not depend on the weights); the
cloud is ten procedural rooms of 100,000 points side by side (a 1M-point floor plan), so the
tiling, the sliding blocks (each config's ``eval_stride``: 0.5 m for PointNet as in the demo,
1.0 m for A-CNN), the local geometric inputs and the network are all in the measured time.

    python benchmarks/bm_predict.py [--points 1000000] [--models pointnet acnn] [--threads 2] [--stride 1.0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pcseg.checkpoint import build_model_from_config
from pcseg.config import load_config
from pcseg.data import generate_room
from pcseg.segmenter import Segmenter

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MODEL_CONFIGS = {"pointnet": "pointnet_synthetic.yaml", "acnn": "acnn_synthetic.yaml"}


def floor_plan(num_points: int, room_points: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Rooms of ``room_points`` placed side by side along x until ``num_points`` points."""
    coords, colors, offset, seed = [], [], 0.0, 0
    while sum(len(c) for c in coords) < num_points:
        room = generate_room(seed, room_points)
        coord = room["coord"].astype(np.float32).copy()
        coord[:, 0] += offset - coord[:, 0].min()
        offset = coord[:, 0].max() + 0.5
        coords.append(coord)
        colors.append(room["color"])
        seed += 1
    return np.concatenate(coords)[:num_points], np.concatenate(colors)[:num_points]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--models", nargs="+", default=["pointnet", "acnn"], choices=sorted(MODEL_CONFIGS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--stride",
        type=float,
        default=None,
        help="sliding-block stride in metres for every model (default: each config's eval_stride)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    coord, color = floor_plan(args.points)
    print(
        f"cloud: {len(coord):,} points, extent {np.ptp(coord, 0).round(1).tolist()} m; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for name in args.models:
        cfg = load_config(
            CONFIGS / MODEL_CONFIGS[name], [] if args.stride is None else [f"data.eval_stride={args.stride}"]
        )
        torch.manual_seed(0)
        segmenter = Segmenter(build_model_from_config(cfg), cfg)
        start = time.perf_counter()
        labels, probs = segmenter.predict(coord, color)
        seconds = time.perf_counter() - start
        assert labels.shape == (len(coord),) and probs.shape == (len(coord), cfg.data.num_classes)
        print(
            f"{name:<9} {cfg.model.name} width x{cfg.model.width_multiplier}, {cfg.data.num_points} points/block, "
            f"stride {cfg.data.eval_stride} m: {seconds:6.1f} s, {len(coord) / seconds:,.0f} points/s"
        )


if __name__ == "__main__":
    main()
