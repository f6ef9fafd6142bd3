"""``pcseg demo --from-2d``: a 3D model trained on 2D pseudo-labels only, measured against the truth.

1. generated training rooms (``pcseg.data.synthetic``), each seen by posed RGB-D views whose
   2D labels come from a simulated network (``pcseg.demo.bridge.simulate_2d_network``: whole
   objects confused, small objects missed, errors at boundaries, about 75-80 % pixel accuracy);
2. the views fused per room (``pcseg.Fuser``, soft scores, "bayes"; and "vote" for agreement),
   the confident voxels kept as pseudo-labels (``pcseg.pseudolabel``), the rest ignored;
3. the 2D network's confusion matrix measured on the views of other rooms against their 2D
   truth, as a 2D network's own labelled validation images give it
   (``network_confusion.npy``);
4. the demo model trained on those pseudo-labels, its cross-entropy corrected for the 2D
   network's confusions (``train.label_transition``), and the same model, with the same time
   budget, on the same points with their true labels;
5. held-out rooms (other seeds, never used to choose a setting): the fused painted labels of
   their own rendered views, and both models' whole-room predictions, scored against the truth.

Writes ``metrics_from_2d.json`` (``painted_miou``, ``painted_coverage``, ``pseudo_miou``,
``supervised_miou``; both models also scored on the points the painted labels cover,
``*_miou_on_painted_points``; the pseudo-label threshold report on the training rooms, the 2D
network's pixel accuracy and confusion matrix, the machine's load) and the two training runs
(``run_pseudo/``, ``run_supervised/``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcseg.demo.bridge import (
    NUM_CLASSES,
    PALETTE,
    NetworkErrorModel,
    demo_camera,
    demo_poses,
    object_confusions,
    simulate_2d_network,
)
from pcseg.fuser import Fuser
from pcseg.pseudolabel import FusedCloud, PseudoLabelThresholds, fused_cloud, pseudo_labels, threshold_report
from pcseg.utils.atomic import atomic_path, atomic_write_file

__all__ = ["From2DConfig", "FusedRoom", "fuse_room", "measure_network_confusion", "run_from_2d_demo", "split_overrides"]

# The seeds of the rooms on which the 2D network's confusion matrix is measured: neither
# training (0, 1, ...) nor held-out (100000, ...) rooms.
CONFUSION_SEED_START = 200_000

# Agreement thresholds of the coverage / accuracy sweep in the report.
AGREEMENT_SWEEP = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class From2DConfig:
    """The settings of ``pcseg demo --from-2d`` (``--set from_2d.KEY=V``, ``network.KEY=V``,
    ``pseudolabel.KEY=V``; the model's and training's as ``pcseg demo``'s).

    Attributes:
        train_rooms: generated rooms that get pseudo-labels (seeds 0, 1, ...).
        heldout_rooms: rooms for the evaluation (seeds 100000, 100001, ...).
        views_per_room: RGB-D views rendered and fused per room.
        image_size: (width, height) of the views in pixels.
        voxel_size: the fused map's voxel edge in metres (also the training points' spacing).
        eval_points_per_room: points sampled on each held-out room.
        truth_points_per_room: points sampled on each training room to find its voxels' true labels.
        time_budget_s: seconds of training for each of the two models.
        confusion_rooms / confusion_views_per_room: the validation rooms (seeds 200000,
            200001, ...) and views on which the 2D network's confusion matrix is measured.
        noise_correction: train the pseudo-label model through that confusion matrix
            (``train.label_transition``); False: on the pseudo-labels as they are.
        network: the simulated 2D network's error model.
        thresholds: the pseudo-label thresholds.
    """

    train_rooms: int = 12
    heldout_rooms: int = 4
    views_per_room: int = 12
    image_size: tuple = (160, 120)
    voxel_size: float = 0.05
    eval_points_per_room: int = 100_000
    truth_points_per_room: int = 200_000
    time_budget_s: float = 120.0
    confusion_rooms: int = 32
    confusion_views_per_room: int = 4
    noise_correction: bool = True
    network: NetworkErrorModel = field(default_factory=NetworkErrorModel)
    thresholds: PseudoLabelThresholds = field(default_factory=PseudoLabelThresholds)

    def __post_init__(self):
        for name in (
            "train_rooms",
            "heldout_rooms",
            "views_per_room",
            "eval_points_per_room",
            "truth_points_per_room",
            "confusion_rooms",
            "confusion_views_per_room",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"from_2d.{name} must be >= 1, got {getattr(self, name)}")
        if self.train_rooms < 2:
            raise ValueError(
                f"from_2d.train_rooms must be >= 2 (one also serves as the validation room), got {self.train_rooms}"
            )
        if not self.voxel_size > 0 or not self.time_budget_s > 0:
            raise ValueError("from_2d.voxel_size and from_2d.time_budget_s must be > 0")
        self.image_size = tuple(int(v) for v in self.image_size)


_SECTIONS = {"from_2d": None, "network": "network", "pseudolabel": "thresholds"}


def split_overrides(overrides: Sequence[str]) -> tuple[From2DConfig, list[str]]:
    """The demo's own settings out of ``--set`` overrides; the rest go to the training config.

    Args:
        overrides: ``section.key=value`` strings.

    Returns:
        (config, rest): the From2DConfig with the from_2d / network / pseudolabel overrides
        applied, and the other overrides.

    Raises:
        ValueError: on an unknown key of those sections (named) or a bad value.
    """
    import yaml

    values: dict[str, dict] = {section: {} for section in _SECTIONS}
    rest = []
    for item in overrides:
        dotted, _, raw = item.partition("=")
        section, _, key = dotted.strip().partition(".")
        if section not in _SECTIONS:
            rest.append(item)
            continue
        values[section][key] = yaml.safe_load(raw) if raw.strip() else ""
    network = _build(NetworkErrorModel, values["network"], "network")
    thresholds = _build(PseudoLabelThresholds, values["pseudolabel"], "pseudolabel")
    return _build(From2DConfig, {**values["from_2d"], "network": network, "thresholds": thresholds}, "from_2d"), rest


def _build(cls, values: dict, section: str):
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - valid
    if unknown:
        raise ValueError(f"unknown key {section}.{sorted(unknown)[0]}; valid keys of {section!r}: {sorted(valid)}")
    if cls is NetworkErrorModel and "confusions" in values:
        values = {**values, "confusions": tuple(tuple(pair) for pair in values["confusions"])}
    return cls(**values)


@dataclass
class FusedRoom:
    """One rendered, fused room (`fuse_room`).

    Attributes:
        cloud: its fused voxels.
        truth: (V,) int64 the voxels' true labels.
        fuser: its map (soft scores, "bayes").
        pixels: the views' pixels that hit a surface.
        correct_pixels: those the simulated 2D network labelled right.
    """

    cloud: FusedCloud
    truth: np.ndarray
    fuser: Fuser
    pixels: int
    correct_pixels: int


def fuse_room(seed: int, cfg: From2DConfig, truth_points: int | None = None) -> FusedRoom:
    """Render a generated room's views, run the simulated 2D network on them and fuse them.

    Args:
        seed: the room (`pcseg.data.synthetic.build_room`), its poses and the 2D errors.
        cfg: views_per_room, image_size, voxel_size and the network's error model.
        truth_points: points sampled on the room to find the voxels' true labels (nearest
            point); None: `cfg.truth_points_per_room`.

    Returns:
        room: a FusedRoom.
    """
    from scipy.spatial import cKDTree

    from pcseg.data.synthetic import build_room, render_view, sample_room

    rng = np.random.default_rng(seed)
    scene = build_room(seed)
    camera = demo_camera(*cfg.image_size)
    confusions = object_confusions(scene, cfg.network, rng)
    fuser = Fuser(NUM_CLASSES, cfg.voxel_size, "bayes", palette=PALETTE)
    votes = Fuser(NUM_CLASSES, cfg.voxel_size, "vote")
    pixels = correct = 0
    for pose in demo_poses(scene.size, cfg.views_per_room, rng):
        view = render_view(scene, camera, pose)
        predicted, scores = simulate_2d_network(view, cfg.network, confusions, rng)
        surface = view["label"] >= 0
        pixels += int(surface.sum())
        correct += int((predicted[surface] == view["label"][surface]).sum())
        for target, color in ((fuser, view["color"]), (votes, None)):
            target.add_rgbd(color, view["depth"], scores, camera, pose, depth_scale=1.0, depth_trunc=20.0)
    cloud = fused_cloud(fuser, votes)
    # The voxels' true labels: those of the nearest point of a dense sample of the room.
    dense = sample_room(scene, truth_points or cfg.truth_points_per_room, seed=seed)
    _, nearest = cKDTree(dense["coord"]).query(cloud.points)
    return FusedRoom(cloud, np.asarray(dense["label"], dtype=np.int64)[nearest], fuser, pixels, correct)


def measure_network_confusion(cfg: From2DConfig) -> np.ndarray:
    """The simulated 2D network's confusion matrix on rendered views of validation rooms.

    What a user has of a real 2D network: its confusions measured on its own labelled
    validation images. Every object's whole-object confusion is drawn anew per room, so
    many rooms with a few views each sample them better than few rooms with many views.

    Args:
        cfg: confusion_rooms, confusion_views_per_room, image_size and the network's error model.

    Returns:
        confusion: (C, C) int64 pixel counts, rows true classes, columns predicted.
    """
    import torch

    from pcseg.data.synthetic import build_room, render_view
    from pcseg.metrics import ConfusionMatrix

    confusion = ConfusionMatrix(NUM_CLASSES)
    camera = demo_camera(*cfg.image_size)
    for seed in range(CONFUSION_SEED_START, CONFUSION_SEED_START + cfg.confusion_rooms):
        rng = np.random.default_rng(seed)
        scene = build_room(seed)
        confusions = object_confusions(scene, cfg.network, rng)
        for pose in demo_poses(scene.size, cfg.confusion_views_per_room, rng):
            view = render_view(scene, camera, pose)
            predicted, _ = simulate_2d_network(view, cfg.network, confusions, rng)
            surface = view["label"] >= 0
            confusion.update(torch.from_numpy(predicted[surface]), torch.from_numpy(view["label"][surface]))
    return confusion.matrix.numpy()


def _scores_on_points(predictions, masks, rooms):
    """The segmentation scores of per-room labels against the rooms' truth on the masked points.

    Args:
        predictions: per room, (N_i,) int64 labels.
        masks: per room, (N_i,) bool the points scored.
        rooms: dicts with ``label`` (N_i,) int64.

    Returns:
        scores: ``pcseg.metrics.SegmentationScores`` over every room's masked points.
    """
    import torch

    from pcseg.metrics import ConfusionMatrix

    confusion = ConfusionMatrix(NUM_CLASSES)
    for labels, mask, room in zip(predictions, masks, rooms):
        confusion.update(torch.from_numpy(labels[mask]), torch.from_numpy(np.asarray(room["label"])[mask]))
    return confusion.compute()


def _train_and_evaluate(cfg, rooms, heldout, progress) -> tuple[dict, dict]:
    from pcseg.checkpoint import model_from_checkpoint
    from pcseg.evaluate import evaluate_rooms
    from pcseg.train import train

    # The first training room doubles as the validation room: it only reports progress, the
    # last checkpoint is the one evaluated, and no held-out room is seen before the end.
    summary = train(cfg, rooms=(rooms, rooms[:1]), progress=progress)
    if summary["interrupted"]:
        raise KeyboardInterrupt
    model, _, _ = model_from_checkpoint(summary["last"], "cpu")
    result = evaluate_rooms(model, cfg, heldout, progress=progress)
    return summary, result


def run_from_2d_demo(
    out_dir: str | Path = "demo_out", overrides: Sequence[str] = (), seed: int = 0, progress: bool = True
) -> dict:
    """Runs ``pcseg demo --from-2d`` (see the module docstring).

    Args:
        out_dir: the output folder.
        overrides: ``--set`` overrides: from_2d.*, network.*, pseudolabel.* (`From2DConfig`)
            and the demo model's config (``pcseg.demo.rooms.demo_config``).
        seed: the training seed (``train.seed``).
        progress: report room generation, epochs and evaluation.

    Returns:
        metrics: what metrics_from_2d.json holds.

    Raises:
        ValueError: on a bad override.
    """

    from pcseg.data.classes import S3DIS_CLASS_NAMES
    from pcseg.data.synthetic import generate_room
    from pcseg.demo.rooms import demo_config
    from pcseg.evaluate import scores_to_dict
    from pcseg.utils.progress import progress as progress_over

    start = time.perf_counter()
    load_start = os.getloadavg()
    config, train_overrides = split_overrides(overrides)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    rooms = [
        fuse_room(k, config)
        for k in progress_over(
            range(config.train_rooms), desc="rendering and fusing training rooms", unit="room", enabled=progress
        )
    ]
    pixel_accuracy = sum(room.correct_pixels for room in rooms) / max(1, sum(room.pixels for room in rooms))
    pooled = FusedCloud(
        *(np.concatenate([getattr(room.cloud, f.name) for room in rooms]) for f in dataclasses.fields(FusedCloud))
    )
    pooled_truth = np.concatenate([room.truth for room in rooms])
    report = threshold_report(pooled, config.thresholds, pooled_truth)
    sweep = []
    for agreement in AGREEMENT_SWEEP:
        swept = dataclasses.replace(config.thresholds, min_agreement=agreement)
        entry = threshold_report(pooled, swept, pooled_truth)["all"]
        sweep.append({"min_agreement": agreement, "coverage": entry["coverage"], "accuracy": entry["accuracy"]})
    confusion = measure_network_confusion(config)
    confusion_path = out_dir / "network_confusion.npy"
    with atomic_path(confusion_path) as tmp:
        np.save(tmp, confusion)
    fuse_s = time.perf_counter() - t
    print(
        f"[from-2d] {config.train_rooms} training rooms x {config.views_per_room} views: simulated 2D network "
        f"pixel accuracy {pixel_accuracy:.3f}; fused voxels {report['voxels']:,} (label accuracy "
        f"{report['fused']['accuracy']}); pseudo-labelled {report['all']['coverage']:.1%} of them (label accuracy "
        f"{report['all']['accuracy']}); its confusion matrix measured on {config.confusion_rooms} other rooms; "
        f"{fuse_s:.1f} s",
        flush=True,
    )

    t = time.perf_counter()
    heldout_seeds = [100_000 + k for k in range(config.heldout_rooms)]
    heldout = [generate_room(s, config.eval_points_per_room) for s in heldout_seeds]
    queries = [
        fuse_room(room_seed, config, 1).fuser.query(room["coord"]) for room_seed, room in zip(heldout_seeds, heldout)
    ]
    painted_masks = [query.known for query in queries]
    covered, total = sum(int(known.sum()) for known in painted_masks), sum(len(known) for known in painted_masks)
    painted_scores = _scores_on_points([query.labels for query in queries], painted_masks, heldout)
    print(
        f"[from-2d] held-out rooms painted and fused in {time.perf_counter() - t:.1f} s: coverage "
        f"{covered / total:.3f}, mIoU {painted_scores.miou:.3f} on the covered points",
        flush=True,
    )

    runs = {}
    correction = [f"train.label_transition={confusion_path}"] if config.noise_correction else []
    for name, labels, run_overrides in (
        ("pseudo", [pseudo_labels(room.cloud, config.thresholds) for room in rooms], correction),
        ("supervised", [room.truth for room in rooms], []),
    ):
        cfg = demo_config(
            out_dir,
            [
                f"train.seed={seed}",
                f"train.time_budget_s={config.time_budget_s}",
                "data.ignore_index=-1",
                *run_overrides,
                *train_overrides,
                f"train.out_dir={out_dir / f'run_{name}'}",
            ],
        )
        train_rooms = [
            {"coord": room.cloud.points, "color": room.cloud.colors, "label": room_labels}
            for room, room_labels in zip(rooms, labels)
        ]
        summary, result = _train_and_evaluate(cfg, train_rooms, heldout, progress)
        runs[name] = {
            "miou": float(result["scores"].miou),
            "miou_on_painted_points": float(_scores_on_points(result["predictions"], painted_masks, heldout).miou),
            "accuracy": float(result["scores"].overall_accuracy),
            "iou": scores_to_dict(result["scores"], S3DIS_CLASS_NAMES)["iou"],
            "epochs": summary["epochs"],
            "train_s": summary["train_s"],
        }
        print(
            f"[from-2d] {name} model: {summary['epochs']} epochs in {summary['train_s']:.1f} s; held-out mIoU "
            f"{runs[name]['miou']:.3f}, OA {runs[name]['accuracy']:.3f}; {runs[name]['miou_on_painted_points']:.3f} "
            "on the points the painted labels cover",
            flush=True,
        )

    painted_miou, pseudo_miou, supervised_miou = painted_scores.miou, runs["pseudo"]["miou"], runs["supervised"]["miou"]
    targets = {
        "pseudo_vs_painted": pseudo_miou >= painted_miou + 0.05,
        "pseudo_vs_supervised": pseudo_miou >= 0.85 * supervised_miou,
    }
    metrics = {
        "painted_miou": round(float(painted_miou), 4),
        "painted_coverage": round(covered / total, 4),
        "painted_accuracy": round(float(painted_scores.overall_accuracy), 4),
        "painted_iou": scores_to_dict(painted_scores, S3DIS_CLASS_NAMES)["iou"],
        "pseudo_miou": round(pseudo_miou, 4),
        "supervised_miou": round(supervised_miou, 4),
        "pseudo_miou_on_painted_points": round(runs["pseudo"]["miou_on_painted_points"], 4),
        "supervised_miou_on_painted_points": round(runs["supervised"]["miou_on_painted_points"], 4),
        "targets_met": targets,
        "models": runs,
        "pixel_accuracy_2d": round(pixel_accuracy, 4),
        "network_confusion": confusion.tolist(),
        "noise_correction": config.noise_correction,
        "pseudo_labels": report,
        "agreement_sweep": sweep,
        "config": dataclasses.asdict(config),
        "cpu_count": os.cpu_count(),
        "load_average_start": [round(v, 2) for v in load_start],
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        "total_s": round(time.perf_counter() - start, 1),
    }
    atomic_write_file(out_dir / "metrics_from_2d.json", json.dumps(metrics, indent=2, default=float))
    verdict = "reached" if all(targets.values()) else "NOT reached"
    print(
        f"[from-2d] held-out mIoU: painted labels {painted_miou:.3f} (coverage {covered / total:.1%}), pseudo-label "
        f"model {pseudo_miou:.3f}, supervised model {supervised_miou:.3f}; target (pseudo >= painted + 0.05 and "
        f">= 0.85 x supervised) {verdict}; load average {load_start[0]:.1f} on {os.cpu_count()} cores; total "
        f"{metrics['total_s']:.0f} s; {out_dir / 'metrics_from_2d.json'}",
        flush=True,
    )
    return metrics
