"""Multi-frame label fusion in a sparse voxel map, and late fusion of 3D and 2D predictions.

`VoxelLabelMap` keeps one class distribution per occupied voxel and folds in labelled
points frame after frame (SemanticFusion / Kimera-Semantics style). It takes points that
are already in the world frame: back-project RGB-D with `backproject_depth(...,
pose=T_world_from_camera)` or paint LiDAR with `paint_points`, then `integrate`.
`pcseg.Fuser` does exactly that for whole frames (`add_rgbd`, `add_lidar`): it is the
frame-level API.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from pcseg.bridge.camera import PinholeCamera
from pcseg.bridge.checks import (
    Array,
    ArrayLike,
    as_numpy,
    as_tensor,
    check_points,
    check_pose,
    flat_nonzero,
    from_tensor,
)
from pcseg.bridge.free_space import free_space_mask, free_space_mask_image
from pcseg.io import normalize_palette, write_labelled_ply
from pcseg.ops import HAS_CUDA_KERNELS
from pcseg.ops.voxelize import VOXEL_KEY_OFFSET, Voxelized, pack_voxel_keys, voxelize, voxelize_naive
from pcseg.utils.open3d import import_open3d

FUSION_MODES = ("bayes", "mean", "vote")

_EMPTY = -1  # a free slot of the hash tables (packed keys are >= 0)
_MAX_LOAD = 0.5  # linear probing stays short while the table is at most half full
_PROBE_WINDOW = 8  # slots read per key per round once few keys probe (one 64-byte cache line)
_PROBE_WINDOW_BELOW = 4096  # ... that is, fewer than this many

# Occupancy evidence per voxel, in log-odds as OctoMap keeps it: a frame that hits a voxel
# adds logit(0.7), a frame whose rays pass through it adds logit(0.4); the sum is clamped
# to OCCUPANCY_MAX so that a voxel seen for a long time still clears after a few frames
# (a parked car that drives away), and a voxel whose evidence falls below zero is removed.
OCCUPANCY_HIT = float(np.log(0.7 / 0.3))
OCCUPANCY_MISS = float(np.log(0.4 / 0.6))
OCCUPANCY_MAX = 2.0

# Per-voxel arrays, each (capacity, ...) with rows past num_voxels uninitialised; colour
# sums and counts join them with the first coloured frame.
_PER_VOXEL = (
    "_accumulators",
    "_observations",
    "_weight_sums",
    "_position_sums",
    "_frame_counts",
    "_occupancy",
    "_last_frame",
    "_last_time",
)
_PER_VOXEL_COLOR = ("_color_sums", "_colored")


def _home_slots(keys: torch.Tensor, mask: int) -> torch.Tensor:
    """(N,) int64 first slot to probe for each (N,) int64 key >= 0, in a table of mask + 1 slots."""
    # The high 31 and low 32 bits times 31-bit odd constants keep every product below 2^62:
    # no int64 overflow (undefined behaviour in C++), unlike a 64-bit multiplicative hash.
    mixed = (keys >> 32) * 0x5BD1E995 + (keys & 0xFFFFFFFF) * 0x2545F491
    return (mixed ^ (mixed >> 29)) & mask


def _probe(table: torch.Tensor, keys: torch.Tensor, insert: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Look many keys up at once in an open-addressing (linear probing) hash table.

    Each round reads a window of slots for every unresolved key and stops at the first
    slot holding the key or free (keys are never removed, so a key sits before the first
    free slot of its probe sequence). Most keys resolve at their home slot or the next
    few, so rounds read one slot while many keys are left; the last few thousand read
    _PROBE_WINDOW slots at once, which keeps the number of rounds (each a dozen vectorised
    ops) small for the long chains of a half-full table.

    Args:
        table: (S,) int64 keys, S a power of two, _EMPTY in free slots, never full. With
            insert=True every absent key is written into it (in place).
        keys: (N,) int64 >= 0; duplicates allowed (they share one slot).
        insert: write the absent keys into the table.

    Returns:
        (slots, inserted): slots (N,) int64, the slot holding each key (-1 for absent keys
        when not inserting); inserted (N,) bool, the key was absent and this call wrote it.
    """
    mask = table.shape[0] - 1
    slots = torch.empty_like(keys)
    inserted = torch.zeros(keys.shape, dtype=torch.bool, device=keys.device)
    pending = None  # indices into keys of those still probing; None = all of them
    pending_keys, slot = keys, _home_slots(keys, mask)
    width = 1
    while True:
        if width == 1:
            held = table.gather(0, slot)
            in_window = None  # every key stops at its one slot
            at = slot
        else:
            window = (slot[:, None] + torch.arange(width, device=slot.device)).bitwise_and_(mask)
            window_held = table.gather(0, window.view(-1)).view(-1, width)
            stop = (window_held == pending_keys[:, None]) | (window_held == _EMPTY)
            # argmax picks the first True; a window without a stop continues past its end.
            first = stop.to(torch.uint8).argmax(dim=1)
            in_window = stop.any(dim=1)
            held = window_held.gather(1, first[:, None]).squeeze(1)
            at = (slot + first).bitwise_and_(mask)
        free = held == _EMPTY
        if in_window is not None:
            free &= in_window
        if insert:
            claim = flat_nonzero(free)
            if claim.shape[0]:
                claim_slot = at.gather(0, claim)
                # Distinct keys claiming one free slot: one write wins, reading back tells which.
                table.scatter_(0, claim_slot, pending_keys.gather(0, claim))
                held.scatter_(0, claim, table.gather(0, claim_slot))
        found = held == pending_keys
        if in_window is not None:
            found &= in_window
        result = at if insert else torch.where(found, at, -1)
        if pending is None:
            slots.copy_(result)
            if insert:
                inserted.copy_(free & found)
        else:
            # Keys still probing get their entry overwritten in a later round.
            slots.scatter_(0, pending, result)
            if insert:
                inserted.scatter_(0, pending, free & found)
        rest = flat_nonzero(~found if insert else ~(found | free))
        if rest.shape[0] == 0:
            return slots, inserted
        pending = rest if pending is None else pending.gather(0, rest)
        pending_keys = pending_keys.gather(0, rest)
        # Past a lost claim (another key took the slot) or past a window without a stop.
        after = at + 1 if in_window is None else torch.where(in_window, at + 1, slot + width)
        slot = after.gather(0, rest).bitwise_and_(mask)
        # One slot per round while many keys probe (window ops cost more per key than
        # a round's fixed overhead saves), whole windows for the last few long chains.
        width = 1 if rest.shape[0] > _PROBE_WINDOW_BELOW else _PROBE_WINDOW


