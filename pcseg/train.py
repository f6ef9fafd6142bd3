"""Training: block pools in memory, per-point inputs, the loop, checkpoints, logs, DDP.

    cfg = load_config("configs/pointnet_synthetic.yaml")
    summary = train(cfg)                       # writes cfg.train.out_dir/{last,best}.pt, logs

``torchrun --nproc_per_node=N -m pcseg train --config C`` runs the same function under
DistributedDataParallel (gloo on CPU, NCCL on CUDA) and follows the single-process run whose
batch is the global batch ``N * train.batch_size``: every rank builds the same block pool and
draws the same permutation from the shared shuffle generator, which is cut into global
batches; rank ``r`` takes the ``r``-th contiguous ``batch_size`` slice of each, so global batch
``s`` is the single-process batch ``s``. (Not ``DistributedSampler``: it reseeds from the
epoch number, pads the last batch and strides its indices, while this keeps the one
generator whose state the checkpoint stores, drops the remainder like the single process and
keeps each global batch in the single process's order.) Batch-norm statistics are
synchronised over the ranks (``pcseg.models.layers.MaskedBatchNorm``), the loss is normalised
by the global batch's weight, gradients and validation confusion matrices are summed over
ranks and only rank 0 writes.

Checkpoints (``last.pt`` every epoch, ``best.pt`` on a new best validation mIoU) are written
to a temporary file and moved with ``os.replace``, so a crash never leaves a torn file. They
hold the model, optimiser, schedule and gradient-scaler states, the epoch and the steps done
within it, the RNG states, the history and the resolved config; they contain only tensors and
plain Python values, so they load with ``torch.load(weights_only=True)``. Ctrl-C saves
``last.pt`` at the last finished step (the shuffle generator as at the start of its epoch, the
other RNGs as after that step), so ``--resume`` redraws the epoch's order and augmentation
and continues with the next step exactly as the uninterrupted run would.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from pcseg import ops
from pcseg.config import Config, DataConfig, config_from_dict, config_to_dict, save_config
from pcseg.data import generate_room, random_block
from pcseg.losses import (class_weights_from_counts, cross_entropy_loss, feature_transform_regularizer, focal_loss,
                          lovasz_softmax_loss, soft_dice_loss, tversky_loss)
from pcseg.metrics import ConfusionMatrix
from pcseg.models import FEATURE_TRANSFORM_WEIGHT, ACNNSeg, PointNetSeg, acnn_block_preset, build_model

__all__ = ["input_channels", "block_inputs", "geometric_features", "BlockPool", "build_block_pool",
           "load_rooms", "build_model_from_config", "forward_model", "WarmupCosine", "train",
           "load_checkpoint", "model_from_checkpoint", "CheckpointMismatchError", "autocast_dtype",
           "scores_without_ignored", "init_distributed"]

CHECKPOINT_FORMAT = 1

SET_LOSSES = {"dice": soft_dice_loss, "tversky": tversky_loss, "lovasz": lovasz_softmax_loss}


# ----------------------------------------------------------------------------- inputs
def input_channels(data: DataConfig) -> int:
    """Per-point feature channels the model sees besides xyz."""
    return 3 * data.use_color + 3 * data.room_coords + 7 * data.geometric_features


def geometric_features(xyz: torch.Tensor, k: int) -> torch.Tensor:
    """Local geometry of every point from its ``k`` nearest neighbours: ``xyz (B, P, 3)`` ->
    ``(B, P, 7)`` float32 = unit normal (3, ``pcseg.ops.estimate_normals``, oriented to +z),
    surface variation ``l0 / (l0 + l1 + l2)`` of the neighbourhood covariance's eigenvalues,
    scaled by 3 to [0, 1], and the offset from the neighbourhood centroid in decimetres (3)."""
    xyz = xyz.float()
    k = min(k, xyz.shape[1])
    _, idx = ops.knn(xyz, xyz, k)
    neighbours = ops.group_points(xyz, idx)  # (B, P, k, 3)
    centroid = neighbours.mean(2)
    centred = neighbours - centroid[:, :, None]
    covariance = centred.transpose(-1, -2) @ centred / k
    eigenvalues = torch.linalg.eigvalsh(covariance.double()).float()  # ascending
    variation = 3.0 * eigenvalues[..., :1] / eigenvalues.sum(-1, keepdim=True).clamp_min(1e-12)
    normals = ops.estimate_normals(xyz, k)
    return torch.cat([normals, variation, 10.0 * (xyz - centroid)], dim=-1)


def block_inputs(block_features: torch.Tensor, data: DataConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """PointNet block features ``(B, P, 9)`` (``pcseg.data.blocks``: block xyz, rgb,
    room-normalised xyz) -> model inputs ``points (B, P, 3)`` and ``features (B, P, C)``
    (``C = input_channels(data)``; None when 0) in the order rgb, room xyz, geometry."""
    points = block_features[..., 0:3].float().contiguous()
    parts = []
    if data.use_color:
        parts.append(block_features[..., 3:6].float())
    if data.room_coords:
        parts.append(block_features[..., 6:9].float())
    if data.geometric_features:
        parts.append(geometric_features(points, data.neighbours))
    return points, (torch.cat(parts, -1).contiguous() if parts else None)


def _geometry_offset(data: DataConfig) -> int:
    return 3 * data.use_color + 3 * data.room_coords


def rotate_inputs(points: torch.Tensor, features: torch.Tensor | None, data: DataConfig,
                  angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rotates blocks about z by ``angles (B,)`` (radians): xy of the points and, when present,
    of the normals and centroid offsets (they are vectors; the other channels are invariant)."""
    c, s = torch.cos(angles)[:, None], torch.sin(angles)[:, None]

    def rot(v):
        x, y = v[..., 0], v[..., 1]
        return torch.stack([c * x - s * y, s * x + c * y, v[..., 2]], -1)

    points = rot(points)
    if features is not None and data.geometric_features:
        g = _geometry_offset(data)
        features = torch.cat([features[..., :g], rot(features[..., g:g + 3]), features[..., g + 3:g + 4],
                              rot(features[..., g + 4:g + 7])], -1)
    return points, features


