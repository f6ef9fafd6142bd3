"""Training: block pools in memory, the loop over named steps, checkpoints, logs, DDP.

    cfg = load_config("configs/pointnet_synthetic.yaml")
    summary = train(cfg)                       # writes cfg.train.out_dir/{last,best}.pt, logs

The loop (``_train``) is orchestration: ``_setup`` builds a `TrainRun` (the pools, model,
optimiser, schedule; what does not change while training), `TrainState` holds what does
(epoch, step, running sums, history, RNG states) and converts to and from checkpoints, and
each epoch calls ``_train_step`` per batch, ``TimeBudget`` to fit the schedule to
``train.time_budget_s``, ``_validate`` and ``_finish_epoch``. The model-input contract lives in
``pcseg.inputs`` and the checkpoint format in ``pcseg.checkpoint``; nothing in inference
imports this module (only the CLI's ``train`` and the demo do).

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

Before any room is generated or read and before the run folder is created, ``check_training``
checks what the config alone cannot: the device, the run folder's place, the data folder and
its class count, and the ``--resume`` checkpoint (loadable, same model). The run folder is then
locked (``run_folder_lock``: ``fcntl.flock`` on ``<out_dir>/.lock``, which the OS releases when
the process dies), so a second run on the same ``train.out_dir`` is refused at start.

Rooms with float64 coordinates (a map frame) are taken relative to their lowest corner in
float64 before their blocks are cut in float32 (the block features are relative to the room
anyway), so training sees the same blocks wherever the room lies.

Checkpoints (``last.pt`` every ``train.checkpoint_every`` epochs, ``best.pt`` on a new best
validation mIoU) are written atomically (``pcseg.checkpoint.atomic_save``), as are the logs. They hold the
model, optimiser, schedule and gradient-scaler states and the `TrainState`. Ctrl-C saves
``last.pt`` at the last finished step (the shuffle generator as at the start of its epoch, the
other RNGs as after that step), so ``--resume`` redraws the epoch's order and augmentation
and continues with the next step exactly as the uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import functools
import gc
import io
import json
import math
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from pcseg.checkpoint import CHECKPOINT_FORMAT, atomic_save, build_model_from_config, check_compatible, load_checkpoint
from pcseg.config import Config, DataConfig, config_to_dict, save_config
from pcseg.data import class_balanced_centres, random_block
from pcseg.data.loading import check_data, load_rooms
from pcseg.evaluate import scores_without_ignored
from pcseg.inputs import augment_lidar_inputs, block_inputs, input_normals, rotate_inputs
from pcseg.losses import (
    class_weights_from_counts,
    cross_entropy_loss,
    focal_loss,
    label_transition_from_confusion,
    lovasz_softmax_loss,
    noisy_label_cross_entropy_loss,
    soft_dice_loss,
    tversky_loss,
)
from pcseg.metrics import ConfusionMatrix
from pcseg.predict import autocast_dtype
from pcseg.utils.atomic import atomic_path, atomic_write, check_output_folder
from pcseg.utils.devices import check_device
from pcseg.utils.progress import progress as progress_bar

__all__ = [
    "BlockPool",
    "build_block_pool",
    "forward_model",
    "WarmupCosine",
    "TrainState",
    "train",
    "init_distributed",
    "check_training",
    "load_label_transition",
    "run_folder_lock",
    "RunFolderBusyError",
]

SET_LOSSES = {"dice": soft_dice_loss, "tversky": tversky_loss, "lovasz": lovasz_softmax_loss}


# ----------------------------------------------------------------------------- data
@dataclass
class BlockPool:
    """Training or validation blocks kept in memory with their model inputs.

    Args:
        points: (K, P, 3) float32 block coordinates.
        features: (K, P, C) float32 model features, or None.
        label: (K, P) int64.
    """

    points: torch.Tensor
    features: torch.Tensor | None
    label: torch.Tensor

    def __len__(self) -> int:
        return len(self.points)


def build_block_pool(
    rooms: Sequence[dict],
    data: DataConfig,
    blocks_per_room: int,
    seed: int,
    chunk: int = 64,
    progress: bool = False,
    desc: str = "cutting blocks",
) -> BlockPool:
    """Cuts random blocks from every room and computes their model inputs once.

    The training loop then only indexes tensors.

    Args:
        rooms: dicts with ``coord`` (N, 3) float32, or float64 (map coordinates: taken relative
            to the room's lowest corner in float64 first), ``color`` (N, 3), ``label`` (N,).
        data: the data section of the config (block size, points per block, inputs).
        blocks_per_room: blocks cut from each room (``pcseg.data.random_block``), centred as
            ``data.block_centres`` says.
        seed: the seed of the block centres and samples.
        chunk: blocks whose inputs are computed at once.
        progress: report the rooms done (``pcseg.utils.progress``).
        desc: the report's name.

    Returns:
        pool: the blocks, ``len(rooms) * blocks_per_room`` of them.
    """
    rng = np.random.default_rng(seed)
    features9, labels = [], []
    for room in progress_bar(rooms, desc=desc, unit="room", enabled=progress):
        coord = np.asarray(room["coord"])
        if coord.dtype == np.float64:  # a map frame: float32 must only see offsets within the room
            coord = (coord - coord.min(0)).astype(np.float32)
        # column-major coordinates: random_block scans one column at a time for every block
        room = {**room, "coord": np.asfortranarray(coord)}
        centre_cdf = (
            class_balanced_centres(room["label"], data.ignore_index) if data.block_centres == "class_balanced" else None
        )
        for _ in range(blocks_per_room):
            block = random_block(room, rng, data.block_size, data.num_points, centre_cdf=centre_cdf)
            features9.append(block["features"])
            labels.append(block["label"])
    features9 = torch.from_numpy(np.stack(features9))
    points, features = [], []
    for start in range(0, len(features9), chunk):
        p, f = block_inputs(features9[start : start + chunk], data)
        points.append(p)
        features.append(f)
    return BlockPool(
        torch.cat(points),
        torch.cat(features) if features[0] is not None else None,
        torch.from_numpy(np.stack(labels)).long(),
    )


def forward_model(
    model: torch.nn.Module, points: torch.Tensor, features: torch.Tensor | None, data: DataConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The one forward pass the trainer makes, in training and in validation.

    Args:
        model: a pcseg segmentation model, or its DistributedDataParallel wrapper.
        points: (B, P, 3) float32 block coordinates.
        features: (B, P, C) float32 model features, or None.
        data: the data section of the config (``pcseg.inputs`` gives the normals).

    Returns:
        logits: (B, num_classes, P).
        aux_loss: 0-d tensor, the model's auxiliary training loss (zero for most models).
    """
    logits, aux = model(points, features, normals=input_normals(features, data), return_aux=True)
    return logits, aux["loss"]


# ----------------------------------------------------------------------------- schedule
class WarmupCosine:
    """Linear warm-up, then cosine decay; sets the optimiser's learning rates on every ``step()``.

    Its state is plain numbers, so ``total_steps`` can be changed (time-budgeted runs) and
    saved exactly.

    Args:
        optimizer: the optimiser whose learning rates it sets.
        base_lr: the rate at the end of the warm-up.
        warmup_steps: steps of linear warm-up.
        total_steps: the step at which the cosine reaches ``min_ratio * base_lr``.
        min_ratio: the final rate as a fraction of ``base_lr``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        base_lr: float,
        warmup_steps: int,
        total_steps: int,
        min_ratio: float = 0.01,
    ):
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(1, int(total_steps))
        self.min_ratio = min_ratio
        self.step_count = 0
        self._apply()

    def lr(self) -> float:
        """The learning rate of the current step."""
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
        """Advances one step and sets the optimiser's rates."""
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict:
        """The schedule's plain-number state."""
        return {
            "base_lr": self.base_lr,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "min_ratio": self.min_ratio,
            "step_count": self.step_count,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restores a ``state_dict`` and sets the optimiser's rates."""
        for key in ("base_lr", "warmup_steps", "total_steps", "min_ratio", "step_count"):
            setattr(self, key, state[key])
        self._apply()


# ----------------------------------------------------------------------------- logs
def _write_logs(run_dir: Path, history: list[dict]) -> None:
    with atomic_write(run_dir / "log.jsonl") as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in history).encode())
    keys = sorted(
        {k for row in history for k in row}, key=lambda k: list(history[0]).index(k) if k in history[0] else 99
    )
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    with atomic_write(run_dir / "log.csv") as handle:
        handle.write(text.getvalue().encode())


