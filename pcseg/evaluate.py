"""Scores and reports: whole-room evaluation of a model, metrics, tables and plots.

    model, cfg, _ = model_from_checkpoint("runs/x/best.pt")
    result = evaluate_rooms(model, cfg, load_rooms(cfg.data, "val"))
    print(format_scores(result["scores"], class_names_for(cfg)))

The rooms are predicted whole by ``pcseg.predict.predict_tile`` (sliding blocks); this module
scores the labels and reports them, with the probabilities' calibration (expected calibration
error over 15 confidence bins, a reliability diagram) and the error rate by decile of predictive
entropy. ``calibrate_checkpoint`` (``pcseg calibrate``) fits the temperature that
``evaluate_rooms`` and ``pcseg.Segmenter`` apply before the softmax.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pcseg.calibration import CalibrationBins, calibration_bins, entropy, fit_temperature
from pcseg.config import Config, RefineConfig
from pcseg.data import S3DIS_CLASS_NAMES
from pcseg.data.blocks import LIDAR_FIELDS
from pcseg.inputs import multiscale_features
from pcseg.metrics import ConfusionMatrix, SegmentationScores
from pcseg.predict import autocast_dtype, check_votes, predict_tile, turn_about_z, vote_turns
from pcseg.uncertainty import check_refine, refine_probabilities
from pcseg.utils.atomic import atomic_path, atomic_write, check_output_folder
from pcseg.utils.progress import progress as progress_bar

__all__ = [
    "scores_without_ignored",
    "evaluate_rooms",
    "format_scores",
    "scores_to_dict",
    "plot_confusion_matrix",
    "evaluate_checkpoint",
    "calibrate_checkpoint",
    "class_names_for",
    "CALIBRATION_BINS",
]

CALIBRATION_BINS = 15


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
    refine: RefineConfig | None = None,
    temperature: float = 1.0,
    votes: int = 1,
) -> dict:
    """Whole-room sliding-block evaluation.

    Args:
        model: a pcseg segmentation model (put in eval mode here).
        cfg: its config.
        rooms: dicts with ``coord`` (N, 3), ``color`` (N, 3) and ``label`` (N,) int64.
        device: where the model runs.
        progress: report the rooms done (``pcseg.utils.progress``).
        amp: ``train.amp``'s values; None: the config's.
        refine: when given, each room's probabilities are refined by ``pcseg.refine.crf`` with
            these settings before they are scored.
        temperature: T > 0 dividing the averaged logits before the softmax (``pcseg calibrate``).
        votes: test-time votes: each room's probabilities averaged over ``votes`` passes, the room
            turned about the vertical axis through its centre between them (``pcseg.predict.vote_turns``).

    Returns:
        result: ``{"scores": SegmentationScores, "matrix": (C, C) int64 numpy, "predictions": list
        of (N_i,) int64 label arrays, "points_per_s": float, "calibration": CalibrationBins
        (15 bins, over all rooms), "error_by_decile": (10,) float64 error rates from the 10 %
        least to the 10 % most uncertain labelled points (predictive entropy)}``.
    """
    model.eval()
    amp_dtype = autocast_dtype(amp or cfg.train.amp, torch.device(device))
    matrix = ConfusionMatrix(cfg.data.num_classes, ignore_index=cfg.data.ignore_index)
    bins = CalibrationBins(np.zeros(CALIBRATION_BINS, np.int64), np.zeros(CALIBRATION_BINS), np.zeros(CALIBRATION_BINS))
    predictions, uncertainties, errors, points, start = [], [], [], 0, time.perf_counter()
    for room in progress_bar(rooms, desc="evaluating rooms", unit="room", enabled=progress):
        probabilities = 0.0
        for vote, cloud in enumerate(vote_turns(room["coord"], votes, about_origin=False)):
            turned = _turned_room(room, cloud, 2 * math.pi * vote / votes) if vote else room
            logits, labels = predict_tile(
                model, cfg.data, turned["coord"], turned["color"], device, amp_dtype, lidar=_point_fields(turned)
            )
            probabilities = probabilities + torch.softmax(torch.from_numpy(logits) / temperature, dim=1).numpy()
        if votes > 1:
            probabilities = probabilities / votes
            labels = probabilities.argmax(axis=1)
        if refine is not None:
            colors = room["color"] if cfg.data.use_color else None
            probabilities = refine_probabilities(room["coord"], probabilities, colors, refine)
            labels = probabilities.argmax(axis=1)
        truth = np.asarray(room["label"]).astype(np.int64, copy=False)
        matrix.update(torch.from_numpy(labels), torch.from_numpy(truth))
        bins = bins.merge(calibration_bins(probabilities, truth, CALIBRATION_BINS, cfg.data.ignore_index))
        kept = truth != cfg.data.ignore_index
        uncertainties.append(entropy(probabilities[kept]))
        errors.append(labels[kept] != truth[kept])
        predictions.append(labels)
        points += len(labels)
    return {
        "scores": scores_without_ignored(matrix, cfg.data.ignore_index),
        "matrix": matrix.matrix.numpy().copy(),
        "predictions": predictions,
        "points_per_s": points / max(time.perf_counter() - start, 1e-9),
        "calibration": bins,
        "error_by_decile": _error_by_decile(
            np.concatenate(errors or [np.zeros(0, bool)]), np.concatenate(uncertainties or [np.zeros(0)])
        ),
    }


def _error_by_decile(errors: np.ndarray, uncertainty: np.ndarray) -> np.ndarray:
    """(10,) error rates of the points ranked by uncertainty, as
    ``pcseg.calibration.error_rate_by_uncertainty_decile`` (which needs every room's
    probabilities at once; these are only the rooms' errors and entropies)."""
    ranked = errors[np.argsort(uncertainty, kind="stable")].astype(np.float64)
    return np.array([part.mean() if len(part) else np.nan for part in np.array_split(ranked, 10)])


def _turned_room(room: dict, coord: np.ndarray, angle: float) -> dict:
    """``room`` with its coordinates turned by ``angle`` radians about the vertical axis
    (``coord``, from ``pcseg.predict.vote_turns``): the sensor-frame x and y of a LiDAR room
    turned by the same angle about the sensor (so range and height stay what it measured), the
    multiscale features recomputed."""
    turned = {**room, "coord": coord.astype(np.asarray(room["coord"]).dtype)}
    if "sensor_x" in room:
        sensor = turn_about_z(np.stack([room["sensor_x"], room["sensor_y"]], 1), angle, np.zeros(2))
        turned["sensor_x"], turned["sensor_y"] = sensor[:, 0].astype(np.float32), sensor[:, 1].astype(np.float32)
    if "multiscale" in room:
        turned["multiscale"] = multiscale_features(coord)
    return turned


def _point_fields(room: dict) -> dict:
    """The LiDAR fields (``pcseg.data.blocks.LIDAR_FIELDS``) and multiscale features a room holds,
    for models that take them."""
    return {key: room[key] for key in (*LIDAR_FIELDS, "multiscale") if key in room}


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
    cfg: Config,
    checkpoint: str | Path,
    out_dir: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    refine: str | None = None,
    votes: int = 1,
) -> dict:
    """``pcseg eval``: a checkpoint on the config's validation rooms.

    The checkpoint's temperature (``pcseg calibrate``; 1 when it has none) is applied.

    Args:
        cfg: the config whose validation rooms are scored (the checkpoint must match it).
        checkpoint: a checkpoint written by ``pcseg train``.
        out_dir: where to write metrics.json, confusion_matrix.png and reliability.png; None
            writes nothing.
        device: where the model runs.
        progress: report the rooms loaded and done.
        refine: None, or "crf": refine each room's probabilities with ``cfg.refine``'s CRF.
        votes: test-time votes per room (``evaluate_rooms``), >= 1.

    Returns:
        metrics: ``scores_to_dict`` plus points_per_s, rooms, refine, votes, temperature,
        expected_calibration_error (15 bins) and error_by_uncertainty_decile (10 error rates,
        least to most uncertain; all also printed).

    Raises:
        CheckpointError: when the checkpoint cannot be loaded.
        CheckpointMismatchError: when the checkpoint does not match ``cfg``.
        ValueError: when the device is absent, ``refine`` is not None or "crf", ``votes`` is
            not an int >= 1, or the config has no validation rooms.
        FileNotFoundError: when the data folder is missing.
        NotADirectoryError: when a file stands where ``out_dir`` should be.

    Everything but the rooms' contents is checked before any room is generated or read.
    """
    from pcseg.checkpoint import checkpoint_temperature

    check_refine(refine, "--refine")
    check_votes(votes, "--votes")
    if out_dir is not None:
        check_output_folder(out_dir, "--out")
    model, rooms, saved = _model_and_validation_rooms(cfg, checkpoint, device, progress)
    temperature = checkpoint_temperature(saved, checkpoint)
    result = evaluate_rooms(
        model,
        cfg,
        rooms,
        device,
        progress,
        refine=cfg.refine if refine else None,
        temperature=temperature,
        votes=votes,
    )
    names = class_names_for(cfg)
    ece = result["calibration"].expected_calibration_error()
    deciles = [None if np.isnan(x) else float(x) for x in result["error_by_decile"]]
    print(format_scores(result["scores"], names))
    print(
        f"ECE ({CALIBRATION_BINS} bins) {ece:.4f}  temperature {temperature:.3f}  refine {refine or 'none'}  "
        f"votes {votes}"
    )
    print(
        "error rate by entropy decile (least to most uncertain): "
        + " ".join("-" if x is None else f"{x:.3f}" for x in deciles)
    )
    metrics = scores_to_dict(result["scores"], names)
    metrics["points_per_s"] = result["points_per_s"]
    metrics["rooms"] = len(rooms)
    metrics["refine"] = refine
    metrics["votes"] = votes
    metrics["temperature"] = temperature
    metrics["expected_calibration_error"] = None if np.isnan(ece) else float(ece)
    metrics["error_by_uncertainty_decile"] = deciles
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(out_dir / "metrics.json") as handle:
            handle.write(json.dumps(metrics, indent=2).encode())
        plot_confusion_matrix(result["matrix"], names, out_dir / "confusion_matrix.png")
        result["calibration"].reliability_diagram(out_dir / "reliability.png")
    return metrics


