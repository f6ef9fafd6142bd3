"""Forward + backward throughput (points/s) of every model on the CPU, and the share of CPU
time spent in pcseg's native ops (``pcseg::*`` in the torch profiler) vs PyTorch layers.

    .venv/bin/python benchmarks/bm_models.py [--batch 8] [--points 4096] [--repeats 3] [--threads N] [--models acnn,...]

Inputs come from the tests' builder (``tests/test_models_pointnet.py::room_blocks``): blocks
of one procedural room with RGB + normalised xyz features (6 channels) and 13 classes.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils import benchmark

from pcseg.models import acnn_block_preset, build_model
from pcseg.testing import room_blocks

NUM_CLASSES = 13


def make_model(name: str, num_points: int):
    if name == "acnn":
        return build_model(name, num_classes=NUM_CLASSES, in_channels=6, **acnn_block_preset(num_points))
    return build_model(name, num_classes=NUM_CLASSES, in_channels=6)


def step(model, points, features, labels, classification: bool):
    logits = model(points, features)
    target = labels[:, 0] if classification else labels
    loss = F.cross_entropy(logits, target)
    model.zero_grad(set_to_none=True)
    loss.backward()


def native_share(model, points, features, labels, classification):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(model, points, features, labels, classification)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    native = sum(e.self_cpu_time_total for e in events if "pcseg" in e.key)
    return native / total if total else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--points", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    parser.add_argument("--models", default="pointnet,pointnet_sem_seg,pointnet_cls,acnn,acnn_cls")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    points, features, labels, _ = room_blocks(args.batch, args.points, room_points=max(40_000, 100 * args.points))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, B={args.batch} x N={args.points}, "
        f"forward + backward, train mode, float32",
        flush=True,
    )
    print(f"{'model':<18}{'params':>12}{'s/step':>10}{'points/s':>12}{'pcseg ops':>11}")
    for name in args.models.split(","):
        model = make_model(name, args.points).train()
        classification = name.endswith("_cls")
        step(model, points, features, labels, classification)  # warm-up
        timer = benchmark.Timer(
            stmt="step(model, points, features, labels, classification)",
            globals={
                "step": step,
                "model": model,
                "points": points,
                "features": features,
                "labels": labels,
                "classification": classification,
            },
        )
        seconds = timer.timeit(args.repeats).median
        share = native_share(model, points, features, labels, classification)
        params = sum(p.numel() for p in model.parameters())
        print(
            f"{name:<18}{params:>12,}{seconds:>10.3f}{args.batch * args.points / seconds:>12,.0f}{share:>10.1%}",
            flush=True,
        )


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - start:.0f} s")