def plot_training_curve(history: list[dict], path: Path) -> None:
    """Writes the training loss and validation mIoU per epoch as a PNG.

    Args:
        history: the log rows (``epoch``, ``train_loss``, ``val_miou``).
        path: the PNG to write.
    """
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- processes and signals
def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> bool:
    """Initialises the process group when launched by torchrun (``WORLD_SIZE > 1``).

    Args:
        device: ``train.device``: gloo on the CPU, NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``).

    Returns:
        started: whether this call initialised it (and the caller should destroy it).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


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


# ----------------------------------------------------------------------------- loss
def _batch_loss(
    logits: torch.Tensor,
    label: torch.Tensor,
    weight: torch.Tensor | None,
    cfg: Config,
    world: int,
    transition: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss of ``logits (B, C, P)`` against ``label (B, P)``: the sum of the terms
    that ``train.loss`` names ("cross_entropy+lovasz"). A per-point term is the weighted mean
    over the batch. Under DDP, each rank's weighted sum divided by the whole global batch's
    weight, times the world size: DDP averages the gradients over the ranks, so they are those
    of the global batch's mean, as in one process (per-rank means would weigh every rank
    alike however many points or which classes it has). ``transition (C, C)``: the labels'
    noise matrix (``train.label_transition``), which the cross-entropy is corrected for."""
    terms = [_loss_term(name, logits, label, weight, cfg, world, transition) for name in cfg.train.loss.split("+")]
    return sum(terms[1:], terms[0])


