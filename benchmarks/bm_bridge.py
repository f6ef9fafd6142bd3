"""Benchmarks of pcseg.bridge against its peers, measured in the same run.

    .venv/bin/python benchmarks/bm_bridge.py                # all three, 1 torch thread
    .venv/bin/python benchmarks/bm_bridge.py --threads 1 2   # also with 2 torch threads
    .venv/bin/python benchmarks/bm_bridge.py --threads 1 --only paint
    .venv/bin/python benchmarks/bm_bridge.py --threads 2 1 --only fusion-lidar

1. backproject: 640x480 depth -> points + colour + label transfer, vs Open3D's
   `RGBDImage.create_from_color_and_depth` + `PointCloud.create_from_rgbd_image` (colour only)
   on the same frame; the points are checked identical (max error printed).
2. paint: 120,000 LiDAR points into a 1242x375 score map with 20 classes, z-buffer on, vs a
   numpy PointPainting-style painter (no z > 0 check, no occlusion) and a numpy z-buffer painter.
3. fusion: VoxelLabelMap integrating 300,000 labelled points per frame (bayes / mean / vote),
   frames/s (a) over a sequence of rendered RGB-D views of a procedural room (compact frames,
   ~40k voxels each) and (b) over a moving 64-beam LiDAR: 300,032 points per scan spread over
   tens of metres, the sensor 1 m further (and 3 degrees turned) each frame, so every frame
   brings ~87,000 new voxels at 5 cm and the map keeps growing (1.8M voxels after 20 frames).

On a shared machine two torch threads can be far slower than one: libgomp's idle threads
spin for CPU the other process needs. `OMP_WAIT_POLICY=PASSIVE` (set before Python starts)
makes them sleep instead; the header prints the policy in force.

Inputs are built here from pcseg.data.synthetic (no sample data needed); with the real KITTI
frame at ../shared/data the paint benchmark also runs on it. The machine may be shared:
medians are reported with the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.utils.benchmark as benchmark

from pcseg.bridge import (
    KittiCalibration,
    PinholeCamera,
    VoxelLabelMap,
    backproject_depth,
    paint_points,
)
from pcseg.data.synthetic import build_room, look_at_pose, render_view
from pcseg.utils.open3d import import_open3d

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _median_ms(statements: dict[str, str], globals_: dict, threads: int, min_run_time: float) -> dict[str, float]:
    """Median milliseconds of each statement (label -> statement), timed one after the other."""
    medians = {}
    for label, statement in statements.items():
        timer = benchmark.Timer(statement, globals=globals_, num_threads=threads, label=label)
        medians[label] = timer.blocked_autorange(min_run_time=min_run_time).median * 1e3
    return medians


# ----- input builders ------------------------------------------------------------------------
def room_frames(num_frames: int, width: int = 640, height: int = 480, seed: int = 0):
    """Rendered RGB-D + label views of a procedural room along a circle: list of dicts with
    depth (H, W) float32 metres, label (H, W) int64, color (H, W, 3) uint8, pose (4, 4)."""
    scene = build_room(seed)
    room_width, room_depth, _ = scene.size
    camera = PinholeCamera(525.0, 525.0, (width - 1) / 2, (height - 1) / 2, width, height)
    frames = []
    for index in range(num_frames):
        angle = 2 * np.pi * index / num_frames
        eye = [room_width / 2 + 1.0 * np.cos(angle), room_depth / 2 + 1.0 * np.sin(angle), 1.5]
        target = [room_width / 2 - 2.0 * np.cos(angle), room_depth / 2 - 2.0 * np.sin(angle), 0.9]
        pose = look_at_pose(eye, target)
        view = render_view(scene, camera, pose)
        frames.append({"depth": view["depth"], "label": view["label"], "color": view["color"], "pose": pose})
    return camera, frames


def synthetic_lidar_scan(num_beams: int = 64, num_azimuths: int = 1875, seed: int = 0) -> np.ndarray:
    """(num_beams * num_azimuths, 3) float32 HDL-64-like scan: ground 1.73 m below, walls
    18-40 m away, and a few near boxes that occlude what is behind them."""
    rng = np.random.default_rng(seed)
    elevation = np.radians(np.linspace(-24.8, 2.0, num_beams))[:, None]
    azimuth = np.linspace(-np.pi, np.pi, num_azimuths, endpoint=False)[None, :]
    wall = 18.0 + 22.0 * (0.5 + 0.5 * np.sin(3.0 * azimuth))
    horizontal_range = np.broadcast_to(wall, (num_beams, num_azimuths)).copy()
    down = elevation < -1e-3
    ground = np.where(down, 1.73 / np.tan(-np.minimum(elevation, -1e-3)), np.inf)
    horizontal_range = np.minimum(horizontal_range, ground)
    for _ in range(12):  # obstacles: azimuth sector, distance, top height
        centre, half_width = rng.uniform(-0.8, 0.8), rng.uniform(0.03, 0.12)
        distance, top = rng.uniform(5.0, 15.0), rng.uniform(-0.2, 1.0)
        hit = (np.abs(azimuth - centre) < half_width) & (distance * np.tan(elevation) < top)
        horizontal_range = np.where(hit & (distance < horizontal_range), distance, horizontal_range)
    horizontal_range = horizontal_range + rng.normal(0.0, 0.02, horizontal_range.shape)
    x = horizontal_range * np.cos(azimuth)
    y = horizontal_range * np.sin(azimuth)
    z = horizontal_range * np.tan(elevation)
    return np.stack([x, y, z], axis=-1).reshape(-1, 3).astype(np.float32)


def lidar_sequence(num_frames: int, num_classes: int, step: float = 1.0, turn_degrees: float = 3.0, seed: int = 0):
    """A 64x4688 synthetic scan (300,032 points) seen from a sensor moving `step` metres and
    turning `turn_degrees` per frame: list of (points (N, 3) float32 world frame,
    probabilities (N, C) float32: a noisy peak on a random class) as torch tensors."""
    scan = synthetic_lidar_scan(num_beams=64, num_azimuths=4688, seed=seed)
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(num_frames):
        yaw = np.radians(turn_degrees) * index
        rotation = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        position = np.array([step * index, 0.1 * step * index, 0.0])
        points = (scan @ rotation.T + position).astype(np.float32)
        labels = rng.integers(0, num_classes, len(points))
        probabilities = rng.random((len(points), num_classes), dtype=np.float32)
        probabilities[np.arange(len(points)), labels] += 4.0
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        frames.append((torch.from_numpy(points), torch.from_numpy(probabilities)))
    return frames


def kitti_like_camera() -> tuple[PinholeCamera, np.ndarray]:
    """A 1242x375 camera and T_cam_from_velo of KITTI's geometry (x forward LiDAR, z forward camera)."""
    camera = PinholeCamera(720.0, 720.0, 620.5, 187.0, 1242, 375)
    T_cam_from_velo = np.array(
        [[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.08], [1.0, 0.0, 0.0, -0.27], [0.0, 0.0, 0.0, 1.0]]
    )
    return camera, T_cam_from_velo