def _voxelize(points, voxel_size, labels, num_classes, values) -> Voxelized:
    """`pcseg.ops.voxelize`, or its PyTorch reference for CUDA tensors when pcseg was built
    without its CUDA kernels (the map then still runs on the GPU).

    Raises:
        ValueError: for non-finite points or points beyond the keys' range (the op's
            message; the map's arguments were checked before).
    """
    try:
        if points.device.type == "cpu" or HAS_CUDA_KERNELS:
            return voxelize(points, voxel_size, labels, num_classes, values)
        return voxelize_naive(points, voxel_size, labels, num_classes, values)
    except RuntimeError as err:
        raise ValueError(str(err).splitlines()[0]) from err


class VoxelQuery(NamedTuple):
    """Result of `VoxelLabelMap.query`.

    Attributes:
        labels: (N,) int64 fused label of each point's voxel, -1 where the voxel was never
            observed.
        probabilities: (N, C) float32 fused class distribution, all zeros where never observed.
        known: (N,) bool, the point's voxel holds at least one observation.
    """

    labels: Array
    probabilities: Array
    known: Array


class _FoldPlan(NamedTuple):
    """How one frame's U voxels map onto the rows of a VoxelLabelMap.

    old_index: (U_old,) int64 frame voxels already in the map (None when there are none),
        at rows old_rows (U_old,) int64; new_index: (U_new,) int64 frame voxels that get the
        new rows start .. start + U_new - 1 in that order.
    """

    old_index: torch.Tensor | None
    old_rows: torch.Tensor | None
    new_index: torch.Tensor
    start: int


