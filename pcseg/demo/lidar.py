"""``pcseg demo --lidar``: LiDAR labelling end to end on simulated scans, no download.

1. simulate HDL-64E scans of procedural streets (``pcseg.data.lidar_sim``) and write them in
   the SemanticKITTI layout (``sim/``): training streets and held-out streets of other seeds;
2. train a LiDAR model on them through the SemanticKITTI path (``data.dataset:
   semantickitti``) with the inputs a LiDAR has: xyz, intensity and range, no colour;
3. evaluate on the held-out scans with the SemanticKITTI metric (IoU over the 19 classes,
   label 0 "unlabeled" ignored; a class absent from a split's truth and prediction is left out
   of the mean), in one pass, with test-time voting (``VOTES`` passes over the scan turned
   about the vertical axis, averaged: ``segment_cloud(votes=...)``), and with the voted
   probabilities refined by the CRF of the config's ``refine`` section (``pcseg.refine.crf``
   on the kNN graph of the points, position kernel only);
4. where the real SemanticKITTI scan is there (``--real-scan``, or
   ``../shared/data/semantickitti/000000.bin``), apply the model trained on simulated scans only
   to it: per-class IoU, the mIoU over the 19 classes and over the six large classes (road,
   sidewalk, building, vegetation, car, terrain), and the seconds ``segment_cloud`` takes;
5. write into the output folder ``lidar_prediction.ply`` (a held-out scan coloured by
   predicted class), ``lidar_bev.png`` (bird's-eye prediction beside the truth),
   ``labels/<sequence>/<scan>.label`` (raw SemanticKITTI ids of every held-out scan, and of the
   real scan as ``labels/real/``, voted and refined) and ``metrics_lidar.json``; the run folder
   is ``run/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pcseg.config import Config, apply_overrides, config_from_dict, config_to_dict
from pcseg.data.lidar_sim import HDL64E, LidarSpec
from pcseg.utils.atomic import atomic_path, atomic_write_file

__all__ = ["lidar_demo_config", "run_lidar_demo", "plot_bev", "TRANSFER_CLASSES", "DEFAULT_REAL_SCAN"]

# the large classes a sim-to-real transfer is judged on
TRANSFER_CLASSES = ("road", "sidewalk", "building", "vegetation", "car", "terrain")
DEFAULT_REAL_SCAN = Path("../shared/data/semantickitti/000000.bin")

# The LiDAR demo model: PointNet on 4 m columns (a street's objects are metres wide, and a
# sparse far block then still holds enough points) with intensity, range and the scan's
# multiscale features (a block's sampled points alone cannot tell a pole, a trunk and a person
# apart; the per-block geometry adds about as much again to the cost per scan as these
# features and no more accuracy on validation streets);
# blocks do not overlap at inference, so every point is fed about once. 512-point chunks give
# more optimiser steps in the budget than 1,024 (benchmarks/RESULTS.md, LiDAR demo). Each block's
# intensity gain and sensor height are varied in training (``pcseg.inputs.augment_lidar_inputs``).
LIDAR_DEMO_SETTINGS = {
    "data": {
        "dataset": "semantickitti",
        "num_classes": 20,
        "ignore_index": 0,
        "block_size": 4.0,
        "eval_stride": 4.0,
        "num_points": 512,
        "blocks_per_room": 160,
        # a person, a pole or a sign is a few hundred points of a scan: balanced centres give
        # such classes as many training blocks as the road
        "block_centres": "class_balanced",
        "val_blocks_per_room": 16,
        "use_color": False,
        "room_coords": False,
        "use_intensity": True,
        "use_range": True,
        "geometric_features": False,
        "multiscale_features": True,
        # the simulator's intensities and mount height are one sensor's: a real sensor differs
        "augment_intensity": 0.5,
        "augment_height": 0.25,
    },
    "model": {"name": "pointnet_sem_seg", "width_multiplier": 0.25},
    "train": {
        "epochs": 60,
        "time_budget_s": 180.0,
        "batch_size": 16,
        "lr": 0.02,
        "warmup_epochs": 0.5,
        "class_weights": "inverse_log",
        "amp": "auto",
        "val_every": 5,
    },
    # The CRF on the voted probabilities (``pcseg.refine.crf``): a scan has no colour and its
    # normals are noisy at range, so one position kernel, about as wide as a car; chosen on
    # validation streets (other seeds than the held-out ones; benchmarks/RESULTS.md).
    "refine": {
        "k": 16,
        "position_sigma": 0.5,
        "appearance_weight": 1.0,
        "smoothness_weight": 0.0,
        "normals": False,
    },
}


# Test-time voting on the held-out and real scans (``segment_cloud(votes=...)``): passes over the
# scan turned by 45 degrees, averaged. Chosen on validation streets (other seeds than the
# held-out ones; benchmarks/RESULTS.md): the one-pass score is reported beside it.
VOTES = 8


def lidar_demo_config(out_dir: str | Path, overrides: Sequence[str] = ()) -> Config:
    """The LiDAR demo's config, reading the simulated data set under ``out_dir/sim``.

    Args:
        out_dir: the demo's output folder; the training run goes to ``out_dir/run``.
        overrides: ``--set`` overrides (``section.key=value``).

    Returns:
        config: ``LIDAR_DEMO_SETTINGS`` with the overrides applied.
    """
    out_dir = Path(out_dir)
    values = apply_overrides(
        LIDAR_DEMO_SETTINGS,
        [
            f"train.out_dir={out_dir / 'run'}",
            f"data.root={out_dir / 'sim'}",
            f"data.label_config={out_dir / 'sim' / 'semantic-kitti.yaml'}",
            *overrides,
        ],
    )
    return config_from_dict(values)


def plot_bev(
    points: np.ndarray,
    prediction: np.ndarray,
    truth: np.ndarray,
    palette: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    extent: float = 40.0,
) -> None:
    """Writes a bird's-eye view of a scan: predicted classes beside the truth.

    Args:
        points: (N, 3) float coordinates in the sensor frame, metres.
        prediction: (N,) int64 predicted classes.
        truth: (N,) int64 true classes (0: unlabeled, drawn grey).
        palette: (C, 3) uint8 colour per class.
        class_names: one name per class (the legend).
        path: the PNG to write.
        extent: the half-width in metres drawn around the sensor.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    near = np.flatnonzero((np.abs(points[:, 0]) < extent) & (np.abs(points[:, 1]) < extent))
    near = near[np.argsort(points[near, 2])]  # higher points drawn last, as seen from above
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5))
    for ax, labels, title in [(axes[0], prediction, "prediction"), (axes[1], truth, "ground truth")]:
        ax.scatter(points[near, 0], points[near, 1], c=palette[labels[near]] / 255.0, s=0.3, linewidths=0)
        ax.set_title(title)
        ax.set_aspect("equal")
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
    shown = np.unique(np.concatenate([prediction[near], truth[near]]))
    fig.legend(
        handles=[Patch(color=palette[k] / 255.0, label=class_names[k]) for k in shown],
        loc="lower center",
        ncol=10,
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _scores(matrix, names: Sequence[str]) -> dict:
    """The SemanticKITTI scores of a confusion matrix: IoU per class (label 0 ignored)."""
    from pcseg.evaluate import scores_without_ignored

    scores = scores_without_ignored(matrix, 0)
    iou = {name: float(v) for name, v in zip(names, scores.iou.tolist()) if name != "unlabeled" and v == v}
    transfer = [iou[name] for name in TRANSFER_CLASSES if name in iou]
    return {
        "miou": scores.miou,
        "iou": iou,
        "miou_transfer_classes": float(np.mean(transfer)) if transfer else None,
        "overall_accuracy": scores.overall_accuracy,
    }


def _inputs(cfg: Config) -> str:
    """The model's inputs in words, for the demo's first line."""
    data = cfg.data
    names = ["xyz", "intensity" * data.use_intensity, "range" * data.use_range]
    names += ["local geometry" * data.geometric_features, "multiscale features" * data.multiscale_features]
    return " + ".join(name for name in names if name)


def _segment(model, cfg: Config, scan: dict) -> tuple[np.ndarray, float]:
    """Labels of one scan in one pass and the seconds ``segment_cloud`` took."""
    from pcseg.predict import segment_cloud

    start = time.perf_counter()
    result = segment_cloud(model, cfg, scan["coord"], None, keep_probabilities=False, intensity=scan["remission"])
    return result["labels"], time.perf_counter() - start


def _segment_voted(model, cfg: Config, scan: dict, votes: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels of one scan with ``votes`` votes, and the same probabilities refined by the CRF of
    ``cfg.refine``: (N,) int64 each."""
    from pcseg.predict import segment_cloud
    from pcseg.uncertainty import refine_probabilities

    result = segment_cloud(model, cfg, scan["coord"], None, intensity=scan["remission"], votes=votes)
    refined = refine_probabilities(scan["coord"], result["probabilities"], None, cfg.refine)
    return result["labels"], refined.argmax(1)


def run_lidar_demo(
    out_dir: str | Path = "demo_lidar_out",
    overrides: Sequence[str] = (),
    seed: int = 0,
    train_streets: int = 12,
    val_streets: int = 8,
    real_scan: str | Path | None = None,
    progress: bool = True,
    spec: LidarSpec = HDL64E,
    votes: int = VOTES,
) -> dict:
    """Runs the LiDAR demo (see the module docstring).

    Args:
        out_dir: the output folder.
        overrides: ``--set`` overrides of the demo's config.
        seed: the training seed; the training streets are seeds ``1000 * seed + i`` and the
            held-out streets ``1000 * seed + 500 + i``.
        train_streets: simulated training scans (one per street).
        val_streets: held-out simulated scans (a street may hold almost no car or person, so
            a few are needed for a stable score).
        real_scan: a SemanticKITTI ``.bin`` with its ``.label`` beside it; None: the shared
            sample when it exists.
        progress: report the simulation, block cutting and epochs.
        spec: the simulated sensor (a coarser azimuth step gives a quick run).
        votes: the test-time votes of the second and third scores of every scan (``segment_cloud``).

    Returns:
        metrics: what metrics_lidar.json holds.

    Raises:
        FileNotFoundError: when ``real_scan`` is given and it or its ``.label`` is missing.
    """
    import torch

    from pcseg.checkpoint import model_from_checkpoint
    from pcseg.data.kitti import SemanticKittiConfig, SemanticKITTIScans, read_semantickitti_scan
    from pcseg.data.lidar_sim import write_simulated_semantickitti
    from pcseg.io import write_labelled_ply, write_predictions
    from pcseg.metrics import ConfusionMatrix
    from pcseg.predict import prediction_classes
    from pcseg.train import train

    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if real_scan is not None:
        real_scan = Path(real_scan)
        for path in (real_scan, real_scan.with_suffix(".label")):
            if not path.is_file():
                raise FileNotFoundError(
                    f"--real-scan: {path} not found (a SemanticKITTI .bin with its .label beside it)"
                )
    elif DEFAULT_REAL_SCAN.is_file() and DEFAULT_REAL_SCAN.with_suffix(".label").is_file():
        real_scan = DEFAULT_REAL_SCAN
    cfg = lidar_demo_config(out_dir, [f"train.seed={seed}", *overrides])

    t = time.perf_counter()
    write_simulated_semantickitti(
        out_dir / "sim",
        [1000 * seed + i for i in range(train_streets)],
        [1000 * seed + 500 + i for i in range(val_streets)],
        spec=spec,
        show_progress=progress,
    )
    simulate_s = time.perf_counter() - t
    print(
        f"[demo --lidar] simulated {train_streets} training and {val_streets} held-out HDL-64E scans in "
        f"{simulate_s:.1f} s; model {cfg.model.name} (width x{cfg.model.width_multiplier}) on "
        f"{cfg.data.block_size:g} m blocks, inputs {_inputs(cfg)}; training budget "
        f"{cfg.train.time_budget_s:.0f} s",
        flush=True,
    )
    summary = train(cfg, progress=progress)
    if summary["interrupted"]:
        raise KeyboardInterrupt
    model, _, _ = model_from_checkpoint(summary["last"], "cpu")
    label_config = SemanticKittiConfig.from_yaml(cfg.data.label_config)
    names = list(label_config.class_names)
    classes = prediction_classes(cfg, [".label"])
    palette = classes["palette"]

    matrix, predict_s, first = ConfusionMatrix(cfg.data.num_classes, ignore_index=0), [], None
    voted_matrix = ConfusionMatrix(cfg.data.num_classes, ignore_index=0)
    refined_matrix = ConfusionMatrix(cfg.data.num_classes, ignore_index=0)
    scans = SemanticKITTIScans(cfg.data.root, label_config, "valid")
    for i in range(len(scans)):
        scan = scans[i]
        one_pass, seconds = _segment(model, cfg, scan)
        predict_s.append(seconds)
        matrix.update(torch.from_numpy(one_pass), torch.from_numpy(scan["label"]))
        voted, labels = _segment_voted(model, cfg, scan, votes)
        voted_matrix.update(torch.from_numpy(voted), torch.from_numpy(scan["label"]))
        refined_matrix.update(torch.from_numpy(labels), torch.from_numpy(scan["label"]))
        sequence, name = scan["name"].split("/")
        (out_dir / "labels" / sequence).mkdir(parents=True, exist_ok=True)
        write_predictions(
            out_dir / "labels" / sequence / f"{name}.label",
            scan["coord"],
            labels,
            learning_map_inv=classes["learning_map_inv"],
        )
        if first is None:
            first = (scan, labels)
    sim, voted, refined = _scores(matrix, names), _scores(voted_matrix, names), _scores(refined_matrix, names)
    scan, labels = first
    write_labelled_ply(out_dir / "lidar_prediction.ply", scan["coord"], labels, palette)
    plot_bev(scan["coord"], labels, scan["label"], palette, names, out_dir / "lidar_bev.png")
    metrics = {
        "sim_miou": sim["miou"],
        "sim_iou": sim["iou"],
        "sim_overall_accuracy": sim["overall_accuracy"],
        "votes": votes,
        "sim_miou_votes": voted["miou"],
        "sim_iou_votes": voted["iou"],
        "sim_miou_votes_crf": refined["miou"],
        "sim_iou_votes_crf": refined["iou"],
        "sim_scans": len(scans),
        "sim_predict_s": predict_s,
        "simulate_s": simulate_s,
        "epochs": summary["epochs"],
        "train_s": summary["train_s"],
        "prepare_s": summary["prepare_s"],
        "torch_threads": torch.get_num_threads(),
        "config": config_to_dict(cfg),
    }
    print(
        f"[demo --lidar] held-out simulated scans: mIoU {sim['miou']:.3f} in one pass, {voted['miou']:.3f} "
        f"with {votes} votes, {refined['miou']:.3f} with the votes and the CRF (SemanticKITTI classes, label 0 "
        "ignored)",
        flush=True,
    )
    if real_scan is not None:
        real = read_semantickitti_scan(real_scan, real_scan.with_suffix(".label"), label_config)
        real_labels, seconds = _segment(model, cfg, real)
        real_matrix = ConfusionMatrix(cfg.data.num_classes, ignore_index=0)
        real_matrix.update(torch.from_numpy(real_labels), torch.from_numpy(real["label"]))
        scores = _scores(real_matrix, names)
        voted_labels, refined_labels = _segment_voted(model, cfg, real, votes)
        real_matrix.reset()
        real_matrix.update(torch.from_numpy(voted_labels), torch.from_numpy(real["label"]))
        voted_real = _scores(real_matrix, names)
        real_matrix.reset()
        real_matrix.update(torch.from_numpy(refined_labels), torch.from_numpy(real["label"]))
        refined_real = _scores(real_matrix, names)
        (out_dir / "labels" / "real").mkdir(parents=True, exist_ok=True)
        write_predictions(
            out_dir / "labels" / "real" / f"{real_scan.stem}.label",
            real["coord"],
            refined_labels,
            learning_map_inv=classes["learning_map_inv"],
        )
        metrics.update(
            {
                "real_scan": str(real_scan),
                "real_miou": scores["miou"],
                "real_iou": scores["iou"],
                "real_miou_transfer_classes": scores["miou_transfer_classes"],
                "real_miou_votes": voted_real["miou"],
                "real_iou_votes": voted_real["iou"],
                "real_miou_transfer_classes_votes": voted_real["miou_transfer_classes"],
                "real_miou_votes_crf": refined_real["miou"],
                "real_iou_votes_crf": refined_real["iou"],
                "real_miou_transfer_classes_votes_crf": refined_real["miou_transfer_classes"],
                "real_points": int(len(real["coord"])),
                "real_predict_s": seconds,
            }
        )
        print(
            f"[demo --lidar] real scan {real_scan} ({len(real['coord']):,} points, {seconds:.2f} s): mIoU "
            f"{scores['miou']:.3f}, over {', '.join(TRANSFER_CLASSES)} {scores['miou_transfer_classes']:.3f}; with "
            f"{votes} votes {voted_real['miou']:.3f} and {voted_real['miou_transfer_classes']:.3f}; with the votes "
            f"and the CRF {refined_real['miou']:.3f} and {refined_real['miou_transfer_classes']:.3f}",
            flush=True,
        )
    metrics["total_s"] = time.perf_counter() - start
    atomic_write_file(out_dir / "metrics_lidar.json", json.dumps(metrics, indent=2, default=float))
    print(f"[demo --lidar] total {metrics['total_s']:.1f} s; outputs in {out_dir}/", flush=True)
    return metrics