# ----------------------------------------------------------------------------- data
@dataclass
class BlockPool:
    """Training or validation blocks kept in memory: ``points (K, P, 3)``, ``features (K, P, C)``
    (or None), ``label (K, P) int64``."""

    points: torch.Tensor
    features: torch.Tensor | None
    label: torch.Tensor

    def __len__(self) -> int:
        return len(self.points)


class LazyRooms(Sequence):
    """Rooms (or scans) read from disk one at a time when indexed: every consumer (cutting
    blocks, whole-room evaluation) walks them in order, so only one is in memory at once."""

    def __init__(self, count: int, read):
        self._count, self._read = count, read

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> dict:
        if not -self._count <= index < self._count:
            raise IndexError(f"room index {index} is outside 0..{self._count - 1}")
        return self._read(index % self._count)


def load_rooms(data: DataConfig, split: str, progress: bool = False) -> Sequence[dict]:
    """The rooms (or scans) of a split as dicts with coord (N, 3), color (N, 3), label (N,).

    Procedural rooms are generated now (``progress`` shows a bar); S3DIS rooms and
    SemanticKITTI scans come back as a `LazyRooms` that reads each when it is used, so a data
    set larger than memory can be cut into blocks or evaluated."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be train or val, got {split!r}")
    if data.dataset == "synthetic":
        count, start = (data.train_rooms, data.train_seed_start) if split == "train" else \
            (data.val_rooms, data.val_seed_start)
        bar = tqdm(range(count), desc=f"generating {split} rooms", disable=not progress, leave=False)
        return [generate_room(start + i, data.points_per_room) for i in bar]
    if data.dataset == "s3dis":
        from pcseg.data import S3DISRooms
        rooms = S3DISRooms(data.root, split="train" if split == "train" else "test", test_area=data.test_area)
        return LazyRooms(len(rooms), rooms.__getitem__)
    from pcseg.data.kitti import SemanticKittiConfig, SemanticKITTIScans
    label_config = SemanticKittiConfig.from_yaml(data.label_config)
    scans = SemanticKITTIScans(data.root, label_config, split="train" if split == "train" else "valid")
    kept = range(0, len(scans), data.scan_stride)

    def read_scan(i: int) -> dict:
        scan = scans[kept[i]]
        # LiDAR has no colour: remission repeated stands in for rgb
        intensity = np.asarray(scan["remission"], dtype=np.float32).clip(0, 1)
        return {"coord": np.asarray(scan["coord"], dtype=np.float32),
                "color": np.repeat(intensity[:, None], 3, 1), "label": scan["label"]}

    return LazyRooms(len(kept), read_scan)


def build_block_pool(rooms: list[dict], data: DataConfig, blocks_per_room: int, seed: int,
                     chunk: int = 64, progress: bool = False, desc: str = "cutting blocks") -> BlockPool:
    """Cuts ``blocks_per_room`` random blocks (``pcseg.data.random_block``) from every room and
    computes their model inputs once, so the training loop only indexes tensors."""
    rng = np.random.default_rng(seed)
    features9, labels = [], []
    for room in tqdm(rooms, desc=desc, disable=not progress, leave=False):
        # column-major coordinates: the per-block column scans and min/max run 10x faster
        room = {**room, "coord": np.asfortranarray(room["coord"])}
        for _ in range(blocks_per_room):
            block = random_block(room, rng, data.block_size, data.num_points)
            features9.append(block["features"])
            labels.append(block["label"])
    features9 = torch.from_numpy(np.stack(features9))
    points, features = [], []
    for start in range(0, len(features9), chunk):
        p, f = block_inputs(features9[start:start + chunk], data)
        points.append(p)
        features.append(f)
    return BlockPool(torch.cat(points), torch.cat(features) if features[0] is not None else None,
                     torch.from_numpy(np.stack(labels)).long())


# ----------------------------------------------------------------------------- model
def build_model_from_config(cfg: Config) -> torch.nn.Module:
    kwargs = {"num_classes": cfg.data.num_classes, "in_channels": input_channels(cfg.data),
              "width_multiplier": cfg.model.width_multiplier}
    if cfg.model.block_preset:
        kwargs.update(acnn_block_preset(cfg.data.num_points))
    kwargs.update(cfg.model.options)
    return build_model(cfg.model.name, **kwargs)


def forward_model(model: torch.nn.Module, points: torch.Tensor, features: torch.Tensor | None,
                  data: DataConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(B, C, P)`` and an auxiliary loss term (PointNet's feature-transform regulariser, else 0)."""
    core = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    if isinstance(core, ACNNSeg) and data.geometric_features:
        g = _geometry_offset(data)
        return model(points, features, normals=features[..., g:g + 3]), points.new_zeros(())
    if isinstance(core, PointNetSeg) and core.encoder.feature_tnet is not None and core.training:
        logits, aux = model(points, features, return_aux=True)
        return logits, FEATURE_TRANSFORM_WEIGHT * feature_transform_regularizer(aux["feature_transform"])
    return model(points, features), points.new_zeros(())


