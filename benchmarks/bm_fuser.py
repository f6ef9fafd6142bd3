"""Benchmarks of pcseg.Fuser (speed of the wrapper, quality of the bridge demo).

    .venv/bin/python benchmarks/bm_fuser.py                  # everything, 1 torch thread
    .venv/bin/python benchmarks/bm_fuser.py --only speed     # per-frame / per-query timings
    .venv/bin/python benchmarks/bm_fuser.py --only demo --seeds 0 1 2 3 4

1. speed: `Fuser.add_rgbd` on 640x480 rendered room frames (13-class score maps and label
   maps) against the bridge doing the same work without the wrapper (`backproject_depth`,
   `take` of colours and segmentation, `VoxelLabelMap.integrate`; the Fuser must add no
   measurable cost); `Fuser.add_lidar` on the real KITTI 000000 scan (115,384 points) with a
   20-class score map of image_2, when ../shared/data is present; `Fuser.labels` on
   1,000,000 query points.
2. demo: `run_bridge_demo` per seed (2D accuracy of the noisy frames, a map of each frame
   alone, the fused map), and for seed 0 the fusion modes x voxel sizes.

The machine may be shared: medians are reported with the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from bm_bridge import SHARED_DATA, room_frames  # the bridge benchmark's input builder (same folder)

from pcseg.bridge import KittiCalibration, VoxelLabelMap, backproject_depth  # noqa: E402
from pcseg.demo.bridge import run_bridge_demo  # noqa: E402
from pcseg.fuser import Fuser  # noqa: E402


def _median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def integrate_frame(fusion_map: VoxelLabelMap, frame: dict, kind: str, camera) -> int:
    """One RGB-D frame into the map without a Fuser: the work `Fuser.add_rgbd` wraps."""
    frame_points = backproject_depth(frame["depth"], camera, 1.0, 20.0, pose=frame["pose"])
    colors = frame_points.take(torch.from_numpy(frame["color"]))
    segmentation = torch.from_numpy(frame[kind])
    if kind == "labels":
        return fusion_map.integrate(frame_points.points, labels=frame_points.take(segmentation), colors=colors)
    probabilities = frame_points.take(segmentation, channels_first=True)
    return fusion_map.integrate(frame_points.points, probabilities=probabilities, colors=colors)


def bench_speed(num_frames: int = 6, repeats: int = 3) -> None:
    torch.set_num_threads(1)
    camera, frames = room_frames(num_frames)
    rng = np.random.default_rng(0)
    for frame in frames:
        labels = np.clip(frame["label"], 0, None)
        scores = rng.random((13,) + labels.shape, dtype=np.float32)
        np.put_along_axis(scores, labels[None], 4.0, axis=0)
        frame["scores"] = scores / scores.sum(axis=0, keepdims=True)
        frame["labels"] = labels
    print(
        f"\n[speed] 1 torch thread, {num_frames} rendered 640x480 frames, voxel 5 cm, bayes, median over "
        f"{repeats} passes of the sequence (ms per frame)"
    )
    for kind in ("scores", "labels"):

        def fuser_pass(kind=kind):
            fuser = Fuser(13, 0.05, "bayes")
            for frame in frames:
                fuser.add_rgbd(frame["color"], frame["depth"], frame[kind], camera, frame["pose"], depth_trunc=20.0)

        def map_pass(kind=kind):
            fusion_map = VoxelLabelMap(0.05, 13, "bayes")
            for frame in frames:
                integrate_frame(fusion_map, frame, kind, camera)

        fuser_ms = _median_ms(fuser_pass, repeats) / num_frames
        map_ms = _median_ms(map_pass, repeats) / num_frames
        print(
            f"  {kind:6s}: Fuser.add_rgbd {fuser_ms:6.1f} ms/frame, "
            f"backproject + VoxelLabelMap.integrate {map_ms:6.1f} ms/frame "
            f"(ratio {fuser_ms / map_ms:.2f})"
        )

    fuser = Fuser(13, 0.05, "bayes")
    for frame in frames:
        fuser.add_rgbd(None, frame["depth"], frame["scores"], camera, frame["pose"], depth_trunc=20.0)
    queries = rng.uniform([0, 0, 0], [6, 6, 3], (1_000_000, 3)).astype(np.float32)
    query_ms = _median_ms(lambda: fuser.labels(queries), repeats)
    print(
        f"  Fuser.labels on 1,000,000 points ({fuser.num_voxels:,} voxels): {query_ms:.1f} ms "
        f"= {1e3 / query_ms:.1f} M points/s"
    )

    kitti = SHARED_DATA / "kitti" / "000000"
    if not kitti.is_dir():
        print("  (KITTI sample not found: add_lidar skipped)")
        return
    from PIL import Image

    from pcseg.data.kitti import read_velodyne_bin

    scan = read_velodyne_bin(kitti / "velodyne.bin")
    calibration = KittiCalibration.from_file(kitti / "calib.txt")
    height, width = np.array(Image.open(kitti / "image_2.png")).shape[:2]
    scores = rng.random((20, height, width), dtype=np.float32)
    lidar = Fuser(20, 0.1, "bayes")
    lidar_ms = _median_ms(lambda: lidar.add_lidar(scan, scores, calibration), 10)
    print(
        f"  Fuser.add_lidar KITTI 000000 ({len(scan):,} points, {width}x{height} 20-class scores, z-buffer r=1): "
        f"{lidar_ms:.1f} ms/scan"
    )


def bench_demo(seeds) -> None:
    torch.set_num_threads(1)
    print(
        "\n[demo] run_bridge_demo defaults (12 views 160x120, voxel 5 cm, bayes); accuracy / mIoU over every "
        "observed pixel of the 12 views"
    )
    print(
        "  seed | 2D frames mean acc (best) | 2D mIoU | one-frame map acc / mIoU | fused acc / mIoU | "
        "room points coverage, acc, mIoU | painted room points coverage, acc, mIoU | "
        "view 0 true labels painted: z-buffer acc (points), no occlusion test acc (points) | "
        "held-out view coverage, acc | seconds"
    )
    with tempfile.TemporaryDirectory() as out_dir:
        for seed in seeds:
            m = run_bridge_demo(out_dir, seed=seed, write_frames=False)
            room, heldout, painted, check = (
                m["fused_room_points"],
                m["heldout_view"],
                m["painted_room_points"],
                m["occlusion_check"],
            )
            print(
                f"  {seed} | {m['mean_frame_2d_accuracy']:.3f} ({m['best_frame_2d_accuracy']:.3f}) | "
                f"{m['single_frame_2d']['miou']:.3f} | {m['single_view_map_3d']['accuracy']:.3f} / "
                f"{m['single_view_map_3d']['miou']:.3f} | "
                f"{m['fused_3d']['accuracy']:.3f} / {m['fused_3d']['miou']:.3f} | "
                f"{room['coverage']:.3f}, {room['accuracy']:.3f}, {room['miou']:.3f} | "
                f"{painted['coverage']:.3f}, {painted['accuracy']:.3f}, {painted['miou']:.3f} | "
                f"{check['zbuffer']['accuracy']:.3f} ({check['zbuffer']['visible_points']:,}), "
                f"{check['none']['accuracy']:.3f} ({check['none']['visible_points']:,}) | "
                f"{heldout['coverage']:.3f}, {heldout['accuracy']:.3f} | {m['seconds']:.2f}",
                flush=True,
            )
        print("\n  seed 0, mode x voxel size: fused acc / mIoU (one-frame map acc)")
        for mode in ("bayes", "mean", "vote"):
            cells = []
            for voxel_size in (0.03, 0.05, 0.08):
                m = run_bridge_demo(out_dir, seed=0, mode=mode, voxel_size=voxel_size, write_frames=False)
                fused = m["fused_3d"]
                cells.append(
                    f"{voxel_size * 100:.0f} cm: {fused['accuracy']:.3f} / {fused['miou']:.3f} "
                    f"({m['single_view_map_3d']['accuracy']:.3f})"
                )
            print(f"  {mode:5s} | " + " | ".join(cells), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["speed", "demo"], help="run one part")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="demo seeds")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average before: {os.getloadavg()}")
    if args.only in (None, "speed"):
        bench_speed()
    if args.only in (None, "demo"):
        bench_demo(args.seeds)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
