"""Scores and reports: whole-room evaluation of a model, metrics, tables and plots.

    model, cfg, _ = model_from_checkpoint("runs/x/best.pt")
    result = evaluate_rooms(model, cfg, load_rooms(cfg.data, "val"))
    print(format_scores(result["scores"], class_names_for(cfg)))

The rooms are predicted whole by ``pcseg.predict.predict_tile`` (sliding blocks); this module
only scores the labels and reports them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pcseg.config import Config
from pcseg.data import S3DIS_CLASS_NAMES
from pcseg.metrics import ConfusionMatrix, SegmentationScores
from pcseg.predict import autocast_dtype, predict_tile
from pcseg.utils.atomic import atomic_path, atomic_write, check_output_folder
from pcseg.utils.progress import progress as progress_bar

__all__ = [
    "scores_without_ignored",
    "evaluate_rooms",
    "format_scores",
    "scores_to_dict",
    "plot_confusion_matrix",
    "evaluate_checkpoint",
    "class_names_for",
]


def scores_without_ignored(matrix: ConfusionMatrix, ignore_index: int) -> SegmentationScores:
    """The scores of a confusion matrix with the ignored label's class left out of the means.

    Args:
        matrix: the accumulated confusion matrix.
        ignore_index: the ignored label (e.g. SemanticKITTI's 0 = unlabelled); outside
            ``0..num_classes - 1`` it names no class and nothing is left out.

    Returns:
        scores: ``matrix.compute()`` with the ignored class's IoU NaN and mIoU the mean of the others.
    """
    scores = matrix.compute()
    if 0 <= ignore_index < matrix.num_classes:
        iou = scores.iou.clone()
        iou[ignore_index] = float("nan")
        scores = dataclasses.replace(
            scores, iou=iou, miou=float(iou[~iou.isnan()].mean()) if (~iou.isnan()).any() else float("nan")
        )
    return scores


def evaluate_rooms(
    model: torch.nn.Module,
    cfg: Config,
    rooms: Sequence[dict],
    device="cpu",
    progress: bool = True,
    amp: str | None = None,
) -> dict:
    """Whole-room sliding-block evaluation.

    Args:
        model: a pcseg segmentation model (put in eval mode here).
        cfg: its config.
        rooms: dicts with ``coord`` (N, 3), ``color`` (N, 3) and ``label`` (N,) int64.
        device: where the model runs.
        progress: report the rooms done (``pcseg.utils.progress``).
        amp: ``train.amp``'s values; None: the config's.

    Returns:
        result: ``{"scores": SegmentationScores, "matrix": (C, C) int64 numpy, "predictions": list
        of (N_i,) int64 label arrays, "points_per_s": float}``.
    """
    model.eval()
    amp_dtype = autocast_dtype(amp or cfg.train.amp, torch.device(device))
    matrix = ConfusionMatrix(cfg.data.num_classes, ignore_index=cfg.data.ignore_index)
    predictions, points, start = [], 0, time.perf_counter()
    for room in progress_bar(rooms, desc="evaluating rooms", unit="room", enabled=progress):
        _, labels = predict_tile(model, cfg.data, room["coord"], room["color"], device, amp_dtype)
        matrix.update(torch.from_numpy(labels), torch.as_tensor(np.asarray(room["label"]), dtype=torch.int64))
        predictions.append(labels)
        points += len(labels)
    return {
        "scores": scores_without_ignored(matrix, cfg.data.ignore_index),
        "matrix": matrix.matrix.numpy().copy(),
        "predictions": predictions,
        "points_per_s": points / max(time.perf_counter() - start, 1e-9),
    }


def class_names_for(cfg: Config) -> list[str]:
    """The class names of a config's data set.

    Args:
        cfg: the config (``data.dataset``, ``data.num_classes``, ``data.label_config``).

    Returns:
        names: ``num_classes`` names (S3DIS's, SemanticKITTI's, a folder data set's ``classes.yaml``,
            else ``class_0``, ``class_1``, ...).
    """
    if cfg.data.dataset in ("synthetic", "s3dis") and cfg.data.num_classes == len(S3DIS_CLASS_NAMES):
        return list(S3DIS_CLASS_NAMES)
    if cfg.data.dataset == "semantickitti" and cfg.data.label_config:
        from pcseg.data.kitti import SemanticKittiConfig

        names = getattr(SemanticKittiConfig.from_yaml(cfg.data.label_config), "class_names", None)
        if names is not None and len(names) == cfg.data.num_classes:
            return list(names)
    if cfg.data.dataset == "folder":
        from pcseg.data.folder import read_classes

        classes = read_classes(cfg.data, required=False)
        if classes is not None and len(classes.names) == cfg.data.num_classes:
            return list(classes.names)
    return [f"class_{i}" for i in range(cfg.data.num_classes)]


def scores_to_dict(scores: SegmentationScores, class_names: Sequence[str]) -> dict:
    """Scores as JSON-ready values.

    Args:
        scores: the scores.
        class_names: one name per class.

    Returns:
        metrics: overall_accuracy, miou, mean_accuracy and per-class iou and accuracy dicts
        (NaN as None).
    """

    def num(x):
        x = float(x)
        return None if np.isnan(x) else x

    return {
        "overall_accuracy": num(scores.overall_accuracy),
        "miou": num(scores.miou),
        "mean_accuracy": num(scores.mean_accuracy),
        "iou": {name: num(v) for name, v in zip(class_names, scores.iou.tolist())},
        "accuracy": {name: num(v) for name, v in zip(class_names, scores.accuracy.tolist())},
    }


def format_scores(scores: SegmentationScores, class_names: Sequence[str]) -> str:
    """OA, mIoU, mean accuracy and a per-class IoU table as text.

    Args:
        scores: the scores.
        class_names: one name per class.

    Returns:
        text: one summary line, then one line per class.
    """
    lines = [
        f"OA {scores.overall_accuracy:.3f}  mIoU {scores.miou:.3f}  mAcc {scores.mean_accuracy:.3f}",
        f"{'class':<12} {'IoU':>6} {'acc':>6}",
    ]
    for name, iou, acc in zip(class_names, scores.iou.tolist(), scores.accuracy.tolist()):
        lines.append(f"{name:<12} {iou:6.3f} {acc:6.3f}")
    return "\n".join(lines)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str | Path) -> None:
    """Writes the row-normalised confusion matrix as a PNG.

    Args:
        matrix: (C, C) int64 counts, rows the truth.
        class_names: one name per class.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix, dtype=np.float64)
    normalised = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            if normalised[i, j] >= 0.01:
                ax.text(
                    j,
                    i,
                    f"{normalised[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=5,
                    color="white" if normalised[i, j] > 0.5 else "black",
                )
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def evaluate_checkpoint(
    cfg: Config, checkpoint: str | Path, out_dir: str | Path | None = None, device: str = "cpu", progress: bool = True
) -> dict:
    """``pcseg eval``: a checkpoint on the config's validation rooms.

    Args:
        cfg: the config whose validation rooms are scored (the checkpoint must match it).
        checkpoint: a checkpoint written by ``pcseg train``.
        out_dir: where to write metrics.json and confusion_matrix.png; None writes nothing.
        device: where the model runs.
        progress: report the rooms loaded and done.

    Returns:
        metrics: ``scores_to_dict`` plus points_per_s and rooms (also printed as a table).

    Raises:
        CheckpointError: when the checkpoint cannot be loaded.
        CheckpointMismatchError: when the checkpoint does not match ``cfg``.
        ValueError: when the device is absent or the config has no validation rooms.
        FileNotFoundError: when the data folder is missing.
        NotADirectoryError: when a file stands where ``out_dir`` should be.

    Everything but the rooms' contents is checked before any room is generated or read.
    """
    from pcseg.checkpoint import model_from_checkpoint
    from pcseg.data.loading import check_data, load_rooms
    from pcseg.utils.devices import check_device

    check_device(str(device), "--device")
    if out_dir is not None:
        check_output_folder(out_dir, "--out")
    if cfg.data.dataset == "synthetic" and cfg.data.val_rooms == 0:
        raise ValueError("the config has no validation rooms (data.val_rooms = 0)")
    model, _, _ = model_from_checkpoint(checkpoint, device, cfg=cfg)
    check_data(cfg.data, ("val",))
    rooms = load_rooms(cfg.data, "val", progress)
    if not rooms:
        raise ValueError("the config has no validation rooms (data.val_rooms = 0)")
    result = evaluate_rooms(model, cfg, rooms, device, progress)
    names = class_names_for(cfg)
    print(format_scores(result["scores"], names))
    metrics = scores_to_dict(result["scores"], names)
    metrics["points_per_s"] = result["points_per_s"]
    metrics["rooms"] = len(rooms)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(out_dir / "metrics.json") as handle:
            handle.write(json.dumps(metrics, indent=2).encode())
        plot_confusion_matrix(result["matrix"], names, out_dir / "confusion_matrix.png")
    return metrics