class VoxelLabelMap:
    """A sparse voxel grid holding a fused class distribution per voxel.

    State (rows in insertion order, `num_voxels` of them): per-class accumulators,
    observation counts, point-position and colour sums (for export); and a hash table from
    packed voxel key to row.

    Args:
        voxel_size: edge length in metres of the cubic voxels (voxel (i, j, k) spans
            [i, i + 1) * voxel_size along x, and so on).
        num_classes: C.
        mode: how observations combine:
            "bayes": recursive Bayesian update, p(c) ∝ prod_frames p_frame(c)
            (SemanticFusion, Kimera-Semantics): sums log-probabilities, each clamped to
            `min_probability` so a single confident miss cannot veto a class forever.
            "mean": the average of the observed probability vectors.
            "vote": each observation votes for its argmax label; the distribution is the
            normalised vote count.
        min_probability: floor of the probabilities in "bayes" mode (hard labels become
            1 for the label and min_probability for the other classes).
        device: where the map's tensors live.

    Raises:
        ValueError: on a voxel_size, num_classes, mode or min_probability out of range.
    """

    # Bumped whenever the saved state's layout changes (`state_dict` / `from_state_dict`).
    STATE_VERSION = 1

    def __init__(
        self,
        voxel_size: float,
        num_classes: int,
        mode: str = "bayes",
        min_probability: float = 1e-3,
        device: str | torch.device = "cpu",
    ):
        if not voxel_size > 0 or not np.isfinite(voxel_size):
            raise ValueError(f"voxel_size must be a positive finite number, got {voxel_size}")
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
        if mode not in FUSION_MODES:
            raise ValueError(f"mode must be one of {FUSION_MODES}, got {mode!r}")
        if not 0 < min_probability < 1:
            raise ValueError(f"min_probability must be in (0, 1), got {min_probability}")
        self.voxel_size = float(voxel_size)
        self.num_classes = int(num_classes)
        self.mode = mode
        self.min_probability = float(min_probability)
        self.device = torch.device(device)
        self.num_voxels = 0
        capacity = 1024
        # Rows past num_voxels are uninitialised; `_fold` writes a row when its voxel appears.
        self._accumulators = torch.empty((capacity, self.num_classes), dtype=torch.float32, device=self.device)
        self._observations = torch.empty(capacity, dtype=torch.float32, device=self.device)
        # Sum of the source weights of the points, the denominator of "mean" and "vote".
        self._weight_sums = torch.empty(capacity, dtype=torch.float32, device=self.device)
        self._position_sums = torch.empty((capacity, 3), dtype=torch.float64, device=self.device)
        # Frames that hit each voxel, its occupancy log-odds, and when it was last hit.
        self._frame_counts = torch.empty(capacity, dtype=torch.int32, device=self.device)
        self._occupancy = torch.empty(capacity, dtype=torch.float32, device=self.device)
        self._last_frame = torch.empty(capacity, dtype=torch.int64, device=self.device)
        self._last_time = torch.empty(capacity, dtype=torch.float64, device=self.device)
        # Colour sums and counts appear with the first coloured frame (a LiDAR map never
        # needs them: 16 bytes less to write per new voxel).
        self._color_sums: torch.Tensor | None = None
        self._colored: torch.Tensor | None = None
        # The lookup index: an open-addressing hash table of keys (_EMPTY in free slots) and
        # the row of each. Unlike a sorted key array it needs no O(num_voxels) merge per
        # frame while the map keeps growing. Keys apart from rows: probing reads only keys,
        # and a dense key array holds twice as many per cache line. int32 rows halve the
        # memory a growing table touches (2^31 voxels would not fit in memory anyway).
        self._table = torch.full((2 * capacity,), _EMPTY, dtype=torch.int64, device=self.device)
        self._table_rows = torch.empty(2 * capacity, dtype=torch.int32, device=self.device)

    # ----- integration -------------------------------------------------------------------
    def integrate(
        self,
        points_world: Array,
        probabilities: Array | None = None,
        labels: Array | None = None,
        colors: Array | None = None,
        *,
        weight: float = 1.0,
        frame: int = 0,
        time: float = 0.0,
    ) -> int:
        """Fold one frame of labelled world-frame points into the map.

        Points of one frame falling into the same voxel all count, so denser views weigh
        more, as in SemanticFusion's per-pixel update. Give exactly one of probabilities
        and labels. Each voxel the frame hits gains occupancy evidence (`OCCUPANCY_HIT`),
        one more frame count, and `frame` / `time` as when it was last observed.

        Args:
            points_world: (N, 3) float points, world frame, N > 0 (`pcseg.Fuser` skips
                empty frames instead).
            probabilities: (N, C) float class probabilities (rows summing to 1).
            labels: (N,) int in [0, C), -1 for "no label" (such points are skipped).
            colors: optional (N, 3) float RGB in [0, 1] (or uint8 0..255), averaged per
                voxel.
            weight: the source's weight, > 0: "bayes" adds weight * log p (the log-linear
                pooling of `late_fusion`), "mean" and "vote" a weighted average.
            frame: the frame's index, stored as each hit voxel's last observation.
            time: the frame's time in seconds, likewise.

        Returns:
            count: the number of points integrated (those with a label).

        Raises:
            ValueError: on shapes that do not match, labels outside [-1, C), both or
                neither of probabilities and labels, a weight that is not positive, or
                non-finite or too distant points.
        """
        if not weight > 0 or not np.isfinite(weight):
            raise ValueError(f"weight must be a positive finite number, got {weight}")
        points_t, _ = as_tensor(points_world, "points_world")
        check_points(points_t, "points_world")
        points_t = points_t.to(self.device)
        count = points_t.shape[0]
        if (probabilities is None) == (labels is None):
            raise ValueError("give exactly one of probabilities (N, C) or labels (N,)")
        labels_t = probabilities_t = None
        if labels is not None:
            labels_t, _ = as_tensor(labels, "labels")
            labels_t = labels_t.to(self.device)
            if labels_t.shape != (count,) or labels_t.is_floating_point():
                raise ValueError(
                    f"labels must be (N,) integers with N={count}, got {tuple(labels_t.shape)} {labels_t.dtype}"
                )
            if count and (int(labels_t.min()) < -1 or int(labels_t.max()) >= self.num_classes):
                raise ValueError(
                    f"labels must lie in [-1, {self.num_classes}), got [{int(labels_t.min())}, {int(labels_t.max())}]"
                )
            labels_t = labels_t.to(torch.int64)
        else:
            probabilities_t, _ = as_tensor(probabilities, "probabilities")
            probabilities_t = probabilities_t.to(self.device)
            if probabilities_t.shape != (count, self.num_classes) or not probabilities_t.is_floating_point():
                raise ValueError(
                    f"probabilities must be (N, C) = ({count}, {self.num_classes}) floats, "
                    f"got {tuple(probabilities_t.shape)} {probabilities_t.dtype}"
                )
            probabilities_t = probabilities_t.to(torch.float32)
            if self.mode == "vote":
                # A vote is the argmax label; from here on the frame is a label frame.
                labels_t, probabilities_t = torch.max(probabilities_t, dim=1).indices, None
        colors_t = None
        if colors is not None:
            colors_t, _ = as_tensor(colors, "colors")
            if colors_t.shape != (count, 3):
                raise ValueError(f"colors must be (N, 3) with N={count}, got {tuple(colors_t.shape)}")
            colors_t = colors_t.to(self.device)
            colors_t = (
                colors_t.to(torch.float32) / 255.0 if colors_t.dtype == torch.uint8 else colors_t.to(torch.float32)
            )

        # One pass over the points gives each voxel of the frame its sums, so the map's rows
        # are touched once per voxel, not once per point; points labelled -1 are skipped.
        values = self._frame_values(probabilities_t)
        if colors_t is not None:
            values = colors_t if values is None else torch.cat([values, colors_t], dim=1)
        if points_t.dtype != torch.float64:
            points_t = points_t.to(torch.float32)
        num_classes = self.num_classes if labels_t is not None else 0
        voxels = _voxelize(points_t, self.voxel_size, labels_t, num_classes, values)
        num_frame_voxels = voxels.keys.shape[0]
        if num_frame_voxels == 0:
            return 0
        frame_counts = voxels.counts.to(torch.float32)
        if labels_t is not None:
            frame_sums = self._label_sums(voxels.label_counts, frame_counts)
        else:
            frame_sums = voxels.value_sums[:, : self.num_classes]
        frame_colors = None if colors_t is None else voxels.value_sums[:, -3:]
        if weight != 1.0:
            frame_sums = frame_sums * weight
        fold = self._fold_plan(voxels.keys)
        self._fold(self._accumulators, frame_sums, fold)
        self._fold(self._observations, frame_counts, fold)
        self._fold(self._weight_sums, frame_counts if weight == 1.0 else frame_counts * weight, fold)
        self._fold(self._position_sums, voxels.point_sums, fold)
        self._fold(self._frame_counts, torch.ones(num_frame_voxels, dtype=torch.int32, device=self.device), fold)
        self._fold(self._occupancy, torch.full((num_frame_voxels,), OCCUPANCY_HIT, device=self.device), fold)
        self._occupancy.clamp_(max=OCCUPANCY_MAX)
        self._stamp(self._last_frame, frame, fold)
        self._stamp(self._last_time, time, fold)
        if frame_colors is not None and self._color_sums is None:
            # Voxels integrated so far had no colour: zero sums and counts.
            capacity = self._observations.shape[0]
            self._color_sums = torch.zeros((capacity, 3), dtype=torch.float32, device=self.device)
            self._colored = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        if self._color_sums is not None and self._colored is not None:
            self._fold(self._color_sums, frame_colors, fold)
            self._fold(self._colored, None if frame_colors is None else frame_counts, fold)
        self.num_voxels += fold.new_index.shape[0]
        return int(voxels.counts.sum())

    def _frame_values(self, probabilities: torch.Tensor | None) -> torch.Tensor | None:
        """(N, C) float32 per-point contributions of a probability frame ("bayes": the
        log-probabilities floored at log min_probability; "mean": the probabilities)."""
        if probabilities is None or self.mode != "bayes":
            return probabilities
        return torch.log(probabilities).clamp_min_(float(np.log(self.min_probability)))

    def _label_sums(self, label_counts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """(U, C) a label frame's contribution from its (U, C) label counts and (U,) point counts."""
        if self.mode != "bayes":
            return label_counts
        # sum over points of log(one-hot clamped) = n_voxel * log(min_p) + n_label * (-log(min_p)).
        log_floor = float(np.log(self.min_probability))
        return label_counts.mul_(-log_floor).add_(counts[:, None] * log_floor)

    # ----- lookup ------------------------------------------------------------------------
    def _shifted_voxel_coordinates(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, 3) float voxel coordinates shifted by +2^20 (exact integers), and their
        per-axis minimum and maximum (3,) each; raises for non-finite or too distant points."""
        dtype = torch.float64 if points.dtype == torch.float64 else torch.float32
        # floor(p / size) + offset stays an exact integer in float32 (< 2^22 < 2^24).
        shifted = torch.floor(points.to(dtype) * (1.0 / self.voxel_size)).add_(VOXEL_KEY_OFFSET)
        # Three strided 1-D reductions beat aminmax(dim=0) over (N, 3) on the CPU.
        low, high = (torch.stack(values) for values in zip(*(torch.aminmax(shifted[:, axis]) for axis in range(3))))
        if not bool((low >= 0).all() and (high < 2 * VOXEL_KEY_OFFSET).all()):  # NaN fails both
            if not bool(torch.isfinite(points).all()):
                raise ValueError("points must be finite")
            raise ValueError(
                f"points span voxel indices [{float(low.min()) - VOXEL_KEY_OFFSET:.0f}, "
                f"{float(high.max()) - VOXEL_KEY_OFFSET:.0f}], beyond the map's +-{VOXEL_KEY_OFFSET} "
                f"(+-{VOXEL_KEY_OFFSET * self.voxel_size:.0f} m at voxel_size={self.voxel_size})"
            )
        return shifted, low, high

    def _keys_of(self, points: torch.Tensor) -> torch.Tensor:
        """(N,) int64 packed voxel keys of (N, 3) points."""
        return pack_voxel_keys(self._shifted_voxel_coordinates(points)[0])

    def _find_rows(self, keys: torch.Tensor) -> torch.Tensor:
        """(N,) int64 row of each of the (N,) keys in the map, -1 where absent."""
        slots, _ = _probe(self._table, keys, insert=False)
        # Slot 0 stands in for absent keys so the gather stays in bounds; where() drops it.
        return torch.where(slots >= 0, self._table_rows.gather(0, slots.clamp(min=0)).to(torch.int64), -1)

    def _fold_plan(self, frame_keys: torch.Tensor) -> _FoldPlan:
        """Where a frame's voxels (sorted unique keys (U,)) go: existing rows, or new rows
        appended in ascending key order, after growing the storage. The caller adds the
        new rows to `num_voxels` once every per-voxel array is folded."""
        self._reserve_table(self.num_voxels + frame_keys.shape[0])
        slots, inserted = _probe(self._table, frame_keys, insert=True)
        new_index = flat_nonzero(inserted)
        num_new = new_index.shape[0]
        old_index = old_rows = None
        if num_new < frame_keys.shape[0]:
            old_index = flat_nonzero(~inserted)
            old_rows = self._table_rows.gather(0, slots.gather(0, old_index)).to(torch.int64)
            # Rows in ascending order turn the scattered adds into one sweep through the
            # per-voxel arrays (each a cache and TLB miss per voxel otherwise).
            old_rows, order = torch.sort(old_rows)
            old_index = old_index.gather(0, order)
        if num_new:
            self._reserve(self.num_voxels + num_new)
            new_rows = torch.arange(self.num_voxels, self.num_voxels + num_new, dtype=torch.int32, device=self.device)
            self._table_rows.scatter_(0, slots.gather(0, new_index), new_rows)
        return _FoldPlan(old_index, old_rows, new_index, self.num_voxels)

    @staticmethod
    def _fold(target: torch.Tensor, frame_values: torch.Tensor | None, plan: _FoldPlan) -> None:
        """Add per-frame-voxel values (U, ...) into the map rows of `plan`; None adds zeros.

        New rows are written, not added to: storage beyond `num_voxels` is never
        initialised, and a contiguous block copy is far cheaper than a scattered add.
        """
        num_new = plan.new_index.shape[0]
        new_block = target[plan.start : plan.start + num_new]
        if frame_values is None:
            new_block.zero_()
            return
        frame_values = frame_values.to(target.dtype)
        if plan.old_index is not None and plan.old_rows is not None:
            target.index_add_(0, plan.old_rows, frame_values.index_select(0, plan.old_index))
        if num_new == frame_values.shape[0]:  # every voxel of the frame is new
            new_block.copy_(frame_values)
        elif num_new:
            torch.index_select(frame_values, 0, plan.new_index, out=new_block)

    def _stamp(self, target: torch.Tensor, value: float, plan: _FoldPlan) -> None:
        """Set the rows of `plan` (old and new) of a per-voxel array to `value`."""
        if plan.old_rows is not None:
            target.index_fill_(0, plan.old_rows, value)
        target[plan.start : plan.start + plan.new_index.shape[0]] = value

    def _reserve_table(self, needed: int) -> None:
        """Grow the hash table (rehashing every key) so `needed` keys keep it at most half full."""
        size = self._table.shape[0]
        if needed <= size * _MAX_LOAD:
            return
        while needed > size * _MAX_LOAD:
            size *= 2  # doubling keeps the rehashing amortised O(1) per voxel
        # Keys read in slot order have home slots in the bigger table that rise in a few
        # interleaved runs (a key's new home extends its old one by high bits), so the
        # re-insertion walks memory nearly in order, unlike row order.
        used = flat_nonzero(self._table != _EMPTY)
        keys, rows = self._table.gather(0, used), self._table_rows.gather(0, used)
        self._table = torch.full((size,), _EMPTY, dtype=torch.int64, device=self.device)
        self._table_rows = torch.empty(size, dtype=torch.int32, device=self.device)
        slots, _ = _probe(self._table, keys, insert=True)
        self._table_rows.scatter_(0, slots, rows)

    def _reserve(self, needed: int) -> None:
        capacity = self._observations.shape[0]
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2  # doubling keeps the copies amortised O(1) per voxel

        def grown(tensor):
            # Uninitialised: rows are written when a voxel first appears (`_fold`), so
            # the unused tail costs no page faults.
            bigger = torch.empty((capacity,) + tuple(tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
            bigger[: self.num_voxels] = tensor[: self.num_voxels]
            return bigger

        for name in self._per_voxel_names():
            setattr(self, name, grown(getattr(self, name)))

    def _per_voxel_names(self) -> tuple[str, ...]:
        return _PER_VOXEL + (_PER_VOXEL_COLOR if self._color_sums is not None else ())

    # ----- forgetting --------------------------------------------------------------------
    def row_keys(self) -> torch.Tensor:
        """(V,) int64 packed voxel key of each row (from the hash table)."""
        used = flat_nonzero(self._table != _EMPTY)
        keys = torch.empty(self.num_voxels, dtype=torch.int64, device=self.device)
        keys[self._table_rows.gather(0, used).to(torch.int64)] = self._table.gather(0, used)
        return keys

    def clear_free_space(
        self,
        returns: Array,
        T_world_from_sensor: ArrayLike,
        frame: int,
        resolution_degrees: float = 0.5,
    ) -> int:
        """Lower the occupancy of the voxels a frame's rays passed through; remove the emptied.

        Each voxel in the free space of the frame (`pcseg.bridge.free_space`) that the
        frame did not hit gets `OCCUPANCY_MISS`; voxels whose evidence falls below zero
        are removed.

        Args:
            returns: (M, 3) float sensor-frame positions of all the frame's returns
                (sensor frame: z up, see `free_space_mask`).
            T_world_from_sensor: (4, 4) the sensor's pose.
            frame: the frame's index, as given to `integrate` (its hits are kept).
            resolution_degrees: angular bin of the free-space test.

        Returns:
            removed: the number of voxels removed.
        """
        if self.num_voxels == 0:
            return 0
        returns_t, _ = as_tensor(returns, "returns")
        check_points(returns_t, "returns")
        pose = check_pose(T_world_from_sensor, "T_world_from_sensor", torch.float64, self.device)
        # Voxels into the sensor frame: p_sensor = R^T (p_world - t).
        voxels = (self._mean_positions() - pose[:3, 3]) @ pose[:3, :3]
        free = free_space_mask(voxels, returns_t.to(self.device), self.voxel_size, resolution_degrees)
        return self._miss(free, frame)

    def clear_free_space_image(
        self,
        ranges: Array,
        camera: PinholeCamera,
        T_world_from_camera: ArrayLike,
        frame: int,
        resolution_degrees: float = 0.5,
    ) -> int:
        """`clear_free_space` for a camera depth frame, tested on its own pixel grid.

        Args:
            ranges: (H, W) float distance from the camera centre to each pixel's return, inf
                where the pixel has none (`free_space_mask_image`).
            camera: the frame's PinholeCamera.
            T_world_from_camera: (4, 4) the camera's pose (x right, y down, z forward).
            frame: the frame's index, as given to `integrate` (its hits are kept).
            resolution_degrees: angular size of the blocks of the free-space test.

        Returns:
            removed: the number of voxels removed.

        Raises:
            ValueError: when `ranges` is not the camera's (H, W), or on a bad pose.
        """
        if self.num_voxels == 0:
            return 0
        ranges_t, _ = as_tensor(ranges, "ranges")
        camera.check_image_shape(ranges_t.shape, "ranges")
        pose = check_pose(T_world_from_camera, "T_world_from_camera", torch.float64, self.device)
        voxels = (self._mean_positions() - pose[:3, 3]) @ pose[:3, :3]
        free = free_space_mask_image(voxels, ranges_t, camera, self.voxel_size, resolution_degrees)
        return self._miss(free, frame)

    def _miss(self, free: torch.Tensor, frame: int) -> int:
        """Add `OCCUPANCY_MISS` to the (V,) bool `free` voxels not hit by `frame`; remove the emptied."""
        free &= self._last_frame[: self.num_voxels] != frame  # a hit in this frame wins over a miss
        rows = flat_nonzero(free)
        if rows.shape[0] == 0:
            return 0
        self._occupancy.index_add_(0, rows, torch.full(rows.shape, OCCUPANCY_MISS, device=self.device))
        return self.remove(self._occupancy[: self.num_voxels] < 0)

    def forget(
        self,
        origin: ArrayLike | None = None,
        max_distance: float | None = None,
        min_frame: int | None = None,
        min_time: float | None = None,
    ) -> int:
        """Remove the voxels outside a bounded local map.

        Args:
            origin: (3,) the latest sensor position, for max_distance (None: no distance bound).
            max_distance: metres; voxels whose mean point is farther from origin go.
            min_frame: voxels last hit by a frame with a smaller index go.
            min_time: voxels last hit before this time (seconds) go.

        Returns:
            removed: the number of voxels removed.
        """
        if self.num_voxels == 0:
            return 0
        drop = torch.zeros(self.num_voxels, dtype=torch.bool, device=self.device)
        if origin is not None and max_distance is not None:
            origin_t = torch.as_tensor(as_numpy(origin, "origin"), dtype=torch.float64, device=self.device)
            offsets = self._mean_positions() - origin_t
            drop |= (offsets * offsets).sum(dim=1) > max_distance**2
        if min_frame is not None:
            drop |= self._last_frame[: self.num_voxels] < min_frame
        if min_time is not None:
            drop |= self._last_time[: self.num_voxels] < min_time
        return self.remove(drop)

    def remove(self, drop: Array) -> int:
        """Remove voxels; the others keep their order (rows shift down) and every value.

        Args:
            drop: (V,) bool, True for the voxels to remove.

        Returns:
            removed: the number of voxels removed.

        Raises:
            ValueError: when `drop` is not (V,) bool.
        """
        drop_t, _ = as_tensor(drop, "drop")
        if drop_t.shape != (self.num_voxels,) or drop_t.dtype != torch.bool:
            raise ValueError(f"drop must be ({self.num_voxels},) bool, got {tuple(drop_t.shape)} {drop_t.dtype}")
        keep = flat_nonzero(~drop_t.to(self.device))
        removed = self.num_voxels - keep.shape[0]
        if removed == 0:
            return 0
        keys = self.row_keys().index_select(0, keep)
        for name in self._per_voxel_names():
            values = getattr(self, name)
            values[: keep.shape[0]] = values.index_select(0, keep)
        self.num_voxels = keep.shape[0]
        self._rebuild_table(keys)
        return removed

    def _rebuild_table(self, keys: torch.Tensor) -> None:
        """A fresh hash table holding `keys` (V,) at rows 0..V-1."""
        size = self._table.shape[0]
        while size > 2048 and keys.shape[0] <= size * _MAX_LOAD / 4:
            size //= 2  # shrink a table the map has outgrown, keep it at most half full
        self._table = torch.full((size,), _EMPTY, dtype=torch.int64, device=self.device)
        self._table_rows = torch.empty(size, dtype=torch.int32, device=self.device)
        self._reserve_table(keys.shape[0])
        slots, _ = _probe(self._table, keys, insert=True)
        self._table_rows.scatter_(0, slots, torch.arange(keys.shape[0], dtype=torch.int32, device=self.device))

    # ----- saving ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The map as a dict of settings and (V, ...) CPU tensors (`from_state_dict` inverts it)."""
        state = {
            "version": self.STATE_VERSION,
            "voxel_size": self.voxel_size,
            "num_classes": self.num_classes,
            "mode": self.mode,
            "min_probability": self.min_probability,
            "keys": self.row_keys().cpu(),
        }
        for name in self._per_voxel_names():
            state[name.lstrip("_")] = getattr(self, name)[: self.num_voxels].cpu().clone()
        return state

    @classmethod
    def from_state_dict(cls, state: dict, device: str | torch.device = "cpu") -> VoxelLabelMap:
        """A map from `state_dict()`'s dict; queries answer exactly as the saved map's.

        Raises:
            ValueError: on another state version or missing / mis-shaped arrays.
        """
        if state.get("version") != cls.STATE_VERSION:
            raise ValueError(
                f"voxel map state version {state.get('version')!r} is not this pcseg's "
                f"({cls.STATE_VERSION}): it was written by another pcseg version"
            )
        fusion_map = cls(state["voxel_size"], state["num_classes"], state["mode"], state["min_probability"], device)
        keys = state["keys"].to(fusion_map.device)
        count = keys.shape[0]
        if "color_sums" in state:
            fusion_map._color_sums = torch.empty((1024, 3), dtype=torch.float32, device=fusion_map.device)
            fusion_map._colored = torch.empty(1024, dtype=torch.float32, device=fusion_map.device)
        fusion_map._reserve(count)
        for name in fusion_map._per_voxel_names():
            values, target = state.get(name.lstrip("_")), getattr(fusion_map, name)
            if (
                values is None
                or tuple(values.shape) != (count,) + tuple(target.shape[1:])
                or values.dtype != target.dtype
            ):
                raise ValueError(f"voxel map state: {name.lstrip('_')} is missing or does not match {count} voxels")
            target[:count] = values.to(fusion_map.device)
        fusion_map.num_voxels = count
        fusion_map._rebuild_table(keys)
        return fusion_map

    # ----- results -----------------------------------------------------------------------
    def _distribution(self, rows: torch.Tensor) -> torch.Tensor:
        accumulators = self._accumulators.index_select(0, rows)
        if self.mode == "bayes":
            return torch.softmax(accumulators, dim=1)
        return accumulators / self._weight_sums.index_select(0, rows)[:, None]

    def query(self, points: Array) -> VoxelQuery:
        """Fused labels and distributions at world points.

        Args:
            points: (N, 3) float world points, numpy or torch.

        Returns:
            query: VoxelQuery(labels (N,) int64, probabilities (N, C) float32, known (N,)
            bool), the array kind of `points`.

        Raises:
            ValueError: on points that are not a non-empty (N, 3) float array.
        """
        points_t, to_numpy = as_tensor(points, "points")
        check_points(points_t)
        keys = self._keys_of(points_t.to(self.device))
        rows = self._find_rows(keys)
        known = rows >= 0
        known_rows = torch.nonzero(known).squeeze(1)
        probabilities = torch.zeros((keys.shape[0], self.num_classes), dtype=torch.float32, device=self.device)
        labels = torch.full((keys.shape[0],), -1, dtype=torch.int64, device=self.device)
        if known_rows.numel():
            distribution = self._distribution(rows.index_select(0, known_rows))
            probabilities[known_rows] = distribution
            labels[known_rows] = torch.max(distribution, dim=1).indices
        result: tuple[torch.Tensor, ...] = (labels, probabilities, known)
        if not to_numpy:
            result = tuple(tensor.to(points_t.device) for tensor in result)
        return VoxelQuery(*(from_tensor(tensor, to_numpy) for tensor in result))

    def _mean_positions(self) -> torch.Tensor:
        """(V, 3) float64 tensor: the mean of the points integrated into each voxel."""
        count = self._observations[: self.num_voxels, None].to(torch.float64)
        return self._position_sums[: self.num_voxels] / count

    def voxel_points(self) -> np.ndarray:
        """(V, 3) float64 mean position of the points integrated into each voxel."""
        return self._mean_positions().cpu().numpy()

    def voxel_counts(self) -> np.ndarray:
        """(V,) int32 number of frames that hit each voxel."""
        return self._frame_counts[: self.num_voxels].cpu().numpy()

    def voxel_entropy(self) -> np.ndarray:
        """(V,) float32 entropy in nats of each voxel's fused distribution (0: certain, log C: uniform)."""
        distribution = self._distribution(torch.arange(self.num_voxels, device=self.device))
        return (-(distribution * torch.log(distribution.clamp_min(1e-30))).sum(dim=1)).cpu().numpy()

    def voxel_occupancy(self) -> np.ndarray:
        """(V,) float32 occupancy log-odds of each voxel (see `OCCUPANCY_HIT`)."""
        return self._occupancy[: self.num_voxels].cpu().numpy()

    def voxel_probabilities(self) -> np.ndarray:
        """(V, C) float32 fused distribution of each voxel (rows of `voxel_points`)."""
        return self._distribution(torch.arange(self.num_voxels, device=self.device)).cpu().numpy()

    def voxel_labels(self) -> np.ndarray:
        """(V,) int64 fused label of each voxel."""
        return torch.max(self._accumulators[: self.num_voxels], dim=1).indices.cpu().numpy()

    def voxel_colors(self) -> np.ndarray:
        """(V, 3) float32 mean RGB in [0, 1] of each voxel; NaN where no colour was integrated."""
        if self._color_sums is None or self._colored is None:
            return np.full((self.num_voxels, 3), np.nan, dtype=np.float32)
        colored = self._colored[: self.num_voxels, None]
        return (self._color_sums[: self.num_voxels] / colored).cpu().numpy()

    def voxel_observations(self) -> np.ndarray:
        """(V,) float32 number of points integrated into each voxel."""
        return self._observations[: self.num_voxels].cpu().numpy()

    # ----- export ------------------------------------------------------------------------
    def to_open3d(self, palette=None):
        """The voxels as an Open3D point cloud coloured by fused label (open3d imported lazily).

        Args:
            palette: (C, 3) uint8 or float [0, 1] colours; `default_palette(C)` when None.

        Returns:
            cloud: `open3d.geometry.PointCloud`, one point per voxel at `voxel_points`.
        """
        open3d = import_open3d()  # lazy: pcseg must import without open3d's native libraries

        cloud = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(self.voxel_points()))
        colors = normalize_palette(palette, self.num_classes)[self.voxel_labels()]
        cloud.colors = open3d.utility.Vector3dVector(colors / 255.0)
        return cloud

    def export_ply(self, path: str | Path, palette=None) -> None:
        """Write the voxels as a binary PLY (`pcseg.io.write_labelled_ply`).

        Per vertex: x y z (float32, `voxel_points`), red green blue (uint8, fused label
        through `palette`), label (int32), observations, count (frames that hit the
        voxel) and entropy (nats) (float32 each).

        Args:
            path: the .ply file to write.
            palette: (C, 3) uint8 or float [0, 1] colours; `default_palette(C)` when None.

        Raises:
            ValueError: when the map is empty or the palette is not (C, 3) colours.
        """
        if self.num_voxels == 0:
            raise ValueError("the map is empty: integrate a frame before export_ply")
        write_labelled_ply(
            path,
            self.voxel_points(),
            self.voxel_labels(),
            normalize_palette(palette, self.num_classes),
            properties={
                "observations": self.voxel_observations(),
                "count": self.voxel_counts().astype(np.float32),
                "entropy": self.voxel_entropy(),
            },
            comment=f"pcseg VoxelLabelMap voxel_size={self.voxel_size} mode={self.mode} num_classes={self.num_classes}",
        )


