"""Helpers shared by pcseg's tests and benchmarks: deterministic input builders, the device list
and a single-thread context.

Tests and ``benchmarks/bm_*.py`` import them from here (never from another test module), so a
benchmark times exactly the inputs the tests check. Importing this module imports torch; the
library itself never imports it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

__all__ = [
    "DEVICES",
    "TINY_TRAINING",
    "cloud_with_duplicates",
    "lattice_cloud",
    "memorise_classes",
    "mixed_density_cloud",
    "overfit",
    "random_cloud",
    "random_lengths",
    "room_blocks",
    "single_torch_thread",
    "surface_cloud",
    "warm_up_batch_norm",
]

# `--set` overrides of a training run small enough for a test: one epoch of 8 x 128-point
# blocks per tiny generated room. Later overrides win, so a test appends what it changes.
TINY_TRAINING = [
    "data.points_per_room=3000",
    "data.num_points=128",
    "data.blocks_per_room=8",
    "data.val_blocks_per_room=2",
    "data.block_size=2.0",
    "data.eval_stride=2.0",
    "data.neighbours=8",
    "model.width_multiplier=0.125",
    "train.batch_size=4",
    "train.epochs=1",
    "train.amp=none",
]

# CUDA joins the device grid only where a GPU is visible, so a test parametrised over DEVICES
# runs on the CPU everywhere and on both where a GPU exists.
DEVICES: list[str] = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the body on one torch intra-op thread, then restore the previous count.

    Small workloads on a shared machine run slower, not faster, with several spinning
    OpenMP threads.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def random_cloud(
    batch: int, n: int, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0
) -> torch.Tensor:
    """Uniform points in the unit cube, deterministic in `seed`.

    Args:
        batch: number of clouds B.
        n: points per cloud N.
        dtype: dtype of the result (drawn in float64, then cast).
        device: device of the result.
        seed: random seed.

    Returns:
        points: (B, N, 3) `dtype` coordinates.
    """
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, n, 3, generator=g, dtype=torch.float64).to(dtype).to(device)


def random_lengths(batch: int, n: int, seed: int = 0, device: str = "cpu", min_len: int = 0) -> torch.Tensor:
    """Random cloud lengths for a padded batch.

    Args:
        batch: number of clouds B.
        n: padded size N (the largest length drawn).
        seed: random seed (the stream differs from `random_cloud`'s for the same seed).
        device: device of the result.
        min_len: smallest length drawn.

    Returns:
        lengths: (B,) int64 in [min_len, n].
    """
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randint(min_len, n + 1, (batch,), generator=g).to(device)


def lattice_cloud(
    batch: int, side: int, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0
) -> torch.Tensor:
    """Integer lattice points in a shuffled order: distances tie everywhere.

    Args:
        batch: number of clouds B.
        side: lattice points per axis.
        dtype: dtype of the result.
        device: device of the result.
        seed: seed of the shuffles (one per cloud).

    Returns:
        points: (B, side**3, 3) `dtype` coordinates.
    """
    ax = torch.arange(side, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    g = torch.Generator().manual_seed(seed)
    clouds = [grid[torch.randperm(grid.shape[0], generator=g)] for _ in range(batch)]
    return torch.stack(clouds).to(dtype).to(device)


def cloud_with_duplicates(
    batch: int, n: int, unique: int, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0
) -> torch.Tensor:
    """Clouds drawn from only `unique` distinct points, so most points have exact duplicates.

    Args:
        batch: number of clouds B.
        n: points per cloud N.
        unique: distinct points per cloud.
        dtype: dtype of the result.
        device: device of the result.
        seed: random seed.

    Returns:
        points: (B, N, 3) `dtype` coordinates.
    """
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, unique, 3, generator=g, dtype=torch.float64)
    pick = torch.randint(0, unique, (batch, n), generator=g)
    return torch.gather(base, 1, pick.unsqueeze(-1).expand(-1, -1, 3)).to(dtype).to(device)


def surface_cloud(n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Points on the unit sphere: a surface whose true normals are known.

    Args:
        n: number of points N.
        seed: random seed.
        dtype: dtype of the results.

    Returns:
        points: (N, 3) `dtype` coordinates.
        normals: (N, 3) `dtype` outward unit normals (equal to the points).
    """
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, 3, generator=g, dtype=torch.float64)
    v = v / v.norm(dim=-1, keepdim=True)
    return v.to(dtype), v.to(dtype)