def calibrate_checkpoint(cfg: Config, checkpoint: str | Path, device: str = "cpu", progress: bool = True) -> dict:
    """``pcseg calibrate``: fits temperature scaling on the validation rooms and stores it.

    The rooms are predicted whole as ``pcseg eval`` does; T is fitted
    (``pcseg.calibration.fit_temperature``) on their labelled points' averaged logits, the
    values inference divides by T, and the checkpoint is rewritten atomically with it.
    Judge it on other rooms than these (e.g. ``pcseg eval --set data.val_seed_start=...``).

    Args:
        cfg: the config whose validation rooms are used (the checkpoint must match it).
        checkpoint: a checkpoint written by ``pcseg train``; rewritten with ``temperature``.
        device: where the model runs.
        progress: report the rooms loaded and done.

    Returns:
        summary: temperature, previous_temperature, points, and the validation points' NLL and ECE
        before (T = 1) and after (val_nll_before, val_nll_after, val_ece_before, val_ece_after).

    Raises:
        CheckpointError, CheckpointMismatchError, ValueError, FileNotFoundError: as
            ``evaluate_checkpoint``, or when the rooms hold no labelled point.
    """
    from pcseg.checkpoint import checkpoint_temperature, store_temperature

    model, rooms, saved = _model_and_validation_rooms(cfg, checkpoint, device, progress)
    previous = checkpoint_temperature(saved, checkpoint)
    amp_dtype = autocast_dtype(cfg.train.amp, torch.device(device))
    all_logits, all_labels = [], []
    for room in progress_bar(rooms, desc="predicting rooms", unit="room", enabled=progress):
        logits, _ = predict_tile(
            model, cfg.data, room["coord"], room["color"], device, amp_dtype, lidar=_point_fields(room)
        )
        truth = np.asarray(room["label"]).astype(np.int64, copy=False)
        kept = truth != cfg.data.ignore_index
        all_logits.append(logits[kept])
        all_labels.append(truth[kept])
    logits, labels = np.concatenate(all_logits), np.concatenate(all_labels)
    temperature = fit_temperature(logits, labels)

    def scores(t: float) -> tuple[float, float]:
        scaled = torch.from_numpy(logits).double() / t
        probabilities = torch.softmax(scaled, dim=1).numpy()
        nll = float(torch.nn.functional.cross_entropy(scaled, torch.from_numpy(labels)))
        return nll, calibration_bins(probabilities, labels, CALIBRATION_BINS).expected_calibration_error()

    store_temperature(checkpoint, temperature)
    (nll_before, ece_before), (nll_after, ece_after) = scores(1.0), scores(temperature)
    return {
        "temperature": temperature,
        "previous_temperature": previous,
        "points": len(labels),
        "val_nll_before": nll_before,
        "val_nll_after": nll_after,
        "val_ece_before": ece_before,
        "val_ece_after": ece_after,
    }


def _model_and_validation_rooms(
    cfg: Config, checkpoint: str | Path, device: str, progress: bool
) -> tuple[torch.nn.Module, Sequence[dict], dict]:
    """The checkpoint's model, the config's validation rooms and the loaded checkpoint dict,
    everything but the rooms' contents checked before any room is generated or read."""
    from pcseg.checkpoint import model_from_checkpoint
    from pcseg.data.loading import check_data, load_rooms
    from pcseg.utils.devices import check_device

    check_device(str(device), "--device")
    if cfg.data.dataset == "synthetic" and cfg.data.val_rooms == 0:
        raise ValueError("the config has no validation rooms (data.val_rooms = 0)")
    model, _, saved = model_from_checkpoint(checkpoint, device, cfg=cfg)
    check_data(cfg.data, ("val",))
    rooms = load_rooms(cfg.data, "val", progress)
    if not rooms:
        raise ValueError("the config has no validation rooms (data.val_rooms = 0)")
    return model, rooms, saved