def _loss_term(
    name: str,
    logits: torch.Tensor,
    label: torch.Tensor,
    weight: torch.Tensor | None,
    cfg: Config,
    world: int,
    transition: torch.Tensor | None,
) -> torch.Tensor:
    if name in SET_LOSSES:
        # Set losses do not split into per-point sums: under DDP each rank's is that of its own
        # share of the batch, and DDP averages their gradients.
        return SET_LOSSES[name](logits, label, weight=weight, ignore_index=cfg.data.ignore_index)
    if name == "focal":
        loss_fn = focal_loss
    elif transition is not None:
        loss_fn = functools.partial(noisy_label_cross_entropy_loss, transition=transition)
    else:
        loss_fn = cross_entropy_loss
    if world == 1:
        return loss_fn(logits, label, weight=weight, ignore_index=cfg.data.ignore_index)
    total = loss_fn(logits, label, weight=weight, ignore_index=cfg.data.ignore_index, reduction="sum")
    kept = label[label != cfg.data.ignore_index]
    mass = (torch.ones_like(kept, dtype=total.dtype) if weight is None else weight.to(total.dtype)[kept]).sum()
    dist.all_reduce(mass)  # a constant of the labels: no gradient flows through it
    return total * world / mass


# ----------------------------------------------------------------------------- run and state
@dataclass
class TrainRun:
    """What a training call builds once and does not change while it trains."""

    cfg: Config
    device: torch.device
    rank: int
    world: int
    run_dir: Path
    pool: BlockPool
    val_pool: BlockPool | None
    model: torch.nn.Module
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosine
    scaler: torch.amp.GradScaler | None
    amp_dtype: torch.dtype | None
    weight: torch.Tensor | None  # class weights of the loss
    transition: torch.Tensor | None  # the labels' noise matrix (train.label_transition)
    shuffle: torch.Generator  # block order and rotation angles, shared by the ranks
    steps_per_epoch: int
    prepare_s: float

    def save(self, state: TrainState, name: str) -> None:
        """Writes the run's checkpoint ``name`` (``last.pt`` / ``best.pt``) into the run folder."""
        atomic_save(
            {
                "format": CHECKPOINT_FORMAT,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(),
                "scaler": None if self.scaler is None else self.scaler.state_dict(),
                **state.to_checkpoint(),
                "config": config_to_dict(self.cfg),
                "model_name": self.cfg.model.name,
                "num_classes": self.cfg.data.num_classes,
            },
            self.run_dir / name,
        )


def _new_epoch_stats() -> list:
    return [0.0, 0, 0, 0]


