"""Benchmark of pcseg.refine.crf: speed on 1,000,000 points, and what it does to accuracy.

    .venv/bin/python benchmarks/bm_crf.py                     # everything, torch's default threads
    .venv/bin/python benchmarks/bm_crf.py --only speed --threads 1
    .venv/bin/python benchmarks/bm_crf.py --only speed --points 1000000 --min-run-time 10
    .venv/bin/python benchmarks/bm_crf.py --only quality

1. speed: a generated room (`pcseg.data.synthetic.generate_room`) of `--points` points with
   colours, normals and noisy 13-class probabilities, refined with the defaults (k = 16, 5
   mean-field steps). Reported separately: the kNN graph (`pcseg.ops.knn`, k + 1 neighbours),
   the kernel matrix (graph + Gaussian kernel values), the mean-field steps, and `crf` end to
   end (checks, Morton sort and the rest included). Target: <= 5 s end to end on 2 cores.
2. quality: point accuracy against the true labels before / after the CRF on the real NYU
   1407 frame (the simulated 2D network's errors applied to the true label image,
   back-projected; when ../shared/data is present) and, on a generated room with noisy
   probabilities, overall and within 5 cm of a class boundary.

The machine may be shared: medians are reported with the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from _common import median_ms  # the benchmarks' shared timer (same folder)

from pcseg.data.synthetic import generate_room
from pcseg.ops import knn
from pcseg.refine import crf, knn_kernel, mean_field, morton_order

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NUM_CLASSES = 13


def noisy_room(num_points: int, seed: int = 3, gain: float = 2.0) -> tuple[dict, np.ndarray]:
    """A generated room and probabilities softmax(gain * one_hot(label) + N(0, 1)), as in the tests."""
    room = generate_room(seed, num_points)
    rng = np.random.default_rng(7)
    logits = rng.normal(0.0, 1.0, (num_points, NUM_CLASSES)).astype(np.float32)
    logits[np.arange(num_points), room["label"]] += gain
    probabilities = np.exp(logits)
    return room, probabilities / probabilities.sum(axis=1, keepdims=True)


def bench_speed(num_points: int, min_run_time: float) -> None:
    room, probabilities = noisy_room(num_points)
    order = morton_order(room["coord"])  # what crf does first
    points = torch.from_numpy(room["coord"] - room["coord"].mean(axis=0))[order]
    colors = torch.from_numpy(room["color"].astype(np.float32) / 255.0)[order]
    normals = torch.from_numpy(room["normal"])[order]
    options = dict(k=16, position_sigma=0.05, color_sigma=0.1, normal_sigma=0.3, weights=(3.0, 1.0))
    unary = -torch.log(torch.from_numpy(probabilities).clamp_min(1e-6))[order]
    mu = 1.0 - torch.eye(NUM_CLASSES)
    kernel = knn_kernel(points, colors, normals, **options)
    shuffled = torch.randperm(num_points, generator=torch.Generator().manual_seed(0))
    unsorted_kernel = knn_kernel(points[shuffled], colors[shuffled], normals[shuffled], **options)
    load = os.getloadavg()[0]
    timings = {
        "kNN graph (pcseg.ops.knn, k+1=17)": lambda: knn(points, points, 17),
        "kernel matrix (kNN graph + kernel values)": lambda: knn_kernel(points, colors, normals, **options),
        "mean field, 5 steps": lambda: mean_field(unary, kernel, mu, 5),
        "mean field, 5 steps, points in random order": lambda: mean_field(unary[shuffled], unsorted_kernel, mu, 5),
        "crf end to end (target <= 5 s)": lambda: crf(room["coord"], probabilities, room["color"], room["normal"]),
    }
    seconds = {name: median_ms(function, min_run_time) / 1e3 for name, function in timings.items()}
    print(
        f"\n[speed] {num_points:,} points, 13 classes, k=16, 5 mean-field steps, colours + normals, "
        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores, "
        f"median over {min_run_time:g} s of calls after a warm-up, "
        f"load average {load:.1f} before / {os.getloadavg()[0]:.1f} after; Morton order unless said"
    )
    for name, value in seconds.items():
        print(f"  {name:<48} {value:7.2f} s")


def _accuracy(probabilities: np.ndarray, labels: np.ndarray, mask=slice(None)) -> float:
    return float((probabilities.argmax(axis=1) == labels)[mask].mean())


def bench_quality() -> None:
    from scipy.spatial import cKDTree

    print("\n[quality] point accuracy against the true labels, before -> after crf (defaults)")
    room, probabilities = noisy_room(50_000)
    labels = room["label"]
    near_boundary = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        own = labels == label
        near_boundary[own] = cKDTree(room["coord"][~own]).query(room["coord"][own])[0] < 0.05
    for name, kwargs in (
        ("colours + normals", dict(colors=room["color"], normals=room["normal"])),
        ("colours", dict(colors=room["color"])),
        ("positions only", {}),
    ):
        refined = crf(room["coord"], probabilities, **kwargs)
        print(
            f"  generated room 3, 50,000 points, {name:17s}: all {_accuracy(probabilities, labels):.3f} -> "
            f"{_accuracy(refined, labels):.3f}; within 5 cm of a boundary ({near_boundary.mean():.1%} of points) "
            f"{_accuracy(probabilities, labels, near_boundary):.3f} -> {_accuracy(refined, labels, near_boundary):.3f}"
        )
    folder = SHARED_DATA / "nyu1407"
    if not folder.is_dir():
        print("  (NYU 1407 not found: skipped)")
        return
    from PIL import Image

    from pcseg.bridge import backproject_depth
    from pcseg.data.nyu import read_nyu_frame
    from pcseg.demo.bridge import corrupt_labels

    frame = read_nyu_frame(folder / "images.png", folder / "depth.png", folder / "DERIVED_class13_1407_crop425x560.png")
    truth_image = frame["label_image"] - 1
    depth = np.array(Image.open(folder / "depth.png"))
    backprojected = backproject_depth(depth, frame["camera"], depth_scale=1000.0, depth_trunc=10.0)
    truth = backprojected.take(truth_image)
    labelled = truth >= 0
    colors = backprojected.take(frame["image"])
    for seed in range(3):
        _, scores = corrupt_labels(truth_image, NUM_CLASSES, np.random.default_rng(seed))
        noisy = backprojected.take(scores, channels_first=True).copy()
        noisy[~labelled] = 1.0 / NUM_CLASSES
        start = time.perf_counter()
        refined = crf(backprojected.points, noisy, colors)
        seconds = time.perf_counter() - start
        print(
            f"  NYU 1407, {len(truth):,} points, corrupt_labels seed {seed}: "
            f"{_accuracy(noisy, truth, labelled):.3f} -> {_accuracy(refined, truth, labelled):.3f} ({seconds:.2f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("speed", "quality"))
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own count)")
    parser.add_argument("--min-run-time", type=float, default=10.0, help="seconds of timed calls per item")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only in (None, "speed"):
        bench_speed(args.points, args.min_run_time)
    if args.only in (None, "quality"):
        bench_quality()


if __name__ == "__main__":
    main()
