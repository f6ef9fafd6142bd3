"""estimate_normals (PCA over 16 nearest neighbours): pcseg vs open3d's estimate_normals with
KDTreeSearchParamKNN(16), with the angle between the two results.

python benchmarks/bm_estimate_normals.py
"""

import numpy as np
from _common import median_ms, report

from pcseg.ops import estimate_normals
from pcseg.testing import surface_cloud
from pcseg.utils.open3d import import_open3d


def sphere(n=100_000, k=16):
    o3d = import_open3d()
    pts, true_normals = surface_cloud(n, seed=0)
    ours = estimate_normals(pts, k).numpy()
    x64 = pts.numpy().astype(np.float64)

    def o3d_normals():
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(x64))
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(k))
        return np.asarray(cloud.normals)

    theirs = o3d_normals()
    cos_o3d = np.abs(np.sum(ours * theirs, -1))
    cos_true = np.abs(np.sum(ours * true_normals.numpy(), -1))
    rows = [
        (
            f"pcseg estimate_normals k={k}",
            median_ms(lambda: estimate_normals(pts, k)),
            f"median angle to true normal {np.degrees(np.arccos(np.clip(np.median(cos_true), 0, 1))):.2f} deg",
        ),
        (
            f"open3d estimate_normals KNN({k})",
            median_ms(o3d_normals),
            f"{np.mean(cos_o3d > np.cos(np.radians(1))):.2%} within 1 deg of pcseg (up to sign)",
        ),
    ]
    report(f"normals of {n:,} points on a sphere", rows, f"pcseg estimate_normals k={k}")


if __name__ == "__main__":
    sphere()