@dataclass
class TrainState:
    """What changes while training; all of it but the last field goes into a checkpoint.

    Args:
        total_epochs: the epochs the run will train (a time budget may lower it).
        epoch: epochs finished.
        step: steps finished within the epoch in progress.
        epoch_stats: this rank's loss sum, correct points, counted points and steps of the epoch
            in progress.
        best_miou: the best validation mIoU so far (-1 before any).
        history: one log row per finished epoch.
        rng: the global RNG states after the last finished step (``torch``, ``cuda``) and the
            shuffle generator's as at the start of the epoch in progress (``shuffle``), from
            which resume redraws that epoch's order and angles.
        best_unsaved: a new best whose ``best.pt`` is not written yet (not saved).
    """

    total_epochs: int
    epoch: int = 0
    step: int = 0
    epoch_stats: list = field(default_factory=_new_epoch_stats)
    best_miou: float = -1.0
    history: list = field(default_factory=list)
    rng: dict = field(default_factory=dict)
    best_unsaved: bool = False

    def to_checkpoint(self) -> dict:
        """The checkpoint entries of the state (``pcseg.checkpoint`` lists them)."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "epoch_stats": list(self.epoch_stats),
            "total_epochs": self.total_epochs,
            "best_miou": self.best_miou,
            "rng": dict(self.rng),
            "history": self.history,
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> TrainState:
        """The state a checkpoint holds."""
        return cls(
            total_epochs=checkpoint["total_epochs"],
            epoch=checkpoint["epoch"],
            step=checkpoint.get("step", 0),
            epoch_stats=list(checkpoint.get("epoch_stats", _new_epoch_stats())),
            best_miou=checkpoint["best_miou"],
            history=list(checkpoint["history"]),
            rng=dict(checkpoint["rng"]),
        )


def _setup(
    cfg: Config, rooms: tuple[Sequence[dict], Sequence[dict]] | None, progress: bool, rank: int, world: int
) -> TrainRun:
    """Seeds, writes the run folder's config, builds the block pools, model, optimiser and schedule
    (the folder exists: ``run_folder_lock`` created it)."""
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
    start = time.perf_counter()
    if rooms is not None:
        train_rooms, val_rooms = rooms
    else:
        train_rooms, val_rooms = load_rooms(cfg.data, "train", progress), load_rooms(cfg.data, "val", progress)
    pool = build_block_pool(train_rooms, cfg.data, cfg.data.blocks_per_room, cfg.train.seed, progress=progress)
    val_pool = (
        build_block_pool(
            val_rooms,
            cfg.data,
            cfg.data.val_blocks_per_room,
            cfg.train.seed + 1,
            progress=progress,
            desc="cutting validation blocks",
        )
        if val_rooms
        else None
    )
    prepare_s = time.perf_counter() - start

    model = build_model_from_config(cfg).to(device)
    counts = torch.bincount(pool.label[pool.label >= 0].flatten(), minlength=cfg.data.num_classes)
    weight = (
        None
        if cfg.train.class_weights == "none"
        else class_weights_from_counts(counts.clamp_min(1), cfg.train.class_weights).to(device)
    )
    transition = (
        load_label_transition(cfg.train.label_transition, cfg.data.num_classes).to(device)
        if cfg.train.label_transition
        else None
    )
    optimizer = build_optimizer(cfg, model)
    steps_per_epoch = max(1, len(pool) // (cfg.train.batch_size * world))
    schedule = WarmupCosine(
        optimizer,
        cfg.train.lr,
        round(cfg.train.warmup_epochs * steps_per_epoch),
        cfg.train.epochs * steps_per_epoch,
        cfg.train.min_lr_ratio,
    )
    amp_dtype = autocast_dtype(cfg.train.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    net = model
    if world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return TrainRun(
        cfg,
        device,
        rank,
        world,
        run_dir,
        pool,
        val_pool,
        model,
        net,
        optimizer,
        schedule,
        scaler,
        amp_dtype,
        weight,
        transition,
        torch.Generator().manual_seed(cfg.train.seed),
        steps_per_epoch,
        prepare_s,
    )


def _start_state(run: TrainRun, checkpoint: dict | None) -> TrainState:
    """A fresh state, or the one of the ``--resume`` checkpoint (checked by ``check_training``)
    with the run's model, optimiser, schedule and RNGs restored."""
    if checkpoint is None:
        return TrainState(
            total_epochs=run.cfg.train.epochs, rng={**_rng_state(run.device), "shuffle": run.shuffle.get_state()}
        )
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.schedule.load_state_dict(checkpoint["scheduler"])
    if run.scaler is not None and checkpoint.get("scaler"):
        run.scaler.load_state_dict(checkpoint["scaler"])
    state = TrainState.from_checkpoint(checkpoint)
    torch.set_rng_state(state.rng["torch"])
    run.shuffle.set_state(state.rng["shuffle"])
    if run.device.type == "cuda" and "cuda" in state.rng:
        torch.cuda.set_rng_state(state.rng["cuda"], run.device)
    # the restored states become the ones a checkpoint stores until the next step
    state.rng = {**_rng_state(run.device), "shuffle": run.shuffle.get_state()}
    return state