def cpu_has_native_bf16() -> bool:
    """True where the CPU executes bf16 matrix maths natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None: full float32)."""
    if amp == "none":
        return None
    if amp == "fp16":
        return torch.float16 if device.type == "cuda" else None
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None


# ----------------------------------------------------------------------------- schedule
class WarmupCosine:
    """Linear warm-up over ``warmup_steps`` then cosine decay to ``min_ratio * base_lr`` at
    ``total_steps``; sets the optimiser's learning rates on every ``step()``. Its state is
    plain numbers, so ``total_steps`` can be changed (time-budgeted runs) and saved exactly."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup_steps: int, total_steps: int,
                 min_ratio: float = 0.01):
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(1, int(total_steps))
        self.min_ratio = min_ratio
        self.step_count = 0
        self._apply()

    def lr(self) -> float:
        t = self.step_count
        if t < self.warmup_steps:
            return self.base_lr * (t + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (t - self.warmup_steps) / span)
        return self.base_lr * (self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr()

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"base_lr": self.base_lr, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "min_ratio": self.min_ratio, "step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        for key in ("base_lr", "warmup_steps", "total_steps", "min_ratio", "step_count"):
            setattr(self, key, state[key])
        self._apply()


# ----------------------------------------------------------------------------- checkpoints
class CheckpointMismatchError(ValueError):
    """A checkpoint made for another model or class count than the one asked for."""


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Loads a pcseg checkpoint with ``weights_only=True``; clear errors for missing/foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT or "model" not in checkpoint:
        raise ValueError(f"{path} is not a pcseg checkpoint (format {CHECKPOINT_FORMAT})")
    return checkpoint


def _check_compatible(checkpoint: dict, cfg: Config, path) -> None:
    saved = config_from_dict(checkpoint["config"])
    if saved.model.name != cfg.model.name:
        raise CheckpointMismatchError(
            f"checkpoint {path} holds model {saved.model.name!r}, the config asks for {cfg.model.name!r}")
    if saved.data.num_classes != cfg.data.num_classes:
        raise CheckpointMismatchError(
            f"checkpoint {path} was trained for {saved.data.num_classes} classes, the config asks for "
            f"{cfg.data.num_classes}")
    if input_channels(saved.data) != input_channels(cfg.data) or saved.model.width_multiplier != cfg.model.width_multiplier:
        raise CheckpointMismatchError(
            f"checkpoint {path} has {input_channels(saved.data)} input channels and width "
            f"{saved.model.width_multiplier}, the config {input_channels(cfg.data)} and {cfg.model.width_multiplier}")


def model_from_checkpoint(path: str | Path, device="cpu", cfg: Config | None = None
                          ) -> tuple[torch.nn.Module, Config, dict]:
    """Builds the checkpoint's model (in eval mode on ``device``) from its own config.

    With ``cfg`` given, raises ``CheckpointMismatchError`` when the checkpoint's model name,
    class count, input channels or width differ from it. Returns (model, config, checkpoint).
    """
    checkpoint = load_checkpoint(path)
    saved = config_from_dict(checkpoint["config"])
    if cfg is not None:
        _check_compatible(checkpoint, cfg, path)
    model = build_model_from_config(saved)
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), saved, checkpoint


# ----------------------------------------------------------------------------- logging
def _write_logs(run_dir: Path, history: list[dict]) -> None:
    with open(run_dir / "log.jsonl", "w") as handle:
        for row in history:
            handle.write(json.dumps(row) + "\n")
    keys = sorted({k for row in history for k in row}, key=lambda k: list(history[0]).index(k)
                  if k in history[0] else 99)
    with open(run_dir / "log.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def plot_training_curve(history: list[dict], path: Path) -> None:
    """Training loss and validation mIoU per epoch -> PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [row["train_loss"] for row in history], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    val = [(row["epoch"], row["val_miou"]) for row in history if row.get("val_miou") is not None]
    if val:
        ax2.plot(*zip(*val), "s-", color="tab:orange", label="val mIoU (blocks)")
    ax2.set_ylabel("mIoU")
    ax2.set_ylim(0, 1)
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- loop
def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> bool:
    """Initialises the process group when launched by torchrun (``WORLD_SIZE > 1``); returns
    whether it did. gloo on CPU, NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def scores_without_ignored(matrix: ConfusionMatrix, ignore_index: int):
    """``matrix.compute()``, with the ignored label's class (e.g. SemanticKITTI's 0 =
    unlabelled) left out of the means: its IoU is NaN and mIoU averages the other classes."""
    scores = matrix.compute()
    if 0 <= ignore_index < matrix.num_classes:
        iou = scores.iou.clone()
        iou[ignore_index] = float("nan")
        scores = dataclasses.replace(scores, iou=iou, miou=float(iou[~iou.isnan()].mean()) if (~iou.isnan()).any()
                                     else float("nan"))
    return scores


def _evaluate_pool(model, pool: BlockPool, cfg: Config, device, amp_dtype, rank: int, world: int) -> dict:
    model.eval()
    matrix = ConfusionMatrix(cfg.data.num_classes, ignore_index=cfg.data.ignore_index, device=device)
    with torch.no_grad():
        for start in range(rank * cfg.train.batch_size, len(pool), world * cfg.train.batch_size):
            sl = slice(start, start + cfg.train.batch_size)
            points = pool.points[sl].to(device)
            features = None if pool.features is None else pool.features[sl].to(device)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits, _ = forward_model(model, points, features, cfg.data)
            matrix.update(logits.float(), pool.label[sl].to(device))
    matrix.all_reduce()
    scores = scores_without_ignored(matrix, cfg.data.ignore_index)
    return {"val_miou": scores.miou, "val_oa": scores.overall_accuracy}


def train(cfg: Config, resume: str | Path | None = None, progress: bool = True,
          stop_after_epochs: int | None = None, rooms: tuple[list, list] | None = None) -> dict:
    """Trains ``cfg`` and writes the run folder ``cfg.train.out_dir``.

    resume: a ``last.pt`` to continue exactly where it stopped (same config required).
    stop_after_epochs: return after this many epochs of this call (tests of ``resume``).
    rooms: (train_rooms, val_rooms) already in memory (else ``load_rooms``).
    Returns a summary dict (epochs, best_miou, last/best checkpoint paths, seconds, history).
    Ctrl-C saves ``last.pt`` at the last finished step (``--resume`` continues with the next
    one, as the uninterrupted run would) and returns with ``summary["interrupted"] = True``.
    """
    started_distributed = init_distributed(cfg.train.device)
    rank, world = _dist_info()
    try:
        return _train(cfg, resume, progress and rank == 0, stop_after_epochs, rooms, rank, world)
    finally:
        if started_distributed:
            dist.destroy_process_group()


@contextlib.contextmanager
def _sigint_deferred():
    """Holds a Ctrl-C back until the block ends (then raises it), so it never lands between an
    optimiser update and the counters that record it: a checkpoint is always of a whole step.
    Only the main thread receives signals; elsewhere (or under a handler not set from Python)
    this does nothing."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    caught = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):
            previous(signal.SIGINT, caught[0])
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt


