"""Timing helpers shared by the op benchmarks: medians with torch.utils.benchmark, peers
measured in the same run, ratios printed."""

from __future__ import annotations

import os

import torch
import torch.utils.benchmark as tbench


def median_ms(fn, min_run_time: float = 1.0) -> float:
    """Median wall time of fn() in milliseconds (CUDA synchronised when present)."""

    def run():
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    run()  # warm-up
    # Timer runs at one torch thread unless told otherwise: time at the thread count in force.
    m = tbench.Timer(stmt="run()", globals={"run": run}, num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=min_run_time
    )
    return m.median * 1e3


def report(title: str, rows: list[tuple[str, float, str]], ours: str) -> None:
    """rows: (name, median ms, note). Prints each with its ratio to `ours`."""
    base = dict((name, ms) for name, ms, _ in rows)[ours]
    print(f"\n## {title}  (threads={torch.get_num_threads()}, load={os.getloadavg()[0]:.1f})")
    print(f"{'method':<44} {'median ms':>10} {'vs pcseg':>9}  note")
    for name, ms, note in rows:
        ratio = f"{ms / base:8.2f}x" if name != ours else "        -"
        print(f"{name:<44} {ms:10.2f} {ratio}  {note}")


def interleaved_ms(fns: dict, min_run_time: float = 3.0) -> tuple[dict, dict]:
    """Times the functions in turn, round after round, for at least min_run_time seconds.

    Returns ({name: median ms}, {name: median over rounds of its time / the first's}). On a
    shared machine whose speed drifts over seconds, the ratio of two medians taken one after
    the other moves with the drift; the per-round ratios of interleaved calls do not.
    """
    import statistics
    import time

    def run(fn):
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    for fn in fns.values():
        run(fn)  # warm-up
    times = {name: [] for name in fns}
    start = time.perf_counter()
    while time.perf_counter() - start < min_run_time or len(times[next(iter(fns))]) < 5:
        for name, fn in fns.items():
            t = time.perf_counter()
            run(fn)
            times[name].append(time.perf_counter() - t)
    first = times[next(iter(fns))]
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    ratios = {name: statistics.median(a / b for a, b in zip(t, first)) for name, t in times.items()}
    return medians, ratios