# ----- peers ---------------------------------------------------------------------------------
def open3d_rgbd_points(depth_mm: np.ndarray, color: np.ndarray, intrinsic, depth_trunc: float):
    """Open3D's path: Image wrappers, RGBDImage, point cloud, numpy points and colours."""
    open3d = import_open3d()

    rgbd = open3d.geometry.RGBDImage.create_from_color_and_depth(
        open3d.geometry.Image(color), open3d.geometry.Image(depth_mm), 1000.0, depth_trunc, False
    )
    cloud = open3d.geometry.PointCloud.create_from_rgbd_image(rgbd, intrinsic)
    return np.asarray(cloud.points), np.asarray(cloud.colors)


def numpy_pointpainting(points: np.ndarray, scores: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """The popular PointPainting re-implementation: project, round, keep in-bounds, gather.
    No z > 0 test (points behind the camera get painted) and no occlusion test."""
    homogeneous = np.concatenate([points, np.ones((len(points), 1), points.dtype)], axis=1)
    projected = homogeneous @ projection.T
    u = np.round(projected[:, 0] / projected[:, 2]).astype(np.int64)
    v = np.round(projected[:, 1] / projected[:, 2]).astype(np.int64)
    inside = (u >= 0) & (u < scores.shape[2]) & (v >= 0) & (v < scores.shape[1])
    painted = np.zeros((len(points), scores.shape[0]), scores.dtype)
    painted[inside] = scores[:, v[inside], u[inside]].T
    return painted


def numpy_zbuffer_painting(points: np.ndarray, scores: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """The same with z > 0 and a z-buffer through np.minimum.at (the usual numpy way)."""
    homogeneous = np.concatenate([points, np.ones((len(points), 1), points.dtype)], axis=1)
    projected = homogeneous @ projection.T
    depth = projected[:, 2]
    u = np.floor(projected[:, 0] / depth + 0.5).astype(np.int64)
    v = np.floor(projected[:, 1] / depth + 0.5).astype(np.int64)
    height, width = scores.shape[1:]
    inside = (depth > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    flat = v[inside] * width + u[inside]
    nearest = np.full(height * width, np.inf, np.float32)
    np.minimum.at(nearest, flat, depth[inside])
    visible = np.flatnonzero(inside)[depth[inside] <= nearest[flat] * 1.01 + 0.1]
    painted = np.zeros((len(points), scores.shape[0]), scores.dtype)
    painted[visible] = scores.reshape(scores.shape[0], -1)[:, v[visible] * width + u[visible]].T
    return painted


# ----- benchmarks ----------------------------------------------------------------------------
def bench_backproject(threads_list, min_run_time):
    camera, frames = room_frames(1)
    frame = frames[0]
    depth_mm = np.round(frame["depth"] * 1000.0).astype(np.uint16)
    color, label = np.ascontiguousarray(frame["color"]), frame["label"]
    intrinsic = camera.to_open3d()
    depth_trunc = 10.0

    def pcseg_transfer():
        result = backproject_depth(depth_mm, camera, 1000.0, depth_trunc)
        return result.points, result.take(color), result.take(label)

    depth_torch, color_torch, label_torch = (torch.from_numpy(a) for a in (depth_mm.astype(np.int32), color, label))

    def pcseg_transfer_torch():
        result = backproject_depth(depth_torch, camera, 1000.0, depth_trunc)
        return result.points, result.take(color_torch), result.take(label_torch)

    points, colors, _ = pcseg_transfer()
    reference_points, reference_colors = open3d_rgbd_points(depth_mm, color, intrinsic, depth_trunc)
    assert points.shape == reference_points.shape
    error = np.abs(points - reference_points).max()
    assert error < 1e-5 and np.array_equal(colors / 255.0, reference_colors)
    print(f"\n[backproject] 640x480, {len(points):,} valid points; max |pcseg - open3d| = {error:.2e} m")
    names = {"open3d": open3d_rgbd_points, "pcseg": pcseg_transfer, "pcseg_torch": pcseg_transfer_torch}
    scope = dict(names, depth_mm=depth_mm, color=color, intrinsic=intrinsic, depth_trunc=depth_trunc)
    for threads in threads_list:
        ms = _median_ms(
            {"open3d": "open3d(depth_mm, color, intrinsic, depth_trunc)", "numpy": "pcseg()", "torch": "pcseg_torch()"},
            scope,
            threads,
            min_run_time,
        )
        print(
            f"  torch threads={threads}: open3d create_from_rgbd_image (points+colours) {ms['open3d']:7.2f} ms | "
            f"pcseg numpy (points+colours+labels) {ms['numpy']:6.2f} ms ({ms['open3d'] / ms['numpy']:.2f}x) | "
            f"pcseg torch {ms['torch']:6.2f} ms ({ms['open3d'] / ms['torch']:.2f}x)"
        )


def bench_paint(threads_list, min_run_time):
    cases = []
    points = synthetic_lidar_scan()
    camera, T_cam_from_velo = kitti_like_camera()
    cases.append(("synthetic 64x1875 scan, 1242x375", points, camera, T_cam_from_velo))
    if (SHARED_DATA / "kitti" / "000000").is_dir():
        folder = SHARED_DATA / "kitti" / "000000"
        scan = np.fromfile(folder / "velodyne.bin", dtype=np.float32).reshape(-1, 4)[:, :3]
        kitti_camera, kitti_pose = KittiCalibration.from_file(folder / "calib.txt").camera(2, 1224, 370)
        cases.append(("real KITTI 000000, 1224x370", scan, kitti_camera, kitti_pose))
    num_classes = 20
    for title, points, camera, pose in cases:
        generator = torch.Generator().manual_seed(0)
        scores = torch.softmax(torch.randn(num_classes, camera.height, camera.width, generator=generator), dim=0)
        points_torch = torch.from_numpy(points)
        scores_numpy = scores.numpy()
        projection = camera.matrix @ pose[:3, :]
        painted = paint_points(points_torch, scores, camera, pose)
        print(
            f"\n[paint] {title}: {len(points):,} points, {num_classes} classes, z-buffer on: "
            f"{int(painted.in_image.sum()):,} in image, {int(painted.occluded.sum()):,} occluded"
        )
        naive = numpy_pointpainting(points, scores_numpy, projection)
        behind_painted = int(((naive.sum(axis=1) > 0) & ~painted.in_image.numpy()).sum())
        print(
            f"  PointPainting-style numpy paints {behind_painted:,} points that are not in the image "
            "(behind the camera)"
        )
        scope = {
            "paint_points": paint_points,
            "points": points_torch,
            "scores": scores,
            "camera": camera,
            "pose": pose,
            "numpy_pointpainting": numpy_pointpainting,
            "numpy_zbuffer_painting": numpy_zbuffer_painting,
            "points_numpy": points,
            "scores_numpy": scores_numpy,
            "projection": projection,
        }
        for threads in threads_list:
            ms = _median_ms(
                {
                    "ours": "paint_points(points, scores, camera, pose)",
                    "radius": "paint_points(points, scores, camera, pose, zbuffer_radius=2)",
                    "bilinear": "paint_points(points, scores, camera, pose, sampling='bilinear')",
                    "plain": "numpy_pointpainting(points_numpy, scores_numpy, projection)",
                    "zbuffer": "numpy_zbuffer_painting(points_numpy, scores_numpy, projection)",
                },
                scope,
                threads,
                min_run_time,
            )
            print(
                f"  torch threads={threads}: pcseg z-buffer {ms['ours']:6.2f} ms | radius 2 {ms['radius']:6.2f} ms | "
                f"bilinear {ms['bilinear']:6.2f} ms | numpy PointPainting (no z, no occlusion) {ms['plain']:6.2f} ms "
                f"({ms['plain'] / ms['ours']:.2f}x) | numpy z-buffer {ms['zbuffer']:6.2f} ms "
                f"({ms['zbuffer'] / ms['ours']:.2f}x)"
            )


def _time_sequence(fusion_map, inputs, kind):
    """Seconds per frame of integrating `inputs` (points, probabilities[, labels]) in order."""
    times = []
    for frame in inputs:
        start = time.perf_counter()
        if kind == "labels":
            fusion_map.integrate(frame[0], labels=frame[2])
        else:
            fusion_map.integrate(frame[0], probabilities=frame[1])
        times.append(time.perf_counter() - start)
    return np.array(times)


def _report_sequence(threads, mode, kind, times, fusion_map):
    print(
        f"  torch threads={threads}: {mode:5s} from {kind:13s}: median {np.median(times) * 1e3:6.1f} ms/frame "
        f"= {1 / np.median(times):5.1f} frames/s (whole sequence {len(times) / times.sum():5.1f} frames/s, "
        f"slowest {times.max() * 1e3:6.1f} ms), {fusion_map.num_voxels:,} voxels, load {os.getloadavg()[0]:.1f}"
    )


def bench_fusion(threads_list, num_frames=8, points_per_frame=300_000, num_classes=20):
    camera, frames = room_frames(num_frames)
    rng = np.random.default_rng(0)
    inputs = []
    for frame in frames:
        points, _, valid = backproject_depth(frame["depth"], camera, 1.0, 20.0, frame["pose"])
        labels = np.clip(frame["label"][valid], 0, None)
        keep = rng.choice(len(points), points_per_frame, replace=False) if len(points) > points_per_frame else None
        points, labels = (points, labels) if keep is None else (points[keep], labels[keep])
        # Soft 2D-network-like scores: a noisy peak on the true class.
        probabilities = rng.random((len(points), num_classes), dtype=np.float32)
        probabilities[np.arange(len(points)), labels] += 4.0
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        inputs.append((torch.from_numpy(points), torch.from_numpy(probabilities), torch.from_numpy(labels)))
    print(
        f"\n[fusion] VoxelLabelMap, voxel 5 cm, {num_classes} classes, {num_frames} frames x "
        f"{len(inputs[0][0]):,} points, "
        "each sequence integrated twice (first pass grows the map)"
    )
    for threads in threads_list:
        torch.set_num_threads(threads)
        for mode, kind in [
            ("bayes", "probabilities"),
            ("mean", "probabilities"),
            ("vote", "probabilities"),
            ("bayes", "labels"),
        ]:
            fusion_map = VoxelLabelMap(0.05, num_classes, mode)
            _report_sequence(threads, mode, kind, _time_sequence(fusion_map, inputs * 2, kind), fusion_map)


def bench_fusion_lidar(threads_list, num_frames=20, num_classes=20, voxel_sizes=(0.05, 0.1)):
    sequence = lidar_sequence(num_frames, num_classes)
    print(
        f"\n[fusion, LiDAR] VoxelLabelMap, {num_classes} classes, {num_frames} scans x {len(sequence[0][0]):,} points "
        "from a sensor moving 1 m and turning 3 degrees per scan (the map grows every frame)"
    )
    for voxel_size in voxel_sizes:
        print(f" voxel {voxel_size * 100:.0f} cm:")
        for threads in threads_list:
            torch.set_num_threads(threads)
            for mode in ("bayes", "mean", "vote"):
                fusion_map = VoxelLabelMap(voxel_size, num_classes, mode)
                _report_sequence(
                    threads, mode, "probabilities", _time_sequence(fusion_map, sequence, "probabilities"), fusion_map
                )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts to run (e.g. 1 2)")
    parser.add_argument("--only", choices=["backproject", "paint", "fusion", "fusion-lidar"], help="run one benchmark")
    parser.add_argument("--min-run-time", type=float, default=2.0, help="seconds per timed statement")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, default torch threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, load average before: {os.getloadavg()}"
    )
    if args.only in (None, "backproject"):
        bench_backproject(args.threads, args.min_run_time)
    if args.only in (None, "paint"):
        bench_paint(args.threads, args.min_run_time)
    if args.only in (None, "fusion"):
        bench_fusion(args.threads)
    if args.only in (None, "fusion-lidar"):
        bench_fusion_lidar(args.threads)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
