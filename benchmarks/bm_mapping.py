"""Benchmarks of mapping on real sensors (issue 15): distortion, LiDAR and RGB-D fusion with
free-space clearing against Open3D's VoxelBlockGrid TSDF integration, and an endless drive.

    .venv/bin/python benchmarks/bm_mapping.py                       # everything, 2 torch threads
    .venv/bin/python benchmarks/bm_mapping.py --only lidar rgbd --threads 1
    .venv/bin/python benchmarks/bm_mapping.py --only drive --frames 10000

1. distortion: `paint_points` (120,000 points, 1242x375 20-class scores), `project_points`
   and `backproject_depth` (640x480) with a plumb_bob / rational_polynomial / equidistant
   camera against the same camera without distortion, interleaved (target: within 1.5x).
2. lidar: `Fuser.add_lidar` of 120,000-point frames (`bm_bridge.synthetic_lidar_scan`,
   64 x 1875) painted from a 1242x375 20-class score map, 0.1 m voxels, with and without
   free-space clearing, the sensor driving 1 m per frame, the median of 5 passes over the
   frames (target: >= 10 frames/s with clearing); peer: Open3D `VoxelBlockGrid` TSDF
   integration (tsdf, weight) of the same frames' LiDAR depth in the same camera, 0.1 m voxels.
3. rgbd: `Fuser.add_rgbd` of rendered 640x480 frames (`bm_bridge.room_frames`), 13-class
   label maps, 5 cm voxels, with and without clearing, the median of 5 passes (target:
   >= 15 frames/s with clearing); peer: Open3D `VoxelBlockGrid` TSDF integration (tsdf,
   weight, color) of the same depth and colour at 5 cm.
4. drive: an endless drive of small simulated scans (16 x 360 beams) with a 30 m bounded
   map and clearing: voxels, process RSS and ms/frame every 10% of the frames (target:
   memory flat after warm-up).

The machine may be shared: every figure is printed with the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_ms  # noqa: E402
from bm_bridge import kitti_like_camera, room_frames, synthetic_lidar_scan  # noqa: E402

from pcseg.bridge import PinholeCamera, backproject_depth, paint_points, project_points, render_labels  # noqa: E402
from pcseg.fuser import Fuser  # noqa: E402
from pcseg.utils.open3d import import_open3d  # noqa: E402

DISTORTIONS = {
    "plumb_bob": (-0.28, 0.09, 0.001, -0.0008, -0.012),
    "rational_polynomial": (0.42, -0.05, 0.0006, 0.0011, -0.003, 0.78, 0.02, -0.01),
    "equidistant": (-0.012, 0.045, -0.041, 0.0075),
}


def _load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def _distorted(camera: PinholeCamera, model: str) -> PinholeCamera:
    return PinholeCamera(
        camera.fx,
        camera.fy,
        camera.cx,
        camera.cy,
        camera.width,
        camera.height,
        distortion=DISTORTIONS[model],
        distortion_model=model,
    )


def bench_distortion(min_run_time: float) -> None:
    camera, T_cam_from_velo = kitti_like_camera()
    scan = synthetic_lidar_scan()
    rng = np.random.default_rng(0)
    scores = rng.random((20, camera.height, camera.width), dtype=np.float32)
    _, frames = room_frames(1)
    depth = frames[0]["depth"]
    rgbd_camera = PinholeCamera(525.0, 525.0, 319.5, 239.5, 640, 480)
    print(f"\n[distortion] {len(scan):,} points, 1242x375 20-class scores; 640x480 depth ({_load()})")
    print(f"  {'work':<22} {'model':<20} {'median ms':>10} {'vs none':>8}")
    for model in DISTORTIONS:
        lidar_camera, depth_camera = _distorted(camera, model), _distorted(rgbd_camera, model)
        backproject_depth(depth, depth_camera, 1.0, 20.0)  # the per-camera ray grid is built once
        works = {
            "paint_points": lambda c: paint_points(scan, scores, c, T_cam_from_velo),
            "project_points": lambda c: project_points(scan, c, T_cam_from_velo),
        }
        for work, function in works.items():
            medians, ratios = interleaved_ms(
                {
                    "none": lambda function=function: function(camera),
                    model: lambda function=function, lidar_camera=lidar_camera: function(lidar_camera),
                },
                min_run_time,
            )
            print(
                f"  {work:<22} {model:<20} {medians[model]:10.2f} {ratios[model]:7.2f}x  "
                f"(none {medians['none']:.2f} ms)"
            )
        medians, ratios = interleaved_ms(
            {
                "none": lambda: backproject_depth(depth, rgbd_camera, 1.0, 20.0),
                model: lambda depth_camera=depth_camera: backproject_depth(depth, depth_camera, 1.0, 20.0),
            },
            min_run_time,
        )
        print(
            f"  {'backproject_depth':<22} {model:<20} {medians[model]:10.2f} {ratios[model]:7.2f}x  "
            f"(none {medians['none']:.2f} ms)"
        )


def _open3d_tsdf(voxel_size: float, color: bool, block_count: int):
    open3d = import_open3d()
    names, dtypes, channels = ["tsdf", "weight"], [open3d.core.float32, open3d.core.float32], [[1], [1]]
    if color:
        names.append("color")
        dtypes.append(open3d.core.float32)
        channels.append([3])
    return open3d.t.geometry.VoxelBlockGrid(names, dtypes, channels, voxel_size, 16, block_count)


def _open3d_integrate(
    grid, depth: np.ndarray, color, camera: PinholeCamera, T_camera_from_world: np.ndarray, depth_max: float
) -> None:
    open3d = import_open3d()
    intrinsic = open3d.core.Tensor(camera.matrix, open3d.core.float64)
    extrinsic = open3d.core.Tensor(T_camera_from_world, open3d.core.float64)
    depth_image = open3d.t.geometry.Image(open3d.core.Tensor(depth))
    blocks = grid.compute_unique_block_coordinates(depth_image, intrinsic, extrinsic, 1.0, depth_max)
    if color is None:
        grid.integrate(blocks, depth_image, intrinsic, extrinsic, 1.0, depth_max)
    else:
        color_image = open3d.t.geometry.Image(open3d.core.Tensor(np.ascontiguousarray(color, dtype=np.float32) / 255.0))
        grid.integrate(blocks, depth_image, color_image, intrinsic, extrinsic, 1.0, depth_max)


def _frames_per_second(function, frames, rounds: int = 5) -> float:
    """Median over `rounds` passes through the frames (this machine's speed drifts)."""
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for frame in frames:
            function(frame)
        rates.append(len(frames) / (time.perf_counter() - start))
    return float(np.median(rates))


def bench_lidar(num_frames: int) -> None:
    camera, T_cam_from_velo = kitti_like_camera()
    scan = synthetic_lidar_scan()
    rng = np.random.default_rng(0)
    scores = rng.random((20, camera.height, camera.width), dtype=np.float32)
    scores /= scores.sum(axis=0, keepdims=True)
    # The Open3D peer integrates the same scan as the camera's sparse depth image.
    rendered = render_labels(scan, np.zeros(len(scan), np.int64), camera, T_cam_from_velo)
    depth = np.where(np.isfinite(rendered.depth), rendered.depth, 0.0).astype(np.float32)
    frames = []
    for index in range(num_frames):
        pose = np.eye(4)
        pose[:3, 3] = [1.0 * index, 0.0, 0.0]
        frames.append({"pose": pose, "depth": depth})
    print(
        f"\n[lidar] {num_frames} frames x {len(scan):,} points, 1242x375 20-class scores, voxel 0.1 m, bayes, "
        f"threads {torch.get_num_threads()} ({_load()})"
    )
    for clear in (False, True):
        fuser = Fuser(20, 0.1, "bayes", clear_free_space=clear)
        fuser.add_lidar(scan, scores, (camera, T_cam_from_velo), frames[0]["pose"])  # warm-up
        fps = _frames_per_second(
            lambda frame, fuser=fuser: fuser.add_lidar(scan, scores, (camera, T_cam_from_velo), frame["pose"]), frames
        )
        print(
            f"  pcseg Fuser.add_lidar, clear_free_space={clear!s:<5}: {fps:6.1f} frames/s "
            f"({1e3 / fps:6.1f} ms/frame, {fuser.num_voxels:,} voxels) ({_load()})"
        )
    grid = _open3d_tsdf(0.1, color=False, block_count=100_000)
    T_cam_from_world = [T_cam_from_velo @ np.linalg.inv(frame["pose"]) for frame in frames]
    for frame, extrinsic in zip(frames, T_cam_from_world):
        frame["extrinsic"] = extrinsic
    fps = _frames_per_second(
        lambda frame: _open3d_integrate(grid, frame["depth"], None, camera, frame["extrinsic"], 80.0), frames
    )
    print(
        f"  Open3D VoxelBlockGrid TSDF (LiDAR depth in the camera): {fps:6.1f} frames/s ({1e3 / fps:6.1f} ms/frame) "
        f"({_load()})"
    )
    print("  target: >= 10 frames/s with clearing")


def bench_rgbd(num_frames: int) -> None:
    camera, frames = room_frames(num_frames)
    for frame in frames:
        frame["labels"] = np.clip(frame["label"], 0, None)
    print(
        f"\n[rgbd] {num_frames} rendered 640x480 frames, 13-class label maps, voxel 5 cm, bayes, "
        f"threads {torch.get_num_threads()} ({_load()})"
    )
    for clear in (False, True):
        fuser = Fuser(13, 0.05, "bayes", clear_free_space=clear)

        def add(frame, fuser=fuser):
            fuser.add_rgbd(frame["color"], frame["depth"], frame["labels"], camera, frame["pose"], depth_trunc=20.0)

        add(frames[0])  # warm-up
        fps = _frames_per_second(add, frames)
        print(
            f"  pcseg Fuser.add_rgbd, clear_free_space={clear!s:<5}: {fps:6.1f} frames/s ({1e3 / fps:6.1f} ms/frame, "
            f"{fuser.num_voxels:,} voxels) ({_load()})"
        )
    grid = _open3d_tsdf(0.05, color=True, block_count=50_000)
    fps = _frames_per_second(
        lambda frame: _open3d_integrate(
            grid, frame["depth"].astype(np.float32), frame["color"], camera, np.linalg.inv(frame["pose"]), 20.0
        ),
        frames,
    )
    print(
        f"  Open3D VoxelBlockGrid TSDF (tsdf, weight, color):   {fps:6.1f} frames/s ({1e3 / fps:6.1f} ms/frame) "
        f"({_load()})"
    )
    print("  target: >= 15 frames/s with clearing")


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_drive(num_frames: int) -> None:
    scan = synthetic_lidar_scan(num_beams=16, num_azimuths=360)
    labels = (np.arange(len(scan)) % 3).astype(np.int64)
    fuser = Fuser(3, 0.2, "bayes", clear_free_space=True, max_distance=30.0)
    print(
        f"\n[drive] {num_frames:,} frames x {len(scan):,} points, the sensor 0.5 m further each frame (and a "
        f"slow turn), voxel 0.2 m, clearing, max_distance 30 m ({_load()})"
    )
    print(f"  {'frame':>7} {'voxels':>9} {'RSS MB':>8} {'ms/frame':>9}")
    start = time.perf_counter()
    for index in range(num_frames):
        yaw = 0.002 * index
        rotation = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        origin = np.array([0.5 * index, 20.0 * np.sin(0.001 * index), 1.73])
        fuser.add_points(scan @ rotation.T + origin, labels, sensor_origin=origin, timestamp=0.1 * index)
        if (index + 1) % max(1, num_frames // 10) == 0:
            elapsed = time.perf_counter() - start
            print(
                f"  {index + 1:7d} {fuser.num_voxels:9,d} {_rss_mb():8.1f} {1e3 * elapsed / (num_frames // 10):9.2f}"
                f"  ({_load()})",
                flush=True,
            )
            start = time.perf_counter()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=["distortion", "lidar", "rgbd", "drive"], help="run these parts")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--frames", type=int, default=10_000, help="frames of the endless drive")
    parser.add_argument("--min-run-time", type=float, default=2.0, help="seconds per interleaved timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, {_load()}")
    parts = args.only or ["distortion", "lidar", "rgbd", "drive"]
    if "distortion" in parts:
        bench_distortion(args.min_run_time)
    if "lidar" in parts:
        bench_lidar(10)
    if "rgbd" in parts:
        bench_rgbd(10)
    if "drive" in parts:
        bench_drive(args.frames)
    print(f"\n{_load()} after")


if __name__ == "__main__":
    main()
