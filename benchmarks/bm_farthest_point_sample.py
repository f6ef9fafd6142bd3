"""FPS: pcseg vs fpsample, open3d and the naive torch loop, with identity checks.

python benchmarks/bm_farthest_point_sample.py
"""

import fpsample
import numpy as np
from _common import median_ms, report

from pcseg.ops import farthest_point_sample, farthest_point_sample_naive
from pcseg.testing import random_cloud
from pcseg.utils.open3d import import_open3d


def same(a, b) -> str:
    return (
        "identical to naive"
        if np.array_equal(np.asarray(a), np.asarray(b))
        else f"differs from naive ({np.mean(np.asarray(a) == np.asarray(b)):.1%} equal positions)"
    )


def one_cloud(n=100_000, m=4096):
    o3d = import_open3d()
    pts = random_cloud(1, n, seed=0)[0]
    x = pts.numpy()
    ref = farthest_point_sample_naive(pts, m).numpy()
    ours = farthest_point_sample(pts, m).numpy()
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(x.astype(np.float64)))
    rows = [
        ("pcseg farthest_point_sample", median_ms(lambda: farthest_point_sample(pts, m)), same(ours, ref)),
        (
            "fpsample.bucket_fps_kdline_sampling(h=7)",
            median_ms(lambda: fpsample.bucket_fps_kdline_sampling(x, m, h=7, start_idx=0)),
            same(fpsample.bucket_fps_kdline_sampling(x, m, h=7, start_idx=0), ref),
        ),
        (
            "fpsample.bucket_fps_kdtree_sampling",
            median_ms(lambda: fpsample.bucket_fps_kdtree_sampling(x, m, start_idx=0)),
            same(fpsample.bucket_fps_kdtree_sampling(x, m, start_idx=0), ref),
        ),
        (
            "fpsample.fps_sampling (vanilla)",
            median_ms(lambda: fpsample.fps_sampling(x, m, start_idx=0), 0.5),
            same(fpsample.fps_sampling(x, m, start_idx=0), ref),
        ),
        (
            "open3d farthest_point_down_sample",
            median_ms(lambda: pc.farthest_point_down_sample(m), 0.5),
            "float64 points",
        ),
        (
            "naive torch (pcseg farthest_point_sample_naive)",
            median_ms(lambda: farthest_point_sample_naive(pts, m), 0.1),
            "reference",
        ),
    ]
    report(f"FPS, one cloud {n:,} -> {m:,}", rows, "pcseg farthest_point_sample")


def batch(b=16, n=4096, m=1024):
    o3d = import_open3d()
    pts = random_cloud(b, n, seed=1)
    xs = [c.numpy() for c in pts]
    ref = farthest_point_sample_naive(pts, m).numpy()
    ours = farthest_point_sample(pts, m).numpy()
    clouds = [o3d.geometry.PointCloud(o3d.utility.Vector3dVector(x.astype(np.float64))) for x in xs]
    rows = [
        ("pcseg farthest_point_sample", median_ms(lambda: farthest_point_sample(pts, m)), same(ours, ref)),
        (
            "fpsample.bucket_fps_kdline_sampling(h=5) loop",
            median_ms(lambda: [fpsample.bucket_fps_kdline_sampling(x, m, h=5, start_idx=0) for x in xs]),
            same([fpsample.bucket_fps_kdline_sampling(x, m, h=5, start_idx=0) for x in xs], ref),
        ),
        (
            "fpsample.fps_sampling loop",
            median_ms(lambda: [fpsample.fps_sampling(x, m, start_idx=0) for x in xs]),
            same([fpsample.fps_sampling(x, m, start_idx=0) for x in xs], ref),
        ),
        (
            "open3d farthest_point_down_sample loop",
            median_ms(lambda: [c.farthest_point_down_sample(m) for c in clouds], 0.5),
            "",
        ),
        ("naive torch", median_ms(lambda: farthest_point_sample_naive(pts, m), 0.1), "reference"),
    ]
    report(f"FPS, batch {b} x {n:,} -> {m:,}", rows, "pcseg farthest_point_sample")


if __name__ == "__main__":
    one_cloud()
    batch()