# ----- late fusion ---------------------------------------------------------------------------
class FusedPrediction(NamedTuple):
    """Result of `late_fusion`.

    Attributes:
        probabilities: (N, C) float fused distribution.
        labels: (N,) int64 its argmax.
    """

    probabilities: Array
    labels: Array


def late_fusion(
    logits_3d: Array,
    probabilities_2d: Array,
    visible: Array | None = None,
    weight_3d: float = 1.0,
    weight_2d: float = 1.0,
    min_probability: float = 1e-3,
) -> FusedPrediction:
    """Weighted log-linear fusion of a 3D model's logits with painted 2D probabilities.

    log p(c) = weight_3d * log_softmax(logits_3d)(c) + weight_2d * log(max(p_2d(c), min_probability)) + const.

    Args:
        logits_3d: (N, C) float logits of a 3D model.
        probabilities_2d: (N, C) float painted probabilities (e.g.
            `paint_points(...).probabilities`).
        visible: optional (N,) bool: where False (no 2D observation) only the 3D term counts.
        weight_3d: weight of the 3D term, >= 0.
        weight_2d: weight of the 2D term, >= 0.
        min_probability: floor of the 2D probabilities.

    Returns:
        fused: FusedPrediction(probabilities (N, C), labels (N,)), same array kind as
        logits_3d.

    Raises:
        ValueError: on shapes that do not match, or negative weights.
    """
    logits_t, to_numpy = as_tensor(logits_3d, "logits_3d")
    probabilities_t, _ = as_tensor(probabilities_2d, "probabilities_2d")
    if logits_t.dim() != 2 or logits_t.shape[0] == 0:
        raise ValueError(f"logits_3d must be (N, C) with N > 0, got shape {tuple(logits_t.shape)}")
    if probabilities_t.shape != logits_t.shape:
        raise ValueError(
            f"probabilities_2d must match logits_3d {tuple(logits_t.shape)}, got {tuple(probabilities_t.shape)}"
        )
    if weight_3d < 0 or weight_2d < 0:
        raise ValueError(f"weights must be non-negative, got weight_3d={weight_3d}, weight_2d={weight_2d}")
    dtype = torch.float64 if logits_t.dtype == torch.float64 else torch.float32
    log_2d = probabilities_t.to(device=logits_t.device, dtype=dtype).clamp_min(min_probability).log()
    if visible is not None:
        visible_t, _ = as_tensor(visible, "visible")
        if visible_t.shape != (logits_t.shape[0],):
            raise ValueError(f"visible must be (N,) with N={logits_t.shape[0]}, got {tuple(visible_t.shape)}")
        log_2d = log_2d * visible_t.to(device=logits_t.device, dtype=dtype)[:, None]
    fused = weight_3d * torch.log_softmax(logits_t.to(dtype), dim=1) + weight_2d * log_2d
    probabilities = torch.softmax(fused, dim=1)
    labels = torch.max(fused, dim=1).indices
    return FusedPrediction(from_tensor(probabilities, to_numpy), from_tensor(labels, to_numpy))