# ----------------------------------------------------------------------------- time budget
class TimeBudget:
    """Fits the cosine schedule's horizon to ``train.time_budget_s`` (0: no budget).

    A fresh run measures its pace over its first steps (after the first two, which are slower:
    allocation, caches) and sets the horizon to the steps that fit in the budget; after every
    epoch it re-fits at that epoch's pace (the machine may be busier or freer than during the
    first steps), so the cosine ends when the budget does. A resumed run keeps the horizon its
    checkpoint holds. A single process that still overruns stops at the budget.

    Args:
        run: the training run (its schedule is changed).
        resumed: whether the run continues a checkpoint.
    """

    def __init__(self, run: TrainRun, resumed: bool):
        self.run = run
        self.seconds = run.cfg.train.time_budget_s
        self.fits = self.seconds > 0 and not resumed
        self.start = self.pace_start = time.perf_counter()
        self.steps = 0  # steps of this call
        self.calibration_steps = min(12, run.steps_per_epoch * run.cfg.train.epochs)

    def after_step(self, state: TrainState) -> None:
        """Calibrates after the first steps of the call; stops a single process at the budget."""
        self.steps += 1
        if self.steps == 2:
            self.pace_start = time.perf_counter()
        if self.fits and self.steps == self.calibration_steps:
            # the first fit only shortens the horizon (an epoch's re-fit may have set it already)
            self._fit(state, self.pace_start, max(1, self.calibration_steps - 2), self.run.schedule.total_steps)
        if self.seconds > 0 and self.run.world == 1 and time.perf_counter() - self.start > self.seconds:
            self.run.schedule.total_steps = self.run.schedule.step_count
            state.total_epochs = state.epoch + 1

    def after_epoch(self, state: TrainState, epoch_start: float, steps_run: int) -> None:
        """Re-fits the horizon at the pace of the epoch that just ran ``steps_run`` steps."""
        schedule = self.run.schedule
        if self.fits and steps_run > 2 and schedule.step_count < schedule.total_steps:
            self._fit(state, epoch_start, steps_run, self.run.cfg.train.epochs * self.run.steps_per_epoch)

    def _fit(self, state: TrainState, since: float, steps: int, most: int) -> None:
        """Sets the horizon to the steps that fit in the rest of the budget at the pace of the
        ``steps`` steps run since ``since`` (at least the steps done, at most ``most``); rank
        0's fit holds for every rank."""
        run, schedule = self.run, self.run.schedule
        now = time.perf_counter()
        pace = (now - since) / steps
        fit_steps = schedule.step_count + int((self.seconds - (now - self.start)) / pace)
        fit = torch.tensor([max(schedule.step_count, min(most, fit_steps))])
        if run.world > 1:
            dist.broadcast(fit, 0)
        schedule.total_steps = int(fit)
        state.total_epochs = max(state.epoch + 1, math.ceil(schedule.total_steps / run.steps_per_epoch))


# ----------------------------------------------------------------------------- steps
def _epoch_batches(run: TrainRun) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """This rank's block indices ``(steps, batch)``, rotation angles ``(steps, batch)`` and the
    LiDAR augmentation's uniform draws ``(steps, batch, 2)`` (None when it is off) of the epoch,
    drawn from the shuffle generator: every rank draws the same permutation; global batch ``s``
    is its ``s``-th run of ``world * batch_size`` blocks and rank ``r`` takes the ``r``-th
    ``batch_size`` slice of it."""
    batch, world = run.cfg.train.batch_size, run.world
    num_blocks = run.steps_per_epoch * batch * world
    order = torch.randperm(len(run.pool), generator=run.shuffle)[:num_blocks]
    order = order.view(run.steps_per_epoch, world, batch)[:, run.rank]
    angles = torch.rand(num_blocks, generator=run.shuffle).view(run.steps_per_epoch, world, -1)[:, run.rank]
    draws = None
    if run.cfg.data.augment_intensity > 0 or run.cfg.data.augment_height > 0:
        # drawn only when asked for, so runs without them keep their random streams
        draws = torch.rand(num_blocks, 2, generator=run.shuffle).view(run.steps_per_epoch, world, -1, 2)[:, run.rank]
    return order, angles * 2 * math.pi, draws


def _train_step(
    run: TrainRun, state: TrainState, idx: torch.Tensor, angles: torch.Tensor, draws: torch.Tensor | None
) -> float:
    """One optimiser step on the pool's blocks ``idx``; returns the batch's loss.

    ``angles``: (batch,) rotation angles; ``draws``: (batch, 2) the LiDAR augmentation's
    uniform draws in [0, 1) (``pcseg.inputs.augment_lidar_inputs``), or None.

    The update and the counters that record it happen together or not at all under Ctrl-C,
    so a checkpoint always holds whole steps."""
    cfg, device, pool = run.cfg, run.device, run.pool
    points, label = pool.points[idx], pool.label[idx]
    features = None if pool.features is None else pool.features[idx]
    if cfg.data.augment_rotate:
        points, features = rotate_inputs(points, features, cfg.data, angles)
    if draws is not None:
        points, features = augment_lidar_inputs(points, features, cfg.data, draws[:, 0], draws[:, 1])
    points, label = points.to(device), label.to(device)
    features = None if features is None else features.to(device)
    with torch.autocast(device.type, dtype=run.amp_dtype or torch.float32, enabled=run.amp_dtype is not None):
        logits, aux_loss = forward_model(run.net, points, features, cfg.data)
    logits = logits.float()
    loss = _batch_loss(logits, label, run.weight, cfg, run.world, run.transition) + aux_loss.float()
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
    else:
        loss.backward()
    if cfg.train.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.train.grad_clip)
    with _sigint_deferred():
        if run.scaler is not None:
            run.scaler.step(run.optimizer)
            run.scaler.update()
        else:
            run.optimizer.step()
        run.schedule.step()
        with torch.no_grad():
            valid = label != cfg.data.ignore_index
            state.epoch_stats[0] += float(loss.detach()) * len(idx)
            state.epoch_stats[1] += int((logits.argmax(1) == label)[valid].sum())
            state.epoch_stats[2] += int(valid.sum())
            state.epoch_stats[3] += 1
        state.step += 1
        state.rng = {**_rng_state(device), "shuffle": state.rng["shuffle"]}
    return float(loss.detach())


