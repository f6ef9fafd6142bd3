"""The S3DIS evaluation protocols that papers report: 6-fold cross-validation and Area 5.

* ``"6fold"``: six runs, each trained on five areas and tested on the sixth (``six_fold_splits``);
  the six test confusion matrices are summed and the 6-fold OA / mAcc / mIoU are computed from
  the sum (as PointNet's and A-CNN's papers do: every room of the data set is scored once, by
  the model that never saw its area).
* ``"area5"``: one run trained on areas 1-4 and 6 and tested on Area 5 (the large-scale
  protocol of SEGCloud, PointCNN and later papers; Area 5 shares no building with the others).

Each run is ``pcseg.train.train`` with the config's ``data.test_area`` set to the fold's area
and its own run folder ``<out>/area_<k>``; its **last** checkpoint is scored on the held-out
area with whole-room sliding blocks (``pcseg.evaluate.evaluate_rooms``). The best-validation
checkpoint is not used: its choice looked at the test area. The command is
``pcseg s3dis-protocol --config C --protocol 6fold|area5``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from pcseg.config import Config
from pcseg.evaluate import class_names_for, format_scores, scores_to_dict, scores_without_ignored
from pcseg.metrics import ConfusionMatrix, SegmentationScores
from pcseg.utils.atomic import atomic_write_file

__all__ = ["PROTOCOLS", "protocol_folds", "merge_matrices", "run_s3dis_protocol"]

PROTOCOLS = ("6fold", "area5")


def protocol_folds(protocol: str) -> list[int]:
    """The test area of each run of a protocol.

    Args:
        protocol: "6fold" or "area5".

    Returns:
        test_areas: [1, 2, 3, 4, 5, 6] or [5].

    Raises:
        ValueError: for another protocol name.
    """
    if protocol == "6fold":
        from pcseg.data.s3dis import six_fold_splits

        return [test[0] for _, test in six_fold_splits()]
    if protocol == "area5":
        return [5]
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def merge_matrices(matrices: list[np.ndarray], ignore_index: int) -> SegmentationScores:
    """The scores of the sum of per-fold confusion matrices.

    Args:
        matrices: (C, C) int64 confusion matrices (rows truth, columns prediction), one per fold.
        ignore_index: the ignored label (left out of the means when it is a class).

    Returns:
        scores: OA, mAcc, mIoU and per-class scores of the summed matrix.

    Raises:
        ValueError: when there is no matrix or their shapes differ.
    """
    if not matrices or any(m.shape != matrices[0].shape for m in matrices):
        raise ValueError(f"matrices must be one or more (C, C) arrays of one shape, got {[m.shape for m in matrices]}")
    merged = ConfusionMatrix(matrices[0].shape[0], ignore_index=ignore_index)
    merged.matrix += torch.as_tensor(np.sum(matrices, axis=0), dtype=torch.int64)
    return scores_without_ignored(merged, ignore_index)


def _fold_config(cfg: Config, test_area: int, out_dir: Path) -> Config:
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, test_area=test_area),
        train=dataclasses.replace(cfg.train, out_dir=str(out_dir / f"area_{test_area}")),
    )


def _line(name: str, scores: SegmentationScores) -> str:
    return f"{name}: OA {scores.overall_accuracy:.4f}  mAcc {scores.mean_accuracy:.4f}  mIoU {scores.miou:.4f}"


def run_s3dis_protocol(
    cfg: Config, protocol: str = "6fold", out_dir: str | Path | None = None, device: str = "cpu", progress: bool = True
) -> dict:
    """Trains and scores every fold of an S3DIS protocol and prints the merged scores.

    Args:
        cfg: an S3DIS config (``data.dataset: s3dis``); its ``data.test_area`` and
            ``train.out_dir`` are replaced per fold.
        protocol: "6fold" or "area5".
        out_dir: where the runs (``area_<k>/``) and ``protocol.json`` go; None: ``train.out_dir``.
        device: where the evaluation runs (training follows ``train.device``).
        progress: report training and evaluation.

    Returns:
        result: ``{"protocol", "folds": {area: scores dict}, "merged": scores dict,
        "matrix": (C, C) list}``, also written to ``out_dir/protocol.json``.

    Raises:
        ValueError: for another data set or protocol.
    """
    from pcseg.checkpoint import model_from_checkpoint
    from pcseg.data.loading import load_rooms
    from pcseg.evaluate import evaluate_rooms
    from pcseg.train import train

    if cfg.data.dataset != "s3dis":
        raise ValueError(f"the S3DIS protocols need data.dataset: s3dis, got {cfg.data.dataset!r}")
    areas = protocol_folds(protocol)
    out_dir = Path(out_dir if out_dir is not None else cfg.train.out_dir)
    names = class_names_for(cfg)
    folds, matrices = {}, []
    for area in areas:
        fold_cfg = _fold_config(cfg, area, out_dir)
        print(
            f"[{protocol}] fold: train on areas {[a for a in range(1, 7) if a != area]}, test on Area {area}",
            flush=True,
        )
        summary = train(fold_cfg, progress=progress)
        if summary["interrupted"]:
            raise KeyboardInterrupt
        model, _, _ = model_from_checkpoint(summary["last"], device)
        result = evaluate_rooms(model, fold_cfg, load_rooms(fold_cfg.data, "val", progress), device, progress)
        matrices.append(result["matrix"])
        folds[area] = scores_to_dict(result["scores"], names)
        print(_line(f"[{protocol}] Area {area}", result["scores"]), flush=True)
    merged = merge_matrices(matrices, cfg.data.ignore_index)
    print(f"[{protocol}] merged confusion matrix of {len(areas)} fold(s):", flush=True)
    print(format_scores(merged, names), flush=True)
    print(_line(f"[{protocol}] {'6-fold' if protocol == '6fold' else 'Area 5'}", merged), flush=True)
    record = {
        "protocol": protocol,
        "folds": folds,
        "merged": scores_to_dict(merged, names),
        "matrix": np.sum(matrices, axis=0).tolist(),
    }
    atomic_write_file(out_dir / "protocol.json", json.dumps(record, indent=2))
    return record
