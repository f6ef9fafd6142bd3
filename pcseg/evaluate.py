"""Whole-room evaluation by sliding blocks (``pcseg.data.predict_room``) and its reports.

    model, cfg, _ = model_from_checkpoint("runs/x/best.pt")
    result = evaluate_rooms(model, cfg, load_rooms(cfg.data, "val"))
    print(format_scores(result["scores"], class_names))
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from pcseg.config import Config, DataConfig
from pcseg.data import S3DIS_CLASS_NAMES, predict_room
from pcseg.metrics import ConfusionMatrix, SegmentationScores
from pcseg.train import scores_without_ignored, autocast_dtype, block_inputs, forward_model, load_rooms, model_from_checkpoint

__all__ = ["make_block_predictor", "cloud_frame", "predict_points", "evaluate_rooms", "format_scores", "scores_to_dict",
           "plot_confusion_matrix", "evaluate_checkpoint", "class_names_for"]


def make_block_predictor(model: torch.nn.Module, data: DataConfig, device="cpu",
                         amp_dtype: torch.dtype | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``predict_block`` for ``pcseg.data.predict_room``: block features ``(B, P, 9)`` float32
    -> logits ``(B, P, num_classes)`` float32 on the CPU. The model must be in eval mode."""
    device = torch.device(device)

    def predict_block(block_features: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            points, features = block_inputs(block_features.to(device), data)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits, _ = forward_model(model, points, features, data)
        return logits.float().transpose(1, 2).cpu()

    return predict_block


def cloud_frame(coord: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frame ``pcseg.data.predict_room`` takes its block features in: the lowest xyz
    ``(3,)`` and the extent ``(3,)`` (max - lowest), float64, of ``coord (N, 3)``."""
    low = coord.min(0).astype(np.float64)
    return low, coord.max(0) - low


def _reframed(predict_block: Callable[[torch.Tensor], torch.Tensor], own: tuple[np.ndarray, np.ndarray],
              frame: tuple[np.ndarray, np.ndarray]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``predict_block`` for block features made in the frame ``own`` (a tile's) but fed as in
    ``frame`` (the whole cloud's): feature 2 (z above the lowest z) and 6-8 (xyz scaled to the
    extent, zero axes as 1; ``pcseg.data.blocks``) are re-expressed; the others do not depend
    on the frame."""
    (own_low, own_extent), (low, extent) = own, frame
    own_extent, extent = np.where(own_extent > 0, own_extent, 1.0), np.where(extent > 0, extent, 1.0)
    dz = float(own_low[2] - low[2])
    scale = torch.from_numpy(own_extent / extent).float()
    shift = torch.from_numpy((own_low - low) / extent).float()

    def predict(features: torch.Tensor) -> torch.Tensor:
        features = features.clone()
        features[..., 2] += dz
        features[..., 6:9] = features[..., 6:9] * scale + shift
        return predict_block(features)

    return predict


def predict_points(model: torch.nn.Module, data: DataConfig, coord: np.ndarray, color: np.ndarray,
                   device="cpu", amp_dtype=None, batch_size: int = 16, seed: int = 0,
                   frame: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sliding-block logits ``(N, C)`` float32 and labels ``(N,)`` int64 of one room-sized cloud.

    frame: ``cloud_frame`` of the cloud ``coord`` is part of (a tile's whole scan), so the block
    features are those the whole cloud would give; None: the frame of ``coord`` itself."""
    # column-major coordinates: predict_room's per-block column scans run 10x faster
    room = {"coord": np.asfortranarray(coord, dtype=np.float32), "color": color}
    predict_block = make_block_predictor(model, data, device, amp_dtype)
    if frame is not None and len(coord):
        own = cloud_frame(room["coord"])
        if not all(np.array_equal(a, b) for a, b in zip(own, frame)):
            predict_block = _reframed(predict_block, own, frame)
    return predict_room(room, predict_block, data.num_classes, block_size=data.block_size,
                        stride=data.eval_stride, num_points=data.num_points, batch_size=batch_size, seed=seed)


def evaluate_rooms(model: torch.nn.Module, cfg: Config, rooms: Sequence[dict], device="cpu",
                   progress: bool = True, amp: str | None = None) -> dict:
    """Whole-room sliding-block evaluation of ``rooms`` (dicts with coord, color, label).

    Returns {"scores": SegmentationScores, "matrix": (C, C) int64 numpy, "predictions": list of
    (N_i,) int64 label arrays, "points_per_s": float}.
    """
    import time

    model.eval()
    amp_dtype = autocast_dtype(amp or cfg.train.amp, torch.device(device))
    matrix = ConfusionMatrix(cfg.data.num_classes, ignore_index=cfg.data.ignore_index)
    predictions, points, start = [], 0, time.perf_counter()
    for room in tqdm(rooms, desc="evaluating rooms", disable=not progress, leave=False):
        _, labels = predict_points(model, cfg.data, room["coord"], room["color"], device, amp_dtype)
        matrix.update(torch.from_numpy(labels), torch.as_tensor(np.asarray(room["label"]), dtype=torch.int64))
        predictions.append(labels)
        points += len(labels)
    return {"scores": scores_without_ignored(matrix, cfg.data.ignore_index), "matrix": matrix.matrix.numpy().copy(), "predictions": predictions,
            "points_per_s": points / max(time.perf_counter() - start, 1e-9)}


def class_names_for(cfg: Config) -> list[str]:
    if cfg.data.dataset in ("synthetic", "s3dis") and cfg.data.num_classes == len(S3DIS_CLASS_NAMES):
        return list(S3DIS_CLASS_NAMES)
    if cfg.data.dataset == "semantickitti" and cfg.data.label_config:
        from pcseg.data.kitti import SemanticKittiConfig
        names = getattr(SemanticKittiConfig.from_yaml(cfg.data.label_config), "class_names", None)
        if names is not None and len(names) == cfg.data.num_classes:
            return list(names)
    return [f"class_{i}" for i in range(cfg.data.num_classes)]


def scores_to_dict(scores: SegmentationScores, class_names: Sequence[str]) -> dict:
    def num(x):
        x = float(x)
        return None if np.isnan(x) else x

    return {"overall_accuracy": num(scores.overall_accuracy), "miou": num(scores.miou),
            "mean_accuracy": num(scores.mean_accuracy),
            "iou": {name: num(v) for name, v in zip(class_names, scores.iou.tolist())},
            "accuracy": {name: num(v) for name, v in zip(class_names, scores.accuracy.tolist())}}


def format_scores(scores: SegmentationScores, class_names: Sequence[str]) -> str:
    """OA, mIoU, mean accuracy and a per-class IoU table as text."""
    lines = [f"OA {scores.overall_accuracy:.3f}  mIoU {scores.miou:.3f}  mAcc {scores.mean_accuracy:.3f}",
             f"{'class':<12} {'IoU':>6} {'acc':>6}"]
    for name, iou, acc in zip(class_names, scores.iou.tolist(), scores.accuracy.tolist()):
        lines.append(f"{name:<12} {iou:6.3f} {acc:6.3f}")
    return "\n".join(lines)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str | Path) -> None:
    """Row-normalised confusion matrix (rows truth) -> PNG."""
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
                ax.text(j, i, f"{normalised[i, j]:.2f}", ha="center", va="center", fontsize=5,
                        color="white" if normalised[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_checkpoint(cfg: Config, checkpoint: str | Path, out_dir: str | Path | None = None,
                        device: str = "cpu", progress: bool = True) -> dict:
    """``pcseg eval``: the checkpoint on the config's validation rooms; prints and returns the
    metrics dict; with ``out_dir`` also writes metrics.json and confusion_matrix.png there."""
    model, _, _ = model_from_checkpoint(checkpoint, device, cfg=cfg)
    rooms = load_rooms(cfg.data, "val")
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
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        plot_confusion_matrix(result["matrix"], names, out_dir / "confusion_matrix.png")
    return metrics
