"""kNN (k=16): pcseg vs scipy cKDTree, open3d's core NearestNeighborSearch and KDTreeFlann,
with an identity check against cKDTree (indices up to ties, distances to 1e-6).

python benchmarks/bm_knn.py
"""

import numpy as np
from _common import median_ms, report
from scipy.spatial import cKDTree

from pcseg.ops import knn
from pcseg.testing import random_cloud
from pcseg.utils.open3d import import_open3d


def same_as_ckdtree(d2, idx, x, k) -> str:
    """pcseg's squared distances vs cKDTree's, and the indices where distances do not tie."""
    ref_d, ref_i = cKDTree(x).query(x, k, workers=-1)
    d = np.sqrt(np.asarray(d2, dtype=np.float64))
    max_err = np.abs(d - ref_d).max()
    same_idx = np.mean(np.asarray(idx) == ref_i)
    return f"vs cKDTree: max |dist| err {max_err:.1e}, {same_idx:.4%} same indices"


def o3d_knn(o3d, x, k):
    nns = o3d.core.nns.NearestNeighborSearch(o3d.core.Tensor(x))
    nns.knn_index()
    return nns.knn_search(o3d.core.Tensor(x), k)


def one_cloud(n=100_000, k=16):
    o3d = import_open3d()
    pts = random_cloud(1, n, seed=0)[0]
    x = pts.numpy()
    d2, idx = knn(pts, pts, k)
    x64 = x.astype(np.float64)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(x64))

    def flann_loop():
        tree = o3d.geometry.KDTreeFlann(cloud)
        for p in x64:
            tree.search_knn_vector_3d(p, k)

    rows = [
        ("pcseg knn (tree build + query)", median_ms(lambda: knn(pts, pts, k)), same_as_ckdtree(d2, idx, x, k)),
        (
            "scipy cKDTree(x).query(x, k, workers=-1)",
            median_ms(lambda: cKDTree(x).query(x, k, workers=-1)),
            "build + query",
        ),
        ("open3d core.nns knn_index + knn_search", median_ms(lambda: o3d_knn(o3d, x, k)), "build + query"),
        ("open3d KDTreeFlann search_knn_vector_3d loop", median_ms(flann_loop, 0.5), "one Python call per query"),
    ]
    report(f"kNN k={k}, self-query of {n:,} points", rows, "pcseg knn (tree build + query)")


def batch(b=16, n=4096, k=16):
    o3d = import_open3d()
    pts = random_cloud(b, n, seed=1)
    xs = [c.numpy() for c in pts]
    d2, idx = knn(pts, pts, k)
    checks = [same_as_ckdtree(d2[i], idx[i], xs[i], k) for i in range(b)]
    rows = [
        ("pcseg knn", median_ms(lambda: knn(pts, pts, k)), checks[0] + " (cloud 0)"),
        ("scipy cKDTree loop (workers=-1)", median_ms(lambda: [cKDTree(x).query(x, k, workers=-1) for x in xs]), ""),
        ("open3d core.nns loop", median_ms(lambda: [o3d_knn(o3d, x, k) for x in xs]), ""),
    ]
    report(f"kNN k={k}, batch {b} x {n:,} self-query", rows, "pcseg knn")


if __name__ == "__main__":
    one_cloud()
    batch()