def _validate(run: TrainRun) -> dict:
    """Block-level validation mIoU and OA over the validation pool, split over the ranks."""
    cfg, device, pool = run.cfg, run.device, run.val_pool
    run.model.eval()
    matrix = ConfusionMatrix(cfg.data.num_classes, ignore_index=cfg.data.ignore_index, device=device)
    batch = cfg.train.batch_size
    with torch.no_grad():
        for start in range(run.rank * batch, len(pool), run.world * batch):
            sl = slice(start, start + batch)
            points = pool.points[sl].to(device)
            features = None if pool.features is None else pool.features[sl].to(device)
            with torch.autocast(device.type, dtype=run.amp_dtype or torch.float32, enabled=run.amp_dtype is not None):
                logits, _ = forward_model(run.model, points, features, cfg.data)
            matrix.update(logits.float(), pool.label[sl].to(device))
    matrix.all_reduce()
    scores = scores_without_ignored(matrix, cfg.data.ignore_index)
    return {"val_miou": scores.miou, "val_oa": scores.overall_accuracy}


def _epoch_row(run: TrainRun, state: TrainState, epoch_start: float) -> dict:
    """The epoch's log row: mean loss and accuracy over every rank's blocks, the learning rate,
    the seconds and, on validation epochs, the validation scores."""
    cfg = run.cfg
    # under DDP a resumed epoch's steps before the interruption count rank 0's share only
    # (the checkpoint holds rank 0's sums); the mean below is still over the blocks counted
    stats = torch.tensor([*state.epoch_stats[:3], state.epoch_stats[3] * cfg.train.batch_size], dtype=torch.float64)
    if run.world > 1:
        dist.all_reduce(stats)
    row = {
        "epoch": state.epoch + 1,
        "train_loss": float(stats[0] / max(stats[3], 1)),
        "train_acc": float(stats[1] / max(stats[2], 1)),
        "lr": run.schedule.lr(),
        "epoch_s": time.perf_counter() - epoch_start,
        "val_miou": None,
        "val_oa": None,
    }
    finished = state.epoch + 1
    if run.val_pool is not None and (finished % cfg.train.val_every == 0 or finished == state.total_epochs):
        row.update(_validate(run))
    return row


def _finish_epoch(run: TrainRun, state: TrainState, row: dict) -> None:
    """Records the finished epoch all at once (or, under Ctrl-C, not at all), then writes the
    checkpoints and logs and prints the epoch's line (rank 0)."""
    with _sigint_deferred():
        state.history.append(row)
        state.epoch += 1
        state.step, state.epoch_stats = 0, _new_epoch_stats()
        state.rng = {**_rng_state(run.device), "shuffle": run.shuffle.get_state()}
        if row["val_miou"] is not None and row["val_miou"] > state.best_miou:
            state.best_miou, state.best_unsaved = row["val_miou"], run.rank == 0
    if state.best_unsaved:
        run.save(state, "best.pt")
        state.best_unsaved = False
    if run.rank == 0:
        if state.epoch % run.cfg.train.checkpoint_every == 0 or state.epoch == state.total_epochs:
            run.save(state, "last.pt")
        _write_logs(run.run_dir, state.history)
        val_text = "" if row["val_miou"] is None else f" | val mIoU {row['val_miou']:.3f} OA {row['val_oa']:.3f}"
        print(
            f"epoch {state.epoch}/{state.total_epochs} | loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
            f"lr {row['lr']:.2e} | {row['epoch_s']:.1f}s{val_text}",
            flush=True,
        )


