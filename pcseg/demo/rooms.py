"""``pcseg demo``: the whole job on procedural rooms, no download, a few minutes on a laptop CPU.

1. generate training and held-out rooms (``pcseg.data.generate_room``), cut training blocks
   once and keep them in memory with their per-point inputs;
2. train the demo model for a time budget (``train.time_budget_s``);
3. evaluate on the held-out rooms with whole-room sliding-block inference: OA, mIoU, per-class IoU;
4. write into the output folder: ``prediction.ply`` (one held-out room coloured by predicted
   class), ``prediction_vs_truth.png``, ``confusion_matrix.png``, ``metrics.json`` and the
   training run (``run/``: config, checkpoints, logs, curve);
5. the bridge demo (``pcseg.demo.bridge.run_bridge_demo``): render RGB-D views of a generated
   room with noisy 2D label maps, paint and fuse them (``bridge_*`` files).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pcseg.config import Config, apply_overrides, config_from_dict, config_to_dict
from pcseg.utils.atomic import atomic_path, atomic_write_file

__all__ = ["DEMO_MODELS", "demo_config", "run_demo", "plot_prediction_vs_truth"]

# The demo model: the S3DIS PointNet at a quarter of the published width on 1,024-point blocks
# with local geometric inputs (normal, surface variation, offset to the neighbourhood centroid).
DEMO_SETTINGS = {
    "data": {
        "dataset": "synthetic",
        "train_rooms": 16,
        "val_rooms": 4,
        "points_per_room": 100_000,
        "num_points": 1024,
        "blocks_per_room": 64,
        "val_blocks_per_room": 8,
        "eval_stride": 0.5,
        "geometric_features": True,
        "use_color": True,
        "room_coords": False,
    },
    "model": {"name": "pointnet_sem_seg", "width_multiplier": 0.25},
    "train": {
        "epochs": 40,
        "time_budget_s": 110.0,
        "batch_size": 8,
        "lr": 0.01,
        "warmup_epochs": 0.5,
        "class_weights": "inverse_log",
        "amp": "auto",
        "val_every": 2,
    },
}


# The models ``pcseg demo --model`` trains: PointNet as above, or A-CNN with pcseg's block preset
# and the authors' decoder (the normals are among the geometric inputs already, so they enter
# the model once).
DEMO_MODELS = {
    "pointnet": DEMO_SETTINGS["model"],
    "acnn": {"name": "acnn", "width_multiplier": 0.25, "block_preset": True, "options": {"normals_as_features": False}},
}


def demo_config(out_dir: str | Path, overrides: Sequence[str] = (), model: str = "pointnet") -> Config:
    """The demo's config.

    Args:
        out_dir: the demo's output folder; the training run goes to ``out_dir/run``.
        overrides: ``--set`` overrides (``section.key=value``).
        model: a key of ``DEMO_MODELS``.

    Returns:
        config: ``DEMO_SETTINGS`` with ``DEMO_MODELS[model]`` and the overrides applied.

    Raises:
        ValueError: for an unknown model.
    """
    if model not in DEMO_MODELS:
        raise ValueError(f"model must be one of {sorted(DEMO_MODELS)}, got {model!r}")
    settings = {**DEMO_SETTINGS, "model": DEMO_MODELS[model]}
    values = apply_overrides(settings, [f"train.out_dir={Path(out_dir) / 'run'}", *overrides])
    return config_from_dict(values)


def plot_prediction_vs_truth(
    points: np.ndarray,
    prediction: np.ndarray,
    truth: np.ndarray,
    colors: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    max_points: int = 60_000,
) -> None:
    """Writes two oblique views of a room (ceiling cut away), predicted classes beside the truth.

    Args:
        points: (N, 3) float coordinates in metres.
        prediction: (N,) int64 predicted labels.
        truth: (N,) int64 true labels.
        colors: (C, 3) uint8 palette, one colour per class.
        class_names: one name per class (the legend).
        path: the PNG to write.
        max_points: the most points drawn (a random subset).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rng = np.random.default_rng(0)
    z = points[:, 2]
    keep = np.flatnonzero(z < z.min() + 0.8 * (z.max() - z.min()))  # cut the ceiling away to see inside
    keep = keep[rng.permutation(len(keep))[:max_points]]
    c = points[keep]
    fig = plt.figure(figsize=(12, 5.5))
    for i, (labels, title) in enumerate([(prediction, "prediction"), (truth, "ground truth")]):
        ax = fig.add_subplot(1, 2, i + 1, projection="3d")
        ax.scatter(c[:, 0], c[:, 1], c[:, 2], c=colors[labels[keep]] / 255.0, s=1.2, linewidths=0)
        ax.view_init(elev=35, azim=-60)
        ax.set_title(title)
        ax.set_box_aspect(np.ptp(c, axis=0))
        ax.set_axis_off()
    fig.legend(
        handles=[Patch(color=colors[k] / 255.0, label=name) for k, name in enumerate(class_names)],
        loc="lower center",
        ncol=7,
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def run_demo(
    out_dir: str | Path = "demo_out",
    overrides: Sequence[str] = (),
    seed: int = 0,
    bridge: bool = True,
    progress: bool = True,
    model: str = "pointnet",
) -> dict:
    """Runs the demo (see the module docstring).

    Args:
        out_dir: the output folder.
        overrides: ``--set`` overrides of the demo's config.
        seed: the training seed (``train.seed``) and the bridge demo's.
        bridge: also run the 2D-3D bridge demo.
        progress: report room generation, block cutting, epochs and evaluation.
        model: the model trained, a key of ``DEMO_MODELS``.

    Returns:
        metrics: what metrics.json holds.
    """
    import torch

    from pcseg.checkpoint import model_from_checkpoint
    from pcseg.data import S3DIS_CLASS_COLORS, S3DIS_CLASS_NAMES
    from pcseg.data.loading import load_rooms
    from pcseg.evaluate import evaluate_rooms, format_scores, plot_confusion_matrix, scores_to_dict
    from pcseg.io import write_labelled_ply
    from pcseg.train import train

    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = demo_config(out_dir, [f"train.seed={seed}", *overrides], model)
    print(
        f"[demo] model {cfg.model.name} (width x{cfg.model.width_multiplier}), {cfg.data.num_points} points per "
        f"{cfg.data.block_size} m block, inputs xyz + rgb + local geometry; training budget "
        f"{cfg.train.time_budget_s:.0f} s",
        flush=True,
    )
    t = time.perf_counter()
    train_rooms, val_rooms = load_rooms(cfg.data, "train", progress), load_rooms(cfg.data, "val", progress)
    print(
        f"[demo] generated {len(train_rooms)} training and {len(val_rooms)} held-out rooms of "
        f"{cfg.data.points_per_room:,} points in {time.perf_counter() - t:.1f} s",
        flush=True,
    )
    summary = train(cfg, rooms=(train_rooms, val_rooms), progress=progress)
    if summary["interrupted"]:
        raise KeyboardInterrupt
    print(
        f"[demo] trained {summary['epochs']} epochs in {summary['train_s']:.1f} s "
        f"(block preparation {summary['prepare_s']:.1f} s, autocast {summary['amp'] or 'off (float32)'})",
        flush=True,
    )

    model, _, _ = model_from_checkpoint(summary["last"], "cpu")
    t = time.perf_counter()
    result = evaluate_rooms(model, cfg, val_rooms, progress=progress)
    eval_s = time.perf_counter() - t
    names = list(S3DIS_CLASS_NAMES)
    print(
        f"[demo] held-out rooms ({len(val_rooms)} x {cfg.data.points_per_room:,} points, whole-room sliding "
        f"blocks, stride {cfg.data.eval_stride} m) in {eval_s:.1f} s:",
        flush=True,
    )
    print(format_scores(result["scores"], names), flush=True)

    palette = np.asarray(S3DIS_CLASS_COLORS, dtype=np.uint8)
    room, prediction = val_rooms[0], result["predictions"][0]
    write_labelled_ply(out_dir / "prediction.ply", room["coord"], prediction, palette)
    plot_prediction_vs_truth(
        room["coord"], prediction, np.asarray(room["label"]), palette, names, out_dir / "prediction_vs_truth.png"
    )
    plot_confusion_matrix(result["matrix"], names, out_dir / "confusion_matrix.png")
    metrics = {
        "model": cfg.model.name,
        "width_multiplier": cfg.model.width_multiplier,
        "held_out": scores_to_dict(result["scores"], names),
        "held_out_rooms": len(val_rooms),
        "epochs": summary["epochs"],
        "train_s": summary["train_s"],
        "prepare_s": summary["prepare_s"],
        "eval_s": eval_s,
        "eval_points_per_s": result["points_per_s"],
        "autocast": summary["amp"],
        "torch_threads": torch.get_num_threads(),
        "config": config_to_dict(cfg),
    }
    if bridge:
        from pcseg.demo.bridge import run_bridge_demo

        t = time.perf_counter()
        metrics["bridge"] = run_bridge_demo(out_dir, seed=seed)
        print(
            f"[demo] bridge: fused noisy 2D labels of generated RGB-D views in {time.perf_counter() - t:.1f} s "
            f"(bridge_metrics.json, bridge_views.png, bridge_fused_map.ply)",
            flush=True,
        )
    metrics["total_s"] = time.perf_counter() - start
    atomic_write_file(out_dir / "metrics.json", json.dumps(metrics, indent=2, default=float))
    print(
        f"[demo] held-out mIoU {result['scores'].miou:.3f}, OA {result['scores'].overall_accuracy:.3f}; "
        f"total {metrics['total_s']:.1f} s; outputs in {out_dir}/",
        flush=True,
    )
    return metrics
