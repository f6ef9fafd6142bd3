"""voxelize: pcseg's one-pass voxelisation with per-voxel sums against its pure-PyTorch
reference (torch.unique + index_add_) and Open3D's `voxel_down_sample` (voxel means of
points and colours), on an RGB-D frame's points (the dense-box path) and a LiDAR sweep (the
radix-sort path).

python benchmarks/bm_voxelize.py [--threads 2]
"""

import argparse
import os

import numpy as np
import torch
from _common import median_ms, report
from bm_bridge import room_frames, synthetic_lidar_scan

from pcseg.bridge import backproject_depth
from pcseg.ops import voxelize, voxelize_naive
from pcseg.utils.open3d import import_open3d


def _open3d_cloud(points: np.ndarray, colors: np.ndarray):
    open3d = import_open3d()
    cloud = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(points.astype(np.float64)))
    cloud.colors = open3d.utility.Vector3dVector(colors.astype(np.float64))
    return cloud


def bench(title: str, points: np.ndarray, colors: np.ndarray, labels: np.ndarray, voxel_size: float) -> None:
    points_t = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
    colors_t = torch.from_numpy(np.ascontiguousarray(colors, dtype=np.float32))
    labels_t = torch.from_numpy(labels.astype(np.int64))
    num_classes = int(labels.max()) + 1
    ours = voxelize(points_t, voxel_size, labels_t, num_classes, colors_t)
    reference = voxelize_naive(points_t, voxel_size, labels_t, num_classes, colors_t)
    assert torch.equal(ours.keys, reference.keys) and torch.equal(ours.label_counts, reference.label_counts)
    cloud = _open3d_cloud(points, colors)
    rows = [
        (
            "pcseg voxelize (labels, colours)",
            median_ms(lambda: voxelize(points_t, voxel_size, labels_t, num_classes, colors_t)),
            f"{ours.keys.shape[0]:,} voxels, same keys and counts as the reference",
        ),
        ("pcseg voxelize (keys only)", median_ms(lambda: voxelize(points_t, voxel_size)), ""),
        (
            "torch.unique + index_add_ (voxelize_naive)",
            median_ms(lambda: voxelize_naive(points_t, voxel_size, labels_t, num_classes, colors_t)),
            "",
        ),
        (
            "Open3D voxel_down_sample (point and colour means)",
            median_ms(lambda: cloud.voxel_down_sample(voxel_size)),
            "no labels; from an Open3D PointCloud",
        ),
    ]
    report(title, rows, "pcseg voxelize (labels, colours)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}")
    camera, frames = room_frames(2)
    frame = frames[1]
    backprojected = backproject_depth(frame["depth"], camera, 1.0, 20.0, pose=frame["pose"])
    bench(
        f"RGB-D frame: {len(backprojected.points):,} points, 5 cm voxels, 13 classes",
        backprojected.points,
        backprojected.take(frame["color"]) / 255.0,
        backprojected.take(np.clip(frame["label"], 0, None)),
        0.05,
    )
    scan = synthetic_lidar_scan()
    rng = np.random.default_rng(0)
    bench(
        f"LiDAR sweep: {len(scan):,} points, 0.1 m voxels, 20 classes",
        scan,
        rng.random((len(scan), 3)),
        rng.integers(0, 20, len(scan)),
        0.1,
    )


if __name__ == "__main__":
    main()
