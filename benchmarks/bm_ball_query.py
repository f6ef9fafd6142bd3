"""ball_query (the k nearest inside a radius): pcseg vs scipy cKDTree.query with
distance_upper_bound (the same semantics) and open3d's core hybrid_search.

python benchmarks/bm_ball_query.py
"""

import numpy as np
from _common import median_ms, report
from scipy.spatial import cKDTree

from pcseg.ops import ball_query
from pcseg.testing import random_cloud
from pcseg.utils.open3d import import_open3d


def o3d_hybrid(o3d, x, radius, k):
    nns = o3d.core.nns.NearestNeighborSearch(o3d.core.Tensor(x))
    nns.hybrid_index(radius)
    return nns.hybrid_search(o3d.core.Tensor(x), radius, k)


def one_cloud(n=100_000, radius=0.03, k=32):
    o3d = import_open3d()
    pts = random_cloud(1, n, seed=0)[0]
    x = pts.numpy()
    d2, idx = ball_query(pts, pts, radius, k)
    ref_d, ref_i = cKDTree(x).query(x, k, distance_upper_bound=radius, workers=-1)
    ref_i = np.where(np.isinf(ref_d), -1, ref_i)
    same = np.mean(idx.numpy() == ref_i)
    rows = [
        (
            f"pcseg ball_query r={radius} k={k}",
            median_ms(lambda: ball_query(pts, pts, radius, k)),
            f"{same:.4%} same indices as cKDTree",
        ),
        (
            "scipy cKDTree query(distance_upper_bound)",
            median_ms(lambda: cKDTree(x).query(x, k, distance_upper_bound=radius, workers=-1)),
            "build + query",
        ),
        (
            "open3d core.nns hybrid_index + hybrid_search",
            median_ms(lambda: o3d_hybrid(o3d, x, radius, k)),
            "build + query",
        ),
    ]
    report(f"ball query, self-query of {n:,} points", rows, f"pcseg ball_query r={radius} k={k}")


if __name__ == "__main__":
    one_cloud()