def _run_epoch(run: TrainRun, state: TrainState, budget: TimeBudget, progress: bool) -> None:
    """Trains the epoch in progress from its next step on, then validates and records it."""
    epoch_start = time.perf_counter()
    run.net.train()
    order, angles, draws = _epoch_batches(run)
    # a resumed epoch skips the steps done before the interruption
    bar = progress_bar(
        range(state.step, run.steps_per_epoch),
        desc=f"epoch {state.epoch + 1}/{state.total_epochs}",
        unit="step",
        total=run.steps_per_epoch,
        initial=state.step,
        enabled=progress,
    )
    steps_run = 0
    for step in bar:
        if run.schedule.step_count >= run.schedule.total_steps:
            break  # a time-budgeted schedule ended inside this epoch
        loss = _train_step(run, state, order[step], angles[step], None if draws is None else draws[step])
        bar.set_postfix(loss=f"{loss:.3f}")
        steps_run += 1
        budget.after_step(state)
    bar.close()
    budget.after_epoch(state, epoch_start, steps_run)
    _finish_epoch(run, state, _epoch_row(run, state, epoch_start))


def _save_interrupted(run: TrainRun, state: TrainState) -> None:
    """Ctrl-C: saves the state after the last whole step (resume continues with the next one)."""
    if run.rank != 0:
        return
    if state.best_unsaved:  # interrupted while writing the new best
        run.save(state, "best.pt")
    run.save(state, "last.pt")
    print(
        f"\ninterrupted: saved {run.run_dir / 'last.pt'} at epoch {state.epoch} step {state.step}; "
        "continue with --resume",
        flush=True,
    )


def _finish_run(run: TrainRun, state: TrainState) -> None:
    """Final logs and curve; without validation the last weights are also ``best.pt``."""
    if run.rank != 0:
        return
    if state.history:
        _write_logs(run.run_dir, state.history)
        plot_training_curve(state.history, run.run_dir / "curve.png")
    if not (run.run_dir / "best.pt").exists() and (run.run_dir / "last.pt").exists():
        run.save(state, "best.pt")


def _train(
    cfg: Config, checkpoint: dict | None, progress: bool, stop_after_epochs: int | None, rooms, rank: int, world: int
) -> dict:
    run = _setup(cfg, rooms, progress, rank, world)
    state = _start_state(run, checkpoint)
    budget = TimeBudget(run, resumed=checkpoint is not None)
    interrupted, epochs_this_call = False, 0
    try:
        while state.epoch < state.total_epochs:
            _run_epoch(run, state, budget, progress)
            epochs_this_call += 1
            if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
                break
    except KeyboardInterrupt:
        interrupted = True
        _save_interrupted(run, state)
    _finish_run(run, state)
    return {
        "epochs": state.epoch,
        "best_miou": state.best_miou,
        "history": state.history,
        "interrupted": interrupted,
        "prepare_s": run.prepare_s,
        "train_s": time.perf_counter() - budget.start,
        "last": str(run.run_dir / "last.pt"),
        "best": str(run.run_dir / "best.pt"),
        "amp": None if run.amp_dtype is None else str(run.amp_dtype).replace("torch.", ""),
    }