def _rng_state(device: torch.device) -> dict:
    """The global RNG states (dropout, anything drawn outside the shuffle generator)."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _batch_loss(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None, cfg: Config,
                world: int) -> torch.Tensor:
    """The training loss of ``logits (B, C, P)`` against ``label (B, P)``: the sum of the terms
    that ``train.loss`` names ("cross_entropy+lovasz"). A per-point term is the weighted mean
    over the batch. Under DDP, each rank's weighted sum divided by the whole global batch's
    weight, times the world size: DDP averages the gradients over the ranks, so they are those
    of the global batch's mean, as in one process (per-rank means would weigh every rank
    alike however many points or which classes it has)."""
    terms = [_loss_term(name, logits, label, weight, cfg, world) for name in cfg.train.loss.split("+")]
    return sum(terms[1:], terms[0])


def _loss_term(name: str, logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None, cfg: Config,
               world: int) -> torch.Tensor:
    if name in SET_LOSSES:
        # Set losses do not split into per-point sums: under DDP each rank's is that of its own
        # share of the batch, and DDP averages their gradients.
        return SET_LOSSES[name](logits, label, weight=weight, ignore_index=cfg.data.ignore_index)
    loss_fn = focal_loss if name == "focal" else cross_entropy_loss
    if world == 1:
        return loss_fn(logits, label, weight=weight, ignore_index=cfg.data.ignore_index)
    total = loss_fn(logits, label, weight=weight, ignore_index=cfg.data.ignore_index, reduction="sum")
    kept = label[label != cfg.data.ignore_index]
    mass = (torch.ones_like(kept, dtype=total.dtype) if weight is None else weight.to(total.dtype)[kept]).sum()
    dist.all_reduce(mass)  # a constant of the labels: no gradient flows through it
    return total * world / mass


def _train(cfg, resume, progress, stop_after_epochs, rooms, rank, world) -> dict:
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    device = torch.device(cfg.train.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    run_dir = Path(cfg.train.out_dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    torch.manual_seed(cfg.train.seed)
    t0 = time.perf_counter()
    if rooms is not None:
        train_rooms, val_rooms = rooms
    else:
        train_rooms, val_rooms = load_rooms(cfg.data, "train", progress), load_rooms(cfg.data, "val", progress)
    pool = build_block_pool(train_rooms, cfg.data, cfg.data.blocks_per_room, cfg.train.seed, progress=progress)
    val_pool = build_block_pool(val_rooms, cfg.data, cfg.data.val_blocks_per_room, cfg.train.seed + 1,
                                progress=progress, desc="cutting validation blocks") if val_rooms else None
    prepare_s = time.perf_counter() - t0

    model = build_model_from_config(cfg).to(device)
    counts = torch.bincount(pool.label[pool.label >= 0].flatten(), minlength=cfg.data.num_classes)
    weight = None if cfg.train.class_weights == "none" else \
        class_weights_from_counts(counts.clamp_min(1), cfg.train.class_weights).to(device)
    if cfg.train.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.train.lr, momentum=cfg.train.momentum,
                                    weight_decay=cfg.train.weight_decay, nesterov=True)
    steps_per_epoch = max(1, len(pool) // (cfg.train.batch_size * world))
    schedule = WarmupCosine(optimizer, cfg.train.lr, round(cfg.train.warmup_epochs * steps_per_epoch),
                            cfg.train.epochs * steps_per_epoch, cfg.train.min_lr_ratio)
    amp_dtype = autocast_dtype(cfg.train.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    shuffle = torch.Generator().manual_seed(cfg.train.seed)
    total_epochs, epoch, best_miou, history = cfg.train.epochs, 0, -1.0, []
    # the epoch in progress: steps done, [loss sum, correct, seen, steps] of this rank so far
    steps_done, epoch_stats = 0, [0.0, 0, 0, 0]
    if resume is not None:
        checkpoint = load_checkpoint(resume)
        _check_compatible(checkpoint, cfg, resume)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        schedule.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        shuffle.set_state(checkpoint["rng"]["shuffle"])
        if device.type == "cuda" and "cuda" in checkpoint["rng"]:
            torch.cuda.set_rng_state(checkpoint["rng"]["cuda"], device)
        epoch, best_miou = checkpoint["epoch"], checkpoint["best_miou"]
        total_epochs, history = checkpoint["total_epochs"], list(checkpoint["history"])
        steps_done = checkpoint.get("step", 0)
        epoch_stats = list(checkpoint.get("epoch_stats", epoch_stats))
    # what a checkpoint stores of the RNGs: the shuffle generator as at the start of the epoch
    # in progress (resume redraws its order and angles), the others as after the last step
    epoch_shuffle, step_rng = shuffle.get_state(), _rng_state(device)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    num_blocks = steps_per_epoch * cfg.train.batch_size * world

    def save(name: str) -> Path:
        state = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": schedule.state_dict(), "scaler": None if scaler is None else scaler.state_dict(),
                 "epoch": epoch, "step": steps_done, "epoch_stats": list(epoch_stats),
                 "total_epochs": total_epochs, "best_miou": best_miou, "rng": {**step_rng, "shuffle": epoch_shuffle},
                 "history": history, "config": config_to_dict(cfg), "model_name": cfg.model.name,
                 "num_classes": cfg.data.num_classes}
        path = run_dir / name
        _atomic_save(state, path)
        return path

    interrupted = best_unsaved = False
    train_start = time.perf_counter()
    epochs_this_call = steps_this_call = 0
    budget = cfg.train.time_budget_s
    calibration_steps = min(12, steps_per_epoch * cfg.train.epochs)
    pace_start = train_start
    try:
        while epoch < total_epochs:
            epoch_start = time.perf_counter()
            net.train()
            # every rank draws the same permutation; global batch s is its s-th run of
            # world * batch_size blocks and rank r takes the r-th batch_size slice of it
            order = torch.randperm(len(pool), generator=shuffle)[:num_blocks]
            order = order.view(steps_per_epoch, world, cfg.train.batch_size)[:, rank]
            angles_all = torch.rand(num_blocks, generator=shuffle).view(steps_per_epoch, world, -1)[:, rank] * 2 * math.pi
            # a resumed epoch skips the steps done before the interruption
            bar = tqdm(range(steps_done, steps_per_epoch), desc=f"epoch {epoch + 1}/{total_epochs}",
                       disable=not progress, leave=False, initial=steps_done, total=steps_per_epoch)
            steps_run = 0  # in this call: the pace of the time budget
            for step in bar:
                if schedule.step_count >= schedule.total_steps:
                    break  # a time-budgeted schedule ended inside this epoch
                idx = order[step]
                points, label = pool.points[idx], pool.label[idx]
                features = None if pool.features is None else pool.features[idx]
                if cfg.data.augment_rotate:
                    points, features = rotate_inputs(points, features, cfg.data, angles_all[step])
                points, label = points.to(device), label.to(device)
                features = None if features is None else features.to(device)
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    logits, aux_loss = forward_model(net, points, features, cfg.data)
                logits = logits.float()
                loss = _batch_loss(logits, label, weight, cfg, world) + aux_loss.float()
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                if cfg.train.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                with _sigint_deferred():
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    schedule.step()
                    with torch.no_grad():
                        valid = label != cfg.data.ignore_index
                        epoch_stats[0] += float(loss.detach()) * len(idx)
                        epoch_stats[1] += int((logits.argmax(1) == label)[valid].sum())
                        epoch_stats[2] += int(valid.sum())
                        epoch_stats[3] += 1
                    steps_done += 1
                    step_rng = _rng_state(device)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
                steps_run += 1
                steps_this_call += 1
                if steps_this_call == 2:
                    pace_start = time.perf_counter()  # the first steps are slower (allocation, caches)
                if budget > 0 and steps_this_call == calibration_steps and resume is None:
                    # fit the schedule to the budget at the pace of the steps after the first two
                    now = time.perf_counter()
                    pace = (now - pace_start) / max(1, calibration_steps - 2)
                    fit_steps = steps_this_call + int((budget - (now - train_start)) / pace)
                    fit = torch.tensor([max(calibration_steps, min(schedule.total_steps, fit_steps))])
                    if world > 1:
                        dist.broadcast(fit, 0)
                    schedule.total_steps = int(fit)
                    total_epochs = math.ceil(schedule.total_steps / steps_per_epoch)
                if budget > 0 and world == 1 and time.perf_counter() - train_start > budget:
                    schedule.total_steps = schedule.step_count  # slower than calibrated: stop at the budget
                    total_epochs = epoch + 1
            bar.close()
            if budget > 0 and resume is None and steps_run > 2 and schedule.step_count < schedule.total_steps:
                # re-fit the horizon at this epoch's pace (the machine may be busier or freer than
                # during the first steps); the cosine then ends when the budget does
                now = time.perf_counter()
                pace = (now - epoch_start) / steps_run
                fit_steps = schedule.step_count + int((budget - (now - train_start)) / pace)
                fit = torch.tensor([max(schedule.step_count, min(cfg.train.epochs * steps_per_epoch, fit_steps))])
                if world > 1:
                    dist.broadcast(fit, 0)
                schedule.total_steps = int(fit)
                total_epochs = max(epoch + 1, math.ceil(schedule.total_steps / steps_per_epoch))
            # under DDP a resumed epoch's steps before the interruption count rank 0's share only
            # (the checkpoint holds rank 0's sums); the mean below is still over the blocks counted
            stats = torch.tensor([*epoch_stats[:3], epoch_stats[3] * cfg.train.batch_size], dtype=torch.float64)
            if world > 1:
                dist.all_reduce(stats)
            row = {"epoch": epoch + 1, "train_loss": float(stats[0] / max(stats[3], 1)),
                   "train_acc": float(stats[1] / max(stats[2], 1)), "lr": schedule.lr(),
                   "epoch_s": time.perf_counter() - epoch_start, "val_miou": None, "val_oa": None}
            if val_pool is not None and ((epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == total_epochs):
                row.update(_evaluate_pool(model, val_pool, cfg, device, amp_dtype, rank, world))
            with _sigint_deferred():  # the epoch is finished all at once or not at all
                history.append(row)
                epoch += 1
                epochs_this_call += 1
                steps_done, epoch_stats = 0, [0.0, 0, 0, 0]
                epoch_shuffle, step_rng = shuffle.get_state(), _rng_state(device)
                if row["val_miou"] is not None and row["val_miou"] > best_miou:
                    best_miou, best_unsaved = row["val_miou"], rank == 0
            if best_unsaved:
                save("best.pt")
                best_unsaved = False
            if rank == 0:
                if epoch % cfg.train.checkpoint_every == 0 or epoch == total_epochs:
                    save("last.pt")
                _write_logs(run_dir, history)
                val_text = "" if row["val_miou"] is None else f" | val mIoU {row['val_miou']:.3f} OA {row['val_oa']:.3f}"
                print(f"epoch {epoch}/{total_epochs} | loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
                      f"lr {row['lr']:.2e} | {row['epoch_s']:.1f}s{val_text}", flush=True)
            if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
                break
    except KeyboardInterrupt:
        interrupted = True
        if rank == 0:
            if best_unsaved:  # interrupted while writing the new best
                save("best.pt")
            # the state after the last whole step: resume continues with the next one
            save("last.pt")
            print(f"\ninterrupted: saved {run_dir / 'last.pt'} at epoch {epoch} step {steps_done}; "
                  "continue with --resume", flush=True)
    if rank == 0 and history:
        _write_logs(run_dir, history)
        plot_training_curve(history, run_dir / "curve.png")
    if rank == 0 and not (run_dir / "best.pt").exists() and (run_dir / "last.pt").exists():
        # no validation split: the last weights are the best we know
        save("best.pt")
    return {"epochs": epoch, "best_miou": best_miou, "history": history, "interrupted": interrupted,
            "prepare_s": prepare_s, "train_s": time.perf_counter() - train_start,
            "last": str(run_dir / "last.pt"), "best": str(run_dir / "best.pt"),
            "amp": None if amp_dtype is None else str(amp_dtype).replace("torch.", "")}