def mixed_density_cloud(batch: int, n: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    """Points whose density varies by orders of magnitude.

    A third lie in tight blobs, the rest in the unit cube ever denser towards x = 0.
    Neighbouring query groups then need very different search radii, and some windows hold
    fewer than k points.

    Args:
        batch: number of clouds B.
        n: points per cloud N.
        dtype: dtype of the result.
        seed: random seed.

    Returns:
        points: (B, N, 3) `dtype` coordinates.
    """
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(batch, n, 3, generator=g, dtype=torch.float64)
    pts[..., 0] = pts[..., 0] ** 4
    blob = torch.rand(batch, n, 1, generator=g, dtype=torch.float64) < 1 / 3
    centres = torch.rand(batch, 6, 3, generator=g, dtype=torch.float64)
    which = torch.randint(0, 6, (batch, n), generator=g)
    blobs = torch.gather(centres, 1, which.unsqueeze(-1).expand(-1, -1, 3))
    blobs = blobs + 0.01 * torch.randn(batch, n, 3, generator=g, dtype=torch.float64)
    return torch.where(blob, blobs, pts).to(dtype)


def room_blocks(
    num_blocks: int = 2, num_points: int = 256, seed: int = 0, room_points: int = 40_000
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """1 m x 1 m blocks of one procedural room (`pcseg.data.synthetic.generate_room`).

    Args:
        num_blocks: number of blocks B.
        num_points: points per block N.
        seed: seed of the room and of the block positions.
        room_points: points of the whole room the blocks are cut from.

    Returns:
        points: (B, N, 3) float32, block-centred x, y; z above the floor.
        features: (B, N, 6) float32, RGB in [0, 1] and room-normalised xyz (the S3DIS
            9-channel input minus xyz).
        labels: (B, N) int64 class ids.
        normals: (B, N, 3) float32 unit normals.

    Raises:
        ValueError: when `room_points` is too sparse to cut blocks of `num_points` points.
    """
    from pcseg.data.synthetic import generate_room

    room = generate_room(seed=seed, num_points=room_points)
    rng = np.random.default_rng(seed)
    coord, color, label, normal = room["coord"], room["color"], room["label"], room["normal"]
    extent = coord.max(0)
    out: dict[str, list[np.ndarray]] = {"points": [], "features": [], "labels": [], "normals": []}
    for _ in range(100 * num_blocks):
        if len(out["points"]) == num_blocks:
            break
        x0, y0 = rng.uniform(0, extent[0] - 1.0), rng.uniform(0, extent[1] - 1.0)
        inside = np.nonzero(
            (coord[:, 0] >= x0) & (coord[:, 0] < x0 + 1) & (coord[:, 1] >= y0) & (coord[:, 1] < y0 + 1)
        )[0]
        if len(inside) < num_points:
            continue
        pick = rng.choice(inside, num_points, replace=False)
        out["points"].append(coord[pick] - np.array([x0 + 0.5, y0 + 0.5, 0.0], dtype=np.float32))
        out["features"].append(np.concatenate([color[pick] / 255.0, coord[pick] / extent], 1))
        out["labels"].append(label[pick])
        out["normals"].append(normal[pick])
    if len(out["points"]) < num_blocks:
        raise ValueError(f"room_points={room_points} is too sparse for blocks of {num_points} points")
    return (
        torch.from_numpy(np.stack(out["points"])).float(),
        torch.from_numpy(np.stack(out["features"])).float(),
        torch.from_numpy(np.stack(out["labels"])).long(),
        torch.from_numpy(np.stack(out["normals"])).float(),
    )


def warm_up_batch_norm(model: torch.nn.Module, *inputs: torch.Tensor, steps: int = 3) -> None:
    """A few train-mode forwards so that batch-norm running statistics are not the trivial (0, 1).

    Args:
        model: the model; left in eval mode.
        inputs: its forward arguments.
        steps: the number of forwards.
    """
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(*inputs)
    model.eval()


def overfit(
    model: torch.nn.Module,
    points: torch.Tensor,
    features: torch.Tensor | None,
    labels: torch.Tensor,
    max_steps: int,
    lr: float,
    extra_loss: Callable[[dict], torch.Tensor] | None = None,
    normals: torch.Tensor | None = None,
    target: float = 0.99,
    check_every: int = 10,
) -> tuple[float, int, float]:
    """Adam on one fixed batch, on one torch thread, until the eval-mode point accuracy reaches `target`.

    Args:
        model: a segmentation model with pcseg's forward signature.
        points: (B, N, 3) float32 block coordinates.
        features: (B, N, C) float32 per-point features, or None.
        labels: (B, N) int64 targets.
        max_steps: the most optimiser steps.
        lr: Adam's learning rate.
        extra_loss: maps the model's auxiliary outputs (``return_aux=True``) to a loss term.
        normals: (B, N, 3) float32 normals for models that order neighbourhoods by them.
        target: the eval-mode accuracy that stops training.
        check_every: steps between two accuracy checks.

    Returns:
        accuracy: the final eval-mode point accuracy.
        steps: the steps taken.
        seconds: the wall time spent.
    """
    import torch.nn.functional as F

    with single_torch_thread():
        start = time.perf_counter()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        kwargs = {} if normals is None else {"normals": normals}
        accuracy, step = 0.0, 0
        while step < max_steps:
            model.train()
            if extra_loss is None:
                loss = F.cross_entropy(model(points, features, **kwargs), labels)
            else:
                logits, aux = model(points, features, return_aux=True, **kwargs)
                loss = F.cross_entropy(logits, labels) + extra_loss(aux)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % check_every == 0 or step == max_steps:
                model.eval()
                with torch.no_grad():
                    accuracy = (model(points, features, **kwargs).argmax(1) == labels).float().mean().item()
                if accuracy >= target:
                    break
        return accuracy, step, time.perf_counter() - start


def memorise_classes(
    model: torch.nn.Module,
    points: torch.Tensor,
    features: torch.Tensor | None,
    targets: torch.Tensor,
    steps: int = 60,
    **kwargs,
) -> torch.Tensor:
    """Adam on one fixed batch of clouds with arbitrary class targets, on one torch thread.

    Args:
        model: a classification model.
        points: (B, N, 3) float32 clouds.
        features: (B, N, C) float32 per-point features, or None.
        targets: (B,) int64 class of each cloud.
        steps: optimiser steps.
        kwargs: further forward arguments (``normals=``).

    Returns:
        predictions: (B,) int64 eval-mode predictions after training.
    """
    import torch.nn.functional as F

    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    with single_torch_thread():
        for _ in range(steps):
            model.train()
            loss = F.cross_entropy(model(points, features, **kwargs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        return model(points, features, **kwargs).argmax(1)