def train(
    cfg: Config,
    resume: str | Path | None = None,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    rooms: tuple[Sequence[dict], Sequence[dict]] | None = None,
) -> dict:
    """Trains ``cfg`` and writes the run folder ``cfg.train.out_dir``.

    Ctrl-C saves ``last.pt`` at the last finished step (``--resume`` continues with the next
    one, as the uninterrupted run would) and returns with ``summary["interrupted"] = True``.
    Under torchrun the process group is set up here and torn down on return.

    Args:
        cfg: the config.
        resume: a ``last.pt`` to continue exactly where it stopped (same config required).
        progress: report room loading, block cutting and epochs (``pcseg.utils.progress``; rank 0).
        stop_after_epochs: return after this many epochs of this call (tests of ``resume``).
        rooms: (train_rooms, val_rooms) already in memory; None: ``pcseg.data.load_rooms``.

    Returns:
        summary: epochs, best_miou, history, interrupted, prepare_s, train_s, the last and best
        checkpoint paths and the autocast dtype (amp).

    Raises:
        ValueError: from ``check_training``, before any work: the device, the data, the class
            count; ``CheckpointError`` / ``CheckpointMismatchError`` for a ``resume`` that cannot
            be loaded or was made for another model or class count.
        FileNotFoundError, NotADirectoryError: the data folder is missing, or a file stands where
            the run folder should be.
        RunFolderBusyError: when another process trains into ``train.out_dir``.
    """
    checkpoint = check_training(cfg, resume, check_rooms=rooms is None)
    started_distributed = init_distributed(cfg.train.device)
    rank, world = _dist_info()
    finished = False
    try:
        with run_folder_lock(cfg.train.out_dir) if rank == 0 else contextlib.nullcontext():
            summary = _train(cfg, checkpoint, progress and rank == 0, stop_after_epochs, rooms, rank, world)
        finished = True
        return summary
    finally:
        if started_distributed:
            end_distributed(finished)


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimiser of ``cfg.train``: AdamW, or SGD with Nesterov momentum.

    Both are fused: one kernel over every parameter instead of a handful of small ops per
    tensor, which is most of the update's cost for models of many small tensors (A-CNN's rings).
    """
    if cfg.train.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, fused=True)
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.train.lr,
        momentum=cfg.train.momentum,
        weight_decay=cfg.train.weight_decay,
        nesterov=True,
        fused=True,
    )


def end_distributed(finished: bool) -> None:
    """Tears down the process group that ``init_distributed`` started, in the order gloo and
    NCCL need: the DistributedDataParallel wrapper (kept alive by reference cycles through its
    hooks) lets go of the group first, then every rank waits for the others, so none closes its
    connections while a peer still works (rank 0 writes the checkpoints after the last
    collective), then the group is destroyed.

    Args:
        finished: the run returned normally on this rank. After an error the others may never
            arrive, so the wait is skipped.
    """
    gc.collect()
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def check_training(cfg: Config, resume: str | Path | None = None, check_rooms: bool = True) -> dict | None:
    """Checks what a run needs beyond the config's own schema, before any work and before the
    run folder is created.

    Args:
        cfg: the config (already validated by ``pcseg.config``).
        resume: the checkpoint to continue, or None.
        check_rooms: check the data folder and class count (``pcseg.data.loading.check_data``);
            False when the rooms are given in memory.

    Returns:
        checkpoint: the loaded ``resume`` checkpoint, or None.

    Raises:
        ValueError: naming ``train.device`` when it is absent here, ``data.num_classes`` when it
            is below the data's class count, ``train.label_transition`` when it is not a
            (num_classes, num_classes) confusion matrix; ``CheckpointError`` / ``CheckpointMismatchError``
            for ``resume``.
        FileNotFoundError: naming the missing data folder, label config, ``resume`` or
            ``train.label_transition``.
        NotADirectoryError: naming the file that stands where ``train.out_dir`` should be.
    """
    check_device(cfg.train.device, "train.device")
    check_output_folder(cfg.train.out_dir, "train.out_dir")
    if cfg.train.label_transition:
        load_label_transition(cfg.train.label_transition, cfg.data.num_classes)
    checkpoint = None
    if resume is not None:
        checkpoint = load_checkpoint(resume)
        check_compatible(checkpoint, cfg, resume)
    if check_rooms:
        check_data(cfg.data)
    return checkpoint


def load_label_transition(path: str | Path, num_classes: int) -> torch.Tensor:
    """The noise matrix of ``train.label_transition``: a 2D network's confusion matrix, rows
    normalised (``pcseg.losses.label_transition_from_confusion``).

    Args:
        path: ``.npy``, or a text file of C rows of C numbers (commas or blanks between them).
        num_classes: C, the config's ``data.num_classes``.

    Returns:
        transition: (C, C) float32, rows summing to 1.

    Raises:
        FileNotFoundError: naming the missing file.
        ValueError: naming the file when it cannot be read as a (C, C) matrix of counts or
            probabilities.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"train.label_transition: {path} does not exist")
    try:
        if path.suffix == ".npy":
            matrix = np.load(path, allow_pickle=False)
        else:
            text = path.read_text().replace(",", " ")
            matrix = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)
        if matrix.shape != (num_classes, num_classes):
            raise ValueError(f"must be a ({num_classes}, {num_classes}) matrix, got shape {matrix.shape}")
        return label_transition_from_confusion(matrix)
    except ValueError as error:
        raise ValueError(f"train.label_transition: {path}: {error}") from error


class RunFolderBusyError(OSError):
    """Another process is training into the same run folder."""


@contextlib.contextmanager
def run_folder_lock(run_dir: str | Path):
    """Creates the run folder and holds its lock while the block runs.

    The lock is ``fcntl.flock`` on ``<run_dir>/.lock``: the OS releases it when the holder
    exits or is killed, so a lock file left by a dead process is simply taken over. The file
    holds the holder's process id, for the error message.

    Args:
        run_dir: the run folder (``train.out_dir``).

    Raises:
        RunFolderBusyError: naming the folder (and the holder's pid) when another process holds it.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise RunFolderBusyError(
                f"run folder {run_dir} (train.out_dir) is in use by another pcseg train "
                f"(pid {holder}); wait for it to finish or choose another train.out_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield run_dir
    finally:
        os.close(fd)  # releases the lock
