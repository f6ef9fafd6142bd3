"""Time to generate one simulated HDL-64E scan of a procedural street, with the breakdown.

Stages: `build_street` (the primitives), the candidate rays per primitive (azimuth and
elevation culling, inside `simulate_scan`), the whole `simulate_scan` (culling, ray casting,
the sensor model), and writing the scan in the SemanticKITTI layout. Medians over
`--repeats` runs per seed; the points per scan and the candidate (ray, primitive) pairs are
printed beside, since the cost follows them.

    python benchmarks/bm_lidar_sim.py [--seeds 0 1 2 3] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from pcseg.data.lidar_sim import HDL64E, _ray_pairs, simulate_scan, write_semantickitti_sequence
from pcseg.data.outdoor import build_street


def _median_s(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_seed(seed: int, repeats: int) -> dict:
    """Median seconds of each stage for street `seed`, with the scan's points and pairs."""
    street_s, scene = _median_s(lambda: build_street(seed), repeats)
    elevations = np.radians(HDL64E.elevations_deg)
    margin = np.full(len(scene), 2.0)
    cull_s, (prim, _) = _median_s(
        lambda: _ray_pairs(scene, HDL64E, scene.center, scene.sensor_xy, HDL64E.height, margin, elevations), repeats
    )
    scan_s, scan = _median_s(lambda: simulate_scan(scene, seed=seed), repeats)
    with tempfile.TemporaryDirectory() as root:
        write_s, _ = _median_s(lambda: write_semantickitti_sequence(root, 0, [scan]), repeats)
    return {
        "points": len(scan["coord"]),
        "pairs": len(prim),
        "street": street_s,
        "culling": cull_s,
        "scan": scan_s,
        "write": write_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"## simulated HDL-64E scans  (load={os.getloadavg()[0]:.1f}, "
        f"{HDL64E.num_lasers} lasers x {HDL64E.azimuth_steps} azimuth steps)"
    )
    print(f"{'seed':>4} {'points':>8} {'pairs':>9} {'street ms':>10} {'culling ms':>11} {'scan ms':>8} {'write ms':>9}")
    scan_times = []
    for seed in args.seeds:
        row = bench_seed(seed, args.repeats)
        scan_times.append(row["street"] + row["scan"])
        print(
            f"{seed:>4} {row['points']:>8} {row['pairs']:>9} {row['street'] * 1e3:>10.1f} "
            f"{row['culling'] * 1e3:>11.1f} {row['scan'] * 1e3:>8.1f} {row['write'] * 1e3:>9.1f}"
        )
    print(f"median street + scan: {statistics.median(scan_times):.2f} s (load after={os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
