"""Inference throughput (points/s) of an exported model in onnxruntime against the same model in
torch, on the same blocks, measured in one run (interleaved rounds; load average printed).

    .venv/bin/python benchmarks/bm_export.py [--batch 8] [--points 1024] [--threads N]
        [--models pointnet_sem_seg,pointnet,acnn] [--min-run-time 3]

The models are the default config's (``pcseg.config``: width 0.5, rgb + geometric features) with
untrained weights, which time as trained ones do. Blocks are cut from a procedural room as
``pcseg predict`` cuts them (``pcseg.export.room_block_features``), and the graph's inputs are
made once, outside the timing (``pcseg.export.model_inputs``). PointNet: torch's forward against
onnxruntime's run of the whole graph. A-CNN: torch's forward with its neighbourhood search
against onnxruntime's learned part plus that search in pcseg's ops (what a user of the export
runs), and the learned part alone in both.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch
from _common import interleaved_ms

from pcseg.checkpoint import build_model_from_config
from pcseg.config import load_config
from pcseg.data import generate_room
from pcseg.export import ACNNLearnedPart, acnn_neighbourhoods, export_model, model_inputs, room_block_features
from pcseg.inputs import block_inputs, input_normals
from pcseg.models import ACNNSeg


def session(path: Path) -> ort.InferenceSession:
    """An onnxruntime CPU session with torch's intra-op thread count, so both use the same cores."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def bench_model(name: str, batch: int, num_points: int, folder: Path, min_run_time: float) -> None:
    overrides = [f"model.name={name}", f"data.num_points={num_points}", f"model.block_preset={name == 'acnn'}"]
    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    model = build_model_from_config(cfg).eval()
    room = generate_room(0, 60 * num_points)
    blocks = room_block_features(cfg.data, room["coord"], room["color"])[:batch]
    inputs = model_inputs(model, cfg.data, blocks)
    feeds = {key: value.numpy() for key, value in inputs.items()}
    path = folder / f"{name}.onnx"
    export_model(model, cfg, path, "onnx")
    sess = session(path)
    points, features = block_inputs(blocks, cfg.data)
    normals = input_normals(features, cfg.data)

    def torch_forward():
        with torch.no_grad():
            model(points, features, normals=normals)

    fns = {"torch": torch_forward, "onnxruntime": lambda: sess.run(None, feeds)}
    if isinstance(model, ACNNSeg):
        learned = ACNNLearnedPart(model).eval()
        args = tuple(inputs.values())

        def ort_with_search():
            with torch.no_grad():
                found = acnn_neighbourhoods(model, inputs["points"], inputs["normals"])
            sess.run(None, {**feeds, **{key: value.numpy() for key, value in found.items()}})

        def torch_learned():
            with torch.no_grad():
                learned(*args)

        fns = {
            "torch": torch_forward,
            "onnxruntime + pcseg search": ort_with_search,
            "torch learned part": torch_learned,
            "onnxruntime learned part": fns["onnxruntime"],
        }
    medians, ratios = interleaved_ms(fns, min_run_time=min_run_time)
    total = batch * num_points
    print(
        f"\n## {name}: batch {batch} x {num_points} points (threads={torch.get_num_threads()}, "
        f"load={os.getloadavg()[0]:.1f})"
    )
    print(f"{'method':<28} {'median ms':>10} {'points/s':>12} {'time vs torch':>14}")
    for key, ms in medians.items():
        print(f"{key:<28} {ms:10.2f} {total / ms * 1e3:12,.0f} {ratios[key]:13.2f}x")
    if isinstance(model, ACNNSeg):
        first = next(iter(medians))
        learned_ratio = medians["torch learned part"] / medians["onnxruntime learned part"]
        print(
            f"onnxruntime / torch points/s: whole {medians[first] / medians['onnxruntime + pcseg search']:.2f}x, "
            f"learned part {learned_ratio:.2f}x"
        )
    else:
        print(f"onnxruntime / torch points/s: {medians['torch'] / medians['onnxruntime']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--models", default="pointnet_sem_seg,pointnet,acnn")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads of both (0: torch's default)")
    parser.add_argument("--min-run-time", type=float, default=3.0, help="seconds of interleaved rounds per model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            bench_model(name, args.batch, args.points, Path(folder), args.min_run_time)


if __name__ == "__main__":
    main()
