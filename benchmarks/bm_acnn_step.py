"""The demo's training step, A-CNN against PointNet: time per step and where A-CNN's time goes.

    .venv/bin/python benchmarks/bm_acnn_step.py [--batch 8] [--points 1024] [--min-run-time 20] [--amp auto|none]
    .venv/bin/python benchmarks/bm_acnn_step.py --side-by-side [--widths 0.25 1.0]

One step is what ``pcseg demo`` runs: forward on a batch of 1 m blocks with the demo's inputs
(xyz, rgb and the 7 local-geometry channels, whose normals A-CNN also takes as its normals),
cross-entropy, backward and the demo's optimiser step (``pcseg.train.build_optimizer``). Models at the
demo's settings (``pcseg.demo.rooms``):
PointNet (S3DIS network) and A-CNN (block preset, the authors' decoder), at their demo widths.
Then one profiled A-CNN step: the share of each native op (``pcseg::*``) and of the PyTorch
layers. Prints the load average with each figure: the machine may be shared.

``--side-by-side``: the A-CNN step alone (block preset, room blocks with colour as features)
with its levels' rings run side by side up to each width limit in turn (``AnnularLevel.
side_by_side``; pcseg's limit is ``SIDE_BY_SIDE_MAX_WIDTH``), interleaved, at each width
multiplier: where one block-diagonal product per layer pays for itself.
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from _common import interleaved_ms
from torch.profiler import ProfilerActivity, profile

from pcseg.config import config_from_dict
from pcseg.demo.rooms import DEMO_MODELS, DEMO_SETTINGS
from pcseg.inputs import geometric_features, input_normals
from pcseg.predict import autocast_dtype
from pcseg.testing import room_blocks
from pcseg.train import build_optimizer


def demo_model(name: str, num_points: int):
    """The demo's model ``name`` (a key of ``DEMO_MODELS``) and its data config."""
    from pcseg.checkpoint import build_model_from_config

    settings = {
        **DEMO_SETTINGS,
        "model": DEMO_MODELS[name],
        "data": {**DEMO_SETTINGS["data"], "num_points": num_points},
    }
    cfg = config_from_dict(settings)
    return build_model_from_config(cfg).train(), cfg


def demo_batch(batch: int, num_points: int):
    """Blocks of one procedural room with the demo's 10 feature channels (rgb, geometry)."""
    points, features, labels, _ = room_blocks(batch, num_points, room_points=max(40_000, 40 * num_points))
    rgb = features[..., :3]
    return points, torch.cat([rgb, geometric_features(points, 16)], -1).contiguous(), labels


def make_step(model, cfg, points, features, labels, amp_dtype):
    optimizer = build_optimizer(cfg, model)
    normals = input_normals(features, cfg.data)

    def step():
        with torch.autocast("cpu", dtype=amp_dtype) if amp_dtype is not None else nullcontext():
            logits = model(points, features, normals=normals)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def op_shares(step) -> list[tuple[str, float]]:
    """Self CPU time shares of one step: each ``pcseg::`` op, then everything else together."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    shares = {}
    for e in events:
        key = e.key if e.key.startswith("pcseg::") else "PyTorch layers and autograd"
        shares[key] = shares.get(key, 0.0) + e.self_cpu_time_total / total
    return sorted(shares.items(), key=lambda kv: -kv[1])


def side_by_side_table(widths, batch: int, num_points: int, min_run_time: float) -> None:
    from pcseg.models.acnn import SIDE_BY_SIDE_MAX_WIDTH

    points, features, labels, _ = room_blocks(batch, num_points)
    print(f"A-CNN step, levels side by side when their widest layer <= limit (pcseg: {SIDE_BY_SIDE_MAX_WIDTH})")
    for width in widths:
        widest, ms = side_by_side_row(width, points, features, labels, min_run_time)
        cells = "  ".join(f"{name} {value:6.1f}" for name, value in ms.items())
        print(f"x{width:<5} levels' widest layers {widest}: ms/step {cells}  ({load()})", flush=True)


def side_by_side_row(width, points, features, labels, min_run_time):
    """One width multiplier: the levels' widest layers and {limit: median ms/step}."""
    from pcseg.models import ACNNSeg, acnn_block_preset

    model = ACNNSeg(13, in_channels=features.shape[-1], width_multiplier=width, **acnn_block_preset(points.shape[1]))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters())
    widest = [max(c.out_channels for s in level.rings for c in s.convs) for level in model.encoder.levels]

    def step(limit):
        for level, w in zip(model.encoder.levels, widest):
            level.side_by_side = limit is None or w <= limit
        loss = F.cross_entropy(model(points, features), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    limits = [0, 16, 32, 64, None]
    steps = {("all" if limit is None else f"<= {limit}"): (lambda limit=limit: step(limit)) for limit in limits}
    return widest, interleaved_ms(steps, min_run_time)[0]


def load() -> str:
    return "load avg " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--min-run-time", type=float, default=20.0, help="seconds of interleaved rounds")
    parser.add_argument("--amp", default="auto", help="train.amp: auto, bf16 or none")
    parser.add_argument("--side-by-side", action="store_true", help="instead: A-CNN's step by side-by-side limit")
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 1.0], help="with --side-by-side")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.side_by_side:
        side_by_side_table(args.widths, args.batch, args.points, args.min_run_time)
        return
    amp_dtype = autocast_dtype(args.amp, torch.device("cpu"))
    points, features, labels = demo_batch(args.batch, args.points)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, B={args.batch} x N={args.points}, "
        f"demo inputs, forward + backward + optimiser step, autocast {amp_dtype or 'off'}",
        flush=True,
    )
    steps = {}
    for name in DEMO_MODELS:
        model, cfg = demo_model(name, args.points)
        steps[name] = make_step(model, cfg, points, features, labels, amp_dtype)
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:<10} x{cfg.model.width_multiplier:<5} {params:>10,} params", flush=True)
    # Interleaved rounds: the ratio of each round's two steps, not of two medians taken one
    # after the other, which moves with the machine's drift.
    ms, ratios = interleaved_ms(steps, args.min_run_time)
    for name in steps:
        print(f"{name:<10} {ms[name]:8.1f} ms/step (median)  ({load()})", flush=True)
    print(f"acnn / pointnet step: {ratios['acnn']:.2f}x (median of interleaved rounds; target <= 1.5x)", flush=True)
    print("A-CNN step, self CPU time shares (torch.profiler):")
    for key, share in op_shares(steps["acnn"]):
        print(f"  {key:<40}{share:8.1%}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - start:.0f} s")
