"""Timing helpers shared by the op benchmarks: medians with torch.utils.benchmark, peers
measured in the same run, ratios printed."""
from __future__ import annotations

import os
import sys

import torch
import torch.utils.benchmark as tbench

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def median_ms(fn, min_run_time: float = 1.0) -> float:
    """Median wall time of fn() in milliseconds (CUDA synchronised when present)."""
    def run():
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    run()  # warm-up
    # Timer runs at one torch thread unless told otherwise: time at the thread count in force.
    m = tbench.Timer(stmt="run()", globals={"run": run},
                     num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=min_run_time)
    return m.median * 1e3


def report(title: str, rows: list[tuple[str, float, str]], ours: str) -> None:
    """rows: (name, median ms, note). Prints each with its ratio to `ours`."""
    base = dict((name, ms) for name, ms, _ in rows)[ours]
    print(f"\n## {title}  (threads={torch.get_num_threads()}, load={os.getloadavg()[0]:.1f})")
    print(f"{'method':<44} {'median ms':>10} {'vs pcseg':>9}  note")
    for name, ms, note in rows:
        ratio = f"{ms / base:8.2f}x" if name != ours else "        -"
        print(f"{name:<44} {ms:10.2f} {ratio}  {note}")
