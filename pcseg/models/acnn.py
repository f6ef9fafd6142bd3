"""A-CNN: annularly convolutional networks on point clouds (Komarichev et al., CVPR 2019).

One encoder level (``AnnularLevel``) does:

1. farthest point sampling of ``num_centers`` centres (``pcseg.ops.farthest_point_sample``);
2. per ring ``[r_inner, r_outer)``: up to ``samples`` neighbours of each centre
   (``pcseg.ops.ring_query``), ordered counter-clockwise seen from the tip of the centre's
   normal, starting from the farthest neighbour. The authors' ``tf_ordering`` sorts clockwise
   (its comment says counter-clockwise): pcseg's order is the mirror image, equivalent for
   learning (a mirrored ring meets the mirrored kernel ``W_2, W_1, W_0``);
3. neighbour features = neighbour xyz minus the centre xyz (**raw** world-axis offsets, not
   the tangent frame: the angular order already carries the orientation, and raw offsets keep
   the level translation-equivariant like PointNet++) concatenated with the neighbours'
   features (``pcseg.ops.group_points``);
4. a stack of circular convolutions of kernel size 3 along the ordered ring (``CircularConv``,
   equal to ``Conv1d(kernel_size=3, padding=1, padding_mode="circular")`` per ring, so the
   ring wraps from its last neighbour to its first), each followed by batch norm and ReLU,
   one per MLP width;
5. max-pool over the ring; the rings' outputs are concatenated.

**Missing ring slots.** ``ring_query`` returns -1 for slots it could not fill (fewer than
``samples`` points in the annulus). We fill them by cyclic repetition of the kept, angle-ordered
neighbours: a ring with kept neighbours ``a b c`` and 7 slots reads ``a b c a b c a``, so every
window of the circular convolution still sees angular neighbours (only the seam where the
repetition is cut, here ``a | a``, repeats a point). An empty ring falls back to the centre
itself in every slot (relative xyz 0, the centre's own features), which is what PointNet++'s
ball query does for an empty ball.

**Normals** come from the input (``normals (B, N, 3)``) when given, else
``pcseg.ops.estimate_normals`` (PCA over ``normal_k`` neighbours, facing the centre of the
cloud's bounding box, ``viewpoint="interior"``). A flipped normal reverses its ring's order, so the
orientation must be consistent. The centres of level 2 take the normals of the level-1 centres
they were sampled from. With ``normals_as_features=True`` (``ACNNSeg``'s default, as in the
authors' part-segmentation model) the normals are also level 1's input features, before any
user ``features``; ``ACNNCls`` defaults to False, as the authors' ModelNet model (xyz offsets
only). Where the user ``features`` already hold the normals (pcseg's geometric features), set
it to False so that the normals enter the model once.

Padding (``lengths``) is respected everywhere: FPS, ring query and interpolation only see real
points, padded centres are excluded from max-pools and from train-mode batch-norm statistics.
Between levels features are kept in the points' dtype (float32), so the models run under
``torch.autocast("cpu", dtype=torch.bfloat16)`` with the native ops seeing float32 only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pcseg import ops
from pcseg.models.layers import (
    Dropout,
    FullyConnected,
    MaskedBatchNorm,
    SharedMLP,
    batch_norm_side_by_side,
    check_inputs,
    lengths_mask,
    masked_max,
    max_over,
    no_aux_loss,
    scaled,
)
from pcseg.ops.three_nn_interpolate import _weights as three_nn_weights

__all__ = [
    "AnnularLevelConfig",
    "AnnularLevel",
    "ACNNCls",
    "ACNNSeg",
    "acnn_classification_levels",
    "acnn_block_preset",
    "fill_ring_slots",
]


@dataclass
class AnnularLevelConfig:
    """One encoder level: ``num_centers`` FPS centres and one entry per ring.

    Args:
        num_centers: centres sampled by farthest point sampling.
        rings: ``(r_inner, r_outer)`` per ring, in the points' units.
        samples: neighbours kept per ring.
        mlps: the circular-convolution widths of each ring.

    Raises:
        ValueError: when the lists differ in length, a ring is empty or its radii are not
            ``0 <= r_inner < r_outer``.
    """

    num_centers: int
    rings: Sequence[tuple[float, float]]
    samples: Sequence[int]
    mlps: Sequence[Sequence[int]]

    def __post_init__(self) -> None:
        if self.num_centers < 1:
            raise ValueError(f"num_centers must be >= 1, got {self.num_centers}")
        if not (len(self.rings) == len(self.samples) == len(self.mlps)) or len(self.rings) == 0:
            raise ValueError(
                f"rings, samples and mlps need one entry per ring, got {len(self.rings)}, "
                f"{len(self.samples)}, {len(self.mlps)}"
            )
        for (r_in, r_out), k, widths in zip(self.rings, self.samples, self.mlps):
            if not 0.0 <= r_in < r_out:
                raise ValueError(f"ring radii must satisfy 0 <= r_inner < r_outer, got ({r_in}, {r_out})")
            if k < 1 or len(widths) == 0:
                raise ValueError(f"each ring needs samples >= 1 and at least one MLP width, got {k}, {widths}")


def acnn_classification_levels() -> list[AnnularLevelConfig]:
    """The authors' classification encoder (unit-sphere shapes, 1,024 input points)."""
    return [
        AnnularLevelConfig(512, [(0.0, 0.1), (0.1, 0.2)], [16, 48], [[32, 32, 64], [64, 64, 128]]),
        AnnularLevelConfig(128, [(0.1, 0.2), (0.3, 0.4)], [16, 48], [[64, 64, 128], [128, 128, 256]]),
    ]


def acnn_block_preset(num_points: int = 4096) -> dict:
    """``ACNNSeg`` keyword arguments for indoor blocks (1 m x 1 m x room height, in metres).

    pcseg's own design: the authors' code has no S3DIS model. Three levels at
    ``num_points / 4``, ``/ 16``, ``/ 64`` centres with rings of 0.1/0.2 m, 0.2/0.4 m and
    0.4/0.8 m (the radii 0.1, 0.2, 0.4, 0.8 of PointNet++'s ScanNet model, each split into an
    inner disc and an outer annulus), no global level, and the authors' decoder (every level
    interpolated to the points, ``ACNNSeg``'s default ``up_mlps``). At 4,096 points per block
    about 25 points fall within 0.1 m of a point on a wall or floor, hence 16 / 32 samples per
    ring. Fewer points per block mean fewer points per ring: the samples per ring scale with
    ``num_points / 4096`` (at least 8), so that cyclic repeats do not fill most slots.

    Args:
        num_points: points per block fed to the model.

    Returns:
        kwargs: ``levels`` and ``global_mlp`` (None) for ``ACNNSeg``.

    Raises:
        ValueError: when ``num_points < 64``.
    """
    if num_points < 64:
        raise ValueError(f"num_points must be >= 64 for the block preset, got {num_points}")
    density = min(1.0, num_points / 4096)
    k = [max(8, round(16 * density)), max(8, round(32 * density))]
    return {
        "levels": [
            AnnularLevelConfig(num_points // 4, [(0.0, 0.1), (0.1, 0.2)], k, [[32, 32, 64], [32, 32, 64]]),
            AnnularLevelConfig(num_points // 16, [(0.0, 0.2), (0.2, 0.4)], k, [[64, 64, 128], [64, 64, 128]]),
            AnnularLevelConfig(num_points // 64, [(0.0, 0.4), (0.4, 0.8)], k, [[128, 128, 256], [128, 128, 256]]),
        ],
        "global_mlp": None,
    }


def fill_ring_slots(idx: torch.Tensor, centre_idx: torch.Tensor) -> torch.Tensor:
    """Fills the -1 slots of ``ring_query`` indices by cyclic repetition (see the module docstring).

    Slot ``j`` takes kept neighbour ``j mod n`` (``n`` = kept count); rings with ``n = 0`` take
    the centre itself.

    Args:
        idx: (B, M, K) int64 ring indices, kept slots first, -1 for unfilled ones.
        centre_idx: (B, M) int64 index of each centre (-1 for padded centres, which then
            gather zeros).

    Returns:
        filled: (B, M, K) int64 without -1 except for padded centres.
    """
    k = idx.shape[-1]
    kept = (idx >= 0).sum(-1, keepdim=True)  # (B, M, 1), kept slots come first
    slot = torch.arange(k, device=idx.device) % kept.clamp_min(1)
    filled = idx.gather(-1, slot)
    return torch.where(kept == 0, centre_idx[..., None].expand_as(idx), filled)


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def group_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` at ``idx``, the one gather of the learned part.

    Eager it is ``pcseg.ops.group_points``; while tracing (``pcseg.export``) it is an
    ``index_select`` on the flattened batch, which ONNX exports as one Gather with one index per
    row (``gather`` would become GatherElements, one index per element) and TorchScript runs
    without pcseg's extension. The traced form reads row 0 for -1 slots: exported graphs see
    full blocks, where -1 only occurs in the interpolation's zero-weight slots.

    Args:
        x: (B, N, C) float rows.
        idx: (B, M, K) int64 in [-1, N).

    Returns:
        rows: (B, M, K, C), zeros at -1 slots (eager).
    """
    if not _tracing():
        return ops.group_points(x, idx)
    b, n, c = x.shape
    rows = idx.clamp_min(0) + (torch.arange(b, device=idx.device) * n).view(b, 1, 1)
    return torch.index_select(x.reshape(b * n, c), 0, rows.reshape(-1)).reshape(idx.shape + (c,))


def interpolate(features: torch.Tensor, idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum_j weight_j features[idx_j]`` over the 3 nearest known points.

    Eager it is the native ``three_interpolate`` (``pcseg.ops.three_nn_interpolate``'s sum);
    while tracing, the gathered rows times their weights summed in the same order.

    Args:
        features: (B, m, C) float features of the known points.
        idx: (B, n, 3) int64 nearest known points, -1 where there are fewer than 3.
        weight: (B, n, 3) float their weights (0 at -1 slots).

    Returns:
        features: (B, n, C) in ``features``' dtype.
    """
    if not _tracing():
        return torch.ops.pcseg.three_interpolate(features, idx, weight.to(features.dtype))
    rows = group_rows(features, idx)
    w = weight.to(features.dtype)[..., None]
    return rows[:, :, 0] * w[:, :, 0] + rows[:, :, 1] * w[:, :, 1] + rows[:, :, 2] * w[:, :, 2]


def upsample_level(
    up: SharedMLP,
    coarse: torch.Tensor,
    index: torch.Tensor,
    weight: torch.Tensor,
    skip: torch.Tensor | None,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """One branch of the authors' decoder: a level's features interpolated to the input points,
    the skip features appended (level 1), then the branch's shared MLP ``up``.

    When ``up``'s first layer is narrower than the level's features, that layer's product is
    taken on the level's few points before the interpolation instead of after: both are linear,
    so the result is the same, and the interpolation (and its backward) moves the narrower
    features. The skip features get their share of the product at the points, and the bias is
    added once, after the sum.

    Args:
        up: the branch's ``SharedMLP`` (first layer ``C_level + C_skip -> C_up``).
        coarse: (B, M, C_level) float features of the level's centres.
        index: (B, N, 3) int64 nearest centres of each point (-1 where fewer than 3).
        weight: (B, N, 3) float their weights (0 at -1 slots).
        skip: (B, N, C_skip) float input features of the points, or None.
        mask: (B, N) bool real points, or None.

    Returns:
        features: (B, N, C_out) of ``up``.
    """
    first, bias = up.linear_weights(0)  # (C_up, C_level + C_skip), (C_up,)
    c_level = coarse.shape[-1]
    if first.shape[0] >= c_level:
        x = interpolate(coarse, index, weight)
        if skip is not None:
            x = torch.cat([x, skip], dim=-1)
        return up.forward_channels_last(x.contiguous(), mask)
    # back to the features' dtype under autocast: the native interpolation takes float32 / float64
    x = interpolate(F.linear(coarse, first[:, :c_level]).to(coarse.dtype), index, weight)
    if skip is not None:
        x = x + F.linear(skip, first[:, c_level:])
    return up.forward_channels_last(x + bias, mask, first_applied=True)


class CircularConv(nn.Module):
    """Kernel-3 circular convolution along the ring axis of channels-last ``(B, M, K, C_in)``.

    ``y_j = W_0 x_{j-1} + W_1 x_j + W_2 x_{j+1}`` with indices mod K, i.e. exactly
    ``nn.Conv1d(C_in, C_out, 3, padding=1, padding_mode="circular", bias=bias)`` applied to
    each ring (``weight (C_out, C_in, 3)`` and ``bias (C_out,)`` have that layout). Computed as
    one matrix product and two rolls along the ring, the rolls on the narrower side: when
    ``C_in <= C_out`` the inputs are rolled and the three neighbours concatenated
    (``3 C_in -> C_out``), else the product gives the three taps (``C_in -> 3 C_out``) and the
    taps are rolled. No sliced views, whose backward would zero-fill and copy a tap-sized
    tensor each, and no ``(1, 3)`` ``Conv2d`` on ``(B, C, M, K)``, which the CPU runs slower.
    The bias is on by default because the authors' ``tf_util.conv2d`` has one (it is redundant
    before batch norm but counts in their parameter totals).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        # Conv1d's default initialisation (fan_in = 3 C_in).
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        if self.bias is not None:
            bound = 1.0 / (3 * in_channels) ** 0.5
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return circular_conv(x, self.weight, self.bias)


def circular_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``CircularConv``'s computation: ``x (B, M, K, C_in)``, ``weight (C_out, C_in, 3)``, ``bias
    (C_out,)`` or None -> ``(B, M, K, C_out)``."""
    c, c_in = weight.shape[0], weight.shape[1]
    if c_in <= c:
        # (x_{j-1}, x_j, x_{j+1}) side by side, against weight laid out (C_out, tap, C_in)
        neighbours = torch.cat([x.roll(1, dims=-2), x, x.roll(-1, dims=-2)], dim=-1)
        return F.linear(neighbours, weight.permute(0, 2, 1).reshape(c, 3 * c_in), bias)
    taps = F.linear(x, weight.permute(2, 0, 1).reshape(3 * c, c_in))  # (B, M, K, 3 C_out)
    # split, not unflatten + unbind: the ONNX trace of unflatten freezes the batch and ring sizes
    previous, centre, following = taps.split(c, dim=-1)
    # y_j = W_0 x_{j-1} + W_1 x_j + W_2 x_{j+1}: tap 0 of slot j-1 moves to j, tap 2 of j+1 to j.
    out = previous.roll(1, dims=-2) + centre + following.roll(-1, dims=-2)
    return out if bias is None else out + bias


class CircularConvStack(nn.Module):
    """Circular convolutions + batch norm + ReLU on rings ``(B, M, K, C)``, then max over K."""

    def __init__(self, in_channels: int, widths: Sequence[int]):
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.convs.append(CircularConv(c, w))
            self.norms.append(MaskedBatchNorm(w, channels_last=True))
            c = w
        self.out_channels = c

    def forward(self, x: torch.Tensor, centre_mask: torch.Tensor | None) -> torch.Tensor:
        """``x (B, M, K, C)``, ``centre_mask (B, M) bool`` -> ``(B, M, C_out)``."""
        mask = None if centre_mask is None else centre_mask[:, :, None].expand(-1, -1, x.shape[2])
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x), mask))
        return max_over(x, 2)


# The widest layer (channels) of rings that ``AnnularLevel`` runs side by side.
SIDE_BY_SIDE_MAX_WIDTH = 32


def stacks_side_by_side(stacks: Sequence[CircularConvStack], x: torch.Tensor, centre_mask: torch.Tensor | None):
    """The ring stacks of one level run as one: ``x (B, M, K, C_1 + C_2 + ...)`` holds each
    stack's input side by side (rings of equal K, stacks of equal depth) -> ``(B, M, C_out_1 +
    C_out_2 + ...)``, equal to ``torch.cat([stack_i(x_i, centre_mask) for i], -1)``.

    Each layer is one circular convolution whose weight is block-diagonal over the rings (the
    rings' weights, zero elsewhere), one batch norm (``batch_norm_side_by_side``) and one ReLU:
    a third of the calls of ring after ring, each on a wider tensor. Rings are narrow at the
    demo's widths, where the calls and not the products cost the time.
    """
    mask = None if centre_mask is None else centre_mask[:, :, None].expand(-1, -1, x.shape[2])
    for layer in range(len(stacks[0].convs)):
        convs = [stack.convs[layer] for stack in stacks]
        total_in = sum(conv.in_channels for conv in convs)
        blocks, offset = [], 0
        for conv in convs:
            blocks.append(F.pad(conv.weight, (0, 0, offset, total_in - offset - conv.in_channels)))
            offset += conv.in_channels
        weight = torch.cat(blocks, dim=0)  # (sum C_out, sum C_in, 3), block-diagonal
        bias = None if convs[0].bias is None else torch.cat([conv.bias for conv in convs])
        y = circular_conv(x, weight, bias)
        x = F.relu(batch_norm_side_by_side([stack.norms[layer] for stack in stacks], y, mask))
    return max_over(x, 2)


class AnnularLevel(nn.Module):
    """One A-CNN set-abstraction level (see the module docstring)."""

    def __init__(self, in_channels: int, config: AnnularLevelConfig, width_multiplier: float = 1.0):
        super().__init__()
        self.config = config
        self.rings = nn.ModuleList(
            CircularConvStack(3 + in_channels, [scaled(w, width_multiplier) for w in widths]) for widths in config.mlps
        )
        self.out_channels = sum(r.out_channels for r in self.rings)
        # Narrow rings run side by side (``stacks_side_by_side``): fewer, wider calls. Its
        # block-diagonal products multiply the rings' FLOPs by their number, which costs more
        # than the calls save once the rings are wide.
        self.side_by_side = (
            len({len(stack.convs) for stack in self.rings}) == 1
            and max(conv.out_channels for stack in self.rings for conv in stack.convs) <= SIDE_BY_SIDE_MAX_WIDTH
        )

    def neighbourhoods(self, xyz, normals, lengths):
        """The level's search (no parameters): ``xyz (B, N, 3)``, ``normals (B, N, 3)``, ``lengths (B,)``
        or None -> centre indices ``(B, M)`` (-1 for padded centres), per ring the filled ring indices
        ``(B, M, K)``, the centres ``(B, M, 3)``, their normals ``(B, M, 3)``, centre lengths ``(B,)``
        or None (None = every cloud has M centres)."""
        cfg = self.config
        # A cloud smaller than num_centers keeps all its points (FPS pads with -1).
        num_centers = min(cfg.num_centers, xyz.shape[1])
        centre_idx = ops.farthest_point_sample(xyz, num_centers, lengths=lengths)
        new_xyz = ops.gather_points(xyz, centre_idx)
        new_normals = ops.gather_points(normals, centre_idx)
        new_lengths = _centre_lengths(centre_idx, lengths)
        rings = []
        for (r_in, r_out), k in zip(cfg.rings, cfg.samples):
            _, idx = ops.ring_query(
                new_xyz, xyz, new_normals, r_in, r_out, k, query_lengths=new_lengths, lengths=lengths
            )
            rings.append(fill_ring_slots(idx, centre_idx))
        return centre_idx, rings, new_xyz, new_normals, new_lengths

    def forward_from_neighbourhoods(self, xyz, features, centre_idx, rings, lengths):
        """The level's learned part: ``xyz (B, N, 3)``, ``features (B, N, C)`` or None, what
        ``neighbourhoods`` found, ``lengths (B,)`` or None -> centres ``(B, M, 3)``, features
        ``(B, M, C_out)`` in xyz's dtype, centre lengths ``(B,)`` or None."""
        new_xyz = group_rows(xyz, centre_idx[:, :, None])[:, :, 0]
        new_lengths = _centre_lengths(centre_idx, lengths)
        centre_mask = None if new_lengths is None else centre_idx >= 0
        if self.side_by_side and len({idx.shape[-1] for idx in rings}) == 1:
            # every ring holds K slots: one gather and one stack of layers for all rings
            b, m, k = rings[0].shape
            table = xyz if features is None else torch.cat([xyz, features.to(xyz.dtype)], dim=-1)
            c = table.shape[-1]
            grouped = group_rows(table, torch.stack(list(rings), dim=3).reshape(b, m, k * len(rings)))
            # offsets from the centre in the xyz columns of each ring, features as they are
            grouped = grouped.reshape(b, m, k, len(rings), c) - F.pad(new_xyz, (0, c - 3))[:, :, None, None, :]
            if centre_mask is not None:
                grouped = grouped * centre_mask[:, :, None, None, None].to(grouped.dtype)
            x = grouped.reshape(b, m, k, len(rings) * c)
            return new_xyz, stacks_side_by_side(self.rings, x, centre_mask).to(xyz.dtype), new_lengths
        outputs = []
        for idx, stack in zip(rings, self.rings):
            grouped = group_rows(xyz, idx) - new_xyz[:, :, None, :]
            if centre_mask is not None:
                # Padded centres sit at 0 with zero neighbours; keep their offsets 0 as well.
                grouped = grouped * centre_mask[:, :, None, None].to(grouped.dtype)
            if features is not None:
                grouped = torch.cat([grouped, group_rows(features, idx)], dim=-1)
            outputs.append(stack(grouped, centre_mask))
        new_features = torch.cat(outputs, dim=-1).to(xyz.dtype)
        return new_xyz, new_features, new_lengths

    def forward(self, xyz, normals, features, lengths):
        """Both: -> centres ``(B, M, 3)``, their normals ``(B, M, 3)``, features ``(B, M, C_out)``,
        centre lengths ``(B,)`` or None."""
        centre_idx, rings, _, new_normals, _ = self.neighbourhoods(xyz, normals, lengths)
        new_xyz, new_features, new_lengths = self.forward_from_neighbourhoods(xyz, features, centre_idx, rings, lengths)
        return new_xyz, new_normals, new_features, new_lengths


def _centre_lengths(centre_idx, lengths):
    """Real centres per cloud ``(B,)``, or None when every cloud has all of them (always the case
    without ``lengths``, as FPS then fills every slot: no data-dependent branch while tracing)."""
    if lengths is None:
        return None
    counts = (centre_idx >= 0).sum(1)
    return None if bool((counts == centre_idx.shape[1]).all()) else counts


def _input_normals(points, normals, lengths, normal_k):
    if normals is None:
        with torch.no_grad():
            return ops.estimate_normals(points, k=normal_k, lengths=lengths, viewpoint="interior")
    if normals.shape != points.shape:
        raise ValueError(f"normals must have the points' shape {tuple(points.shape)}, got {tuple(normals.shape)}")
    return normals.to(points.dtype)


class _ACNNEncoder(nn.Module):
    def __init__(self, in_channels, levels, width_multiplier, normals_as_features, normal_k):
        super().__init__()
        self.in_channels = in_channels
        self.normal_k = normal_k
        if len(levels) == 0:
            raise ValueError("levels must hold at least one AnnularLevelConfig")
        self.normals_as_features = normals_as_features
        self.input_channels = in_channels + (3 if normals_as_features else 0)
        self.levels = nn.ModuleList()
        c = self.input_channels
        for cfg in levels:
            level = AnnularLevel(c, cfg, width_multiplier)
            self.levels.append(level)
            c = level.out_channels

    def search(self, points, normals, lengths):
        """The levels' neighbourhoods (as ``neighbourhoods``) and per level (level 0 = input) xyz and lengths."""
        found: dict[str, torch.Tensor] = {}
        xyzs, lengthss = [points], [lengths]
        xyz, nrm, ln = points, normals, lengths
        for l, level in enumerate(self.levels):
            centre_idx, rings, xyz, nrm, ln = level.neighbourhoods(xyz, nrm, ln)
            found[f"centres_{l}"] = centre_idx
            for r, idx in enumerate(rings):
                found[f"rings_{l}_{r}"] = idx
            xyzs.append(xyz)
            lengthss.append(ln)
        return found, xyzs, lengthss

    def neighbourhoods(self, points, normals=None, lengths=None):
        """What the levels search for: ``centres_{l}`` (B, M_l) int64 FPS centres (-1 padded) and
        ``rings_{l}_{r}`` (B, M_l, K_r) int64 filled ring indices, level ``l`` from 0."""
        lengths_mask(lengths, points.shape[0], points.shape[1], points.device)  # validates lengths
        normals = _input_normals(points, normals, lengths, self.normal_k)
        return self.search(points, normals, lengths)[0]

    def forward_from_neighbourhoods(self, points, features, normals, neighbourhoods, lengths=None):
        """The levels' learned part on what ``neighbourhoods`` found -> lists (per level, level 0 =
        input) of xyz, features (or None), lengths."""
        check_inputs(points, features, self.in_channels)
        lengths_mask(lengths, points.shape[0], points.shape[1], points.device)  # validates lengths
        normals = _input_normals(points, normals, lengths, self.normal_k)
        feats = features.to(points.dtype) if features is not None and features.shape[-1] else None
        if self.normals_as_features:
            feats = normals if feats is None else torch.cat([normals, feats], dim=-1)
        xyzs, featss, lengthss = [points], [feats], [lengths]
        xyz, ln = points, lengths
        for l, level in enumerate(self.levels):
            rings = [neighbourhoods[f"rings_{l}_{r}"] for r in range(len(level.rings))]
            xyz, feats, ln = level.forward_from_neighbourhoods(xyz, feats, neighbourhoods[f"centres_{l}"], rings, ln)
            xyzs.append(xyz)
            featss.append(feats)
            lengthss.append(ln)
        return xyzs, featss, lengthss

    def forward(self, points, features, normals, lengths):
        """Checks the inputs, then -> lists (per level, level 0 = input) of xyz, features (or None), lengths."""
        check_inputs(points, features, self.in_channels)
        lengths_mask(lengths, points.shape[0], points.shape[1], points.device)  # validates lengths
        normals = _input_normals(points, normals, lengths, self.normal_k)
        found = self.search(points, normals, lengths)[0]
        return self.forward_from_neighbourhoods(points, features, normals, found, lengths)


def _mask(lengths, xyz):
    return None if lengths is None else torch.arange(xyz.shape[1], device=xyz.device)[None] < lengths[:, None]


class ACNNCls(nn.Module):
    """A-CNN classification network.

    Defaults are the authors' ModelNet model (``acnn_cls_rings.py``): level 1 sees xyz offsets
    only (``normals_as_features=False``: the normals only order the rings), the levels of
    :func:`acnn_classification_levels`, then a global level (xyz + features -> shared MLP
    (256, 512, 1024) -> max-pool over the remaining centres), then FC (512, 256) with batch norm
    and dropout ``dropout`` (drop probability, 0.6 per the authors' configuration) after each,
    then ``num_classes`` logits ``(B, num_classes)``. ``ACNNCls(40)`` has the authors' 1,774,792
    parameters.
    """

    def __init__(
        self,
        num_classes: int = 40,
        in_channels: int = 0,
        levels: Sequence[AnnularLevelConfig] | None = None,
        global_mlp: Sequence[int] = (256, 512, 1024),
        fc: Sequence[int] = (512, 256),
        dropout: float = 0.6,
        width_multiplier: float = 1.0,
        normals_as_features: bool = False,
        normal_k: int = 16,
    ):
        super().__init__()
        s = lambda w: scaled(w, width_multiplier)  # noqa: E731
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.encoder = _ACNNEncoder(
            in_channels, list(levels or acnn_classification_levels()), width_multiplier, normals_as_features, normal_k
        )
        self.global_mlp = SharedMLP(3 + self.encoder.levels[-1].out_channels, [s(w) for w in global_mlp])
        self.head = FullyConnected(self.global_mlp.out_channels, [s(w) for w in fc], dropout=dropout)
        self.classifier = nn.Linear(self.head.out_channels, num_classes)

    def forward(
        self,
        points: torch.Tensor,
        features: torch.Tensor | None = None,
        normals: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        return_aux: bool = False,
    ):
        """Classifies each cloud of a batch.

        Args:
            points: (B, N, 3) float32 coordinates.
            features: (B, N, in_channels) float32 per-point features, or None when in_channels is 0.
            normals: (B, N, 3) float32 unit normals, or None to estimate them.
            lengths: (B,) int64 real points per cloud (real points first), or None.
            return_aux: also return ``{"loss": 0}`` (A-CNN has no auxiliary training loss).

        Returns:
            logits: (B, num_classes) float32, and the aux dict when ``return_aux``.
        """
        xyzs, feats, lens = self.encoder(points, features, normals, lengths)
        x = torch.cat([xyzs[-1], feats[-1]], dim=-1).transpose(1, 2)
        mask = _mask(lens[-1], xyzs[-1])
        glob = masked_max(self.global_mlp(x, mask), mask, dim=2)
        logits = self.classifier(self.head(glob))
        return (logits, no_aux_loss(points)) if return_aux else logits


class ACNNSeg(nn.Module):
    """A-CNN segmentation network: the encoder and the authors' decoder (``acnn_segm_rings.py``).

    Encoder: ``levels`` (default the authors' classification levels) and, unless
    ``global_mlp=None``, a global level (xyz + features -> shared MLP -> max-pool over the last
    centres). Decoder: every level's features are interpolated **straight to the input points**
    (``pcseg.ops.three_nn_interpolate``, inverse squared distance over the 3 nearest centres) and
    passed through their own shared MLP, ``up_mlps`` (level 1 first, then the global level;
    default ``[128, 128, 128]`` for level 1, whose input also holds the level-0 features
    (normals and ``features``), and ``[64]`` for every deeper level, as the authors'). The
    results are concatenated, deepest first, with the category one-hot (``num_categories > 0``)
    and the input xyz, then ``head`` (256, 256, 128 with dropout ``dropout`` after the first
    two) and ``num_classes`` logits ``(B, num_classes, N)``.

    The global level holds one feature per cloud, so its interpolation is a broadcast: its
    ``up_mlp`` runs once per cloud instead of once per point (the same values; batch-norm
    statistics in train mode are then over clouds, equal to the per-point ones when the clouds
    have equal lengths).

    ``ACNNSeg(50, num_categories=16)`` with normals as inputs is the authors' ShapeNet-part
    network with their parameter count, 1,434,162. For indoor blocks use
    ``ACNNSeg(num_classes, **acnn_block_preset(4096))``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 0,
        levels: Sequence[AnnularLevelConfig] | None = None,
        global_mlp: Sequence[int] | None = (256, 512, 1024),
        up_mlps: Sequence[Sequence[int]] | None = None,
        head: Sequence[int] = (256, 256, 128),
        dropout: float = 0.4,
        num_categories: int = 0,
        width_multiplier: float = 1.0,
        normals_as_features: bool = True,
        normal_k: int = 16,
    ):
        super().__init__()
        s = lambda w: scaled(w, width_multiplier)  # noqa: E731
        levels = list(levels or acnn_classification_levels())
        branches = len(levels) + (global_mlp is not None)
        if up_mlps is None:
            up_mlps = [[128, 128, 128]] + [[64]] * (branches - 1)
        if len(up_mlps) != branches:
            raise ValueError(
                f"up_mlps needs {branches} entries (one per level"
                f"{' plus the global level' if global_mlp is not None else ''}), got {len(up_mlps)}"
            )
        if num_categories < 0:
            raise ValueError(f"num_categories must be >= 0, got {num_categories}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_categories = num_categories
        self.encoder = _ACNNEncoder(in_channels, levels, width_multiplier, normals_as_features, normal_k)
        level_channels = [lv.out_channels for lv in self.encoder.levels]
        self.global_mlp = None
        if global_mlp is not None:
            self.global_mlp = SharedMLP(3 + level_channels[-1], [s(w) for w in global_mlp])
            level_channels.append(self.global_mlp.out_channels)
        skip = self.encoder.input_channels
        self.up = nn.ModuleList(
            SharedMLP(c + (skip if i == 0 else 0), [s(w) for w in widths])
            for i, (c, widths) in enumerate(zip(level_channels, up_mlps))
        )
        c = sum(up.out_channels for up in self.up) + num_categories + 3
        self.head = nn.ModuleList()
        for w in head:
            self.head.append(SharedMLP(c, [s(w)]))
            c = self.head[-1].out_channels
        self.head_dropout = Dropout(dropout) if dropout > 0 else None
        self.classifier = nn.Linear(c, num_classes)

    def forward(
        self,
        points: torch.Tensor,
        features: torch.Tensor | None = None,
        normals: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        return_aux: bool = False,
        categories: torch.Tensor | None = None,
    ):
        """Segments each cloud of a batch.

        Args:
            points: (B, N, 3) float32 coordinates.
            features: (B, N, in_channels) float32 per-point features, or None when in_channels is 0.
            normals: (B, N, 3) float32 unit normals, or None to estimate them (``normal_k`` neighbours).
            lengths: (B,) int64 real points per cloud (real points first), or None.
            return_aux: also return ``{"loss": 0}`` (A-CNN has no auxiliary training loss).
            categories: (B,) int64 object category of each cloud in [0, num_categories), required
                when the model was built with ``num_categories > 0``, else None.

        Returns:
            logits: (B, num_classes, N) float32, and the aux dict when ``return_aux``.

        Raises:
            ValueError: when ``categories`` is missing, present without categories, or not (B,)
                in range.
        """
        check_inputs(points, features, self.in_channels)
        lengths_mask(lengths, points.shape[0], points.shape[1], points.device)  # validates lengths
        normals = _input_normals(points, normals, lengths, self.encoder.normal_k)
        found = self.neighbourhoods(points, normals, lengths)
        return self.forward_from_neighbourhoods(points, features, normals, found, lengths, return_aux, categories)

    def neighbourhoods(
        self, points: torch.Tensor, normals: torch.Tensor | None = None, lengths: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """What ``forward`` searches for, by pcseg's native ops (no parameters involved).

        Args:
            points: (B, N, 3) float32 coordinates.
            normals: (B, N, 3) float32 unit normals, or None to estimate them.
            lengths: (B,) int64 real points per cloud, or None.

        Returns:
            neighbourhoods: in this order, per encoder level ``l`` from 0 ``centres_{l}``
            (B, M_l) int64 FPS centres (-1 for padded ones) and per ring ``r``
            ``rings_{l}_{r}`` (B, M_l, K_r) int64 angle-ordered ring indices, empty slots filled
            (``fill_ring_slots``); then per level ``l`` from 1 the 3 nearest level-``l`` centres
            of every input point, ``interp_index_{l}`` (B, N, 3) int64 (-1 where the cloud has
            fewer than 3) and their inverse-squared-distance weights ``interp_weight_{l}``
            (B, N, 3) float32.

        Raises:
            ValueError: on bad ``normals`` or ``lengths``.
        """
        encoder = self.encoder
        lengths_mask(lengths, points.shape[0], points.shape[1], points.device)  # validates lengths
        normals = _input_normals(points, normals, lengths, encoder.normal_k)
        found, xyzs, lens = encoder.search(points, normals, lengths)
        for level in range(1, len(xyzs)):
            dists2, idx = ops.knn(points, xyzs[level], 3, lengths=lens[level])
            found[f"interp_index_{level}"] = idx
            found[f"interp_weight_{level}"] = three_nn_weights(dists2, idx)
        return found

    def neighbourhood_names(self) -> list[str]:
        """The keys ``neighbourhoods`` returns, in its order."""
        names = []
        for l, level in enumerate(self.encoder.levels):
            names += [f"centres_{l}"] + [f"rings_{l}_{r}" for r in range(len(level.rings))]
        for level in range(1, len(self.encoder.levels) + 1):
            names += [f"interp_index_{level}", f"interp_weight_{level}"]
        return names

    def forward_from_neighbourhoods(
        self,
        points: torch.Tensor,
        features: torch.Tensor | None,
        normals: torch.Tensor,
        neighbourhoods: dict[str, torch.Tensor],
        lengths: torch.Tensor | None = None,
        return_aux: bool = False,
        categories: torch.Tensor | None = None,
    ):
        """The learned part of ``forward`` on what ``neighbourhoods`` found; traceable (``pcseg.export``).

        Args:
            points: (B, N, 3) float32 coordinates.
            features: (B, N, in_channels) float32 per-point features, or None when in_channels is 0.
            normals: (B, N, 3) float32 unit normals, the ones the neighbourhoods were found with.
            neighbourhoods: ``neighbourhoods(points, normals, lengths)``.
            lengths, return_aux, categories: as for ``forward``.

        Returns:
            logits: (B, num_classes, N) float32, and the aux dict when ``return_aux``.

        Raises:
            ValueError: as ``forward``.
        """
        xyzs, feats, lens = self.encoder.forward_from_neighbourhoods(points, features, normals, neighbourhoods, lengths)
        one_hot = self._one_hot(categories, points)
        mask = _mask(lengths, points)
        b, n = points.shape[:2]
        ups = []
        for level, up in enumerate(self.up, start=1):
            if level == len(xyzs):  # the global level: one feature per cloud, broadcast to the points
                mask_l = _mask(lens[-1], xyzs[-1])
                x = torch.cat([xyzs[-1], feats[-1]], dim=-1).transpose(1, 2)
                glob = masked_max(self.global_mlp(x, mask_l), mask_l, dim=2)  # (B, C)
                ups.append(up(glob[:, :, None])[:, :, 0][:, None, :].expand(b, n, -1))
                continue
            index, weight = neighbourhoods[f"interp_index_{level}"], neighbourhoods[f"interp_weight_{level}"]
            skip = feats[0] if level == 1 else None
            ups.append(upsample_level(up, feats[level], index, weight, skip, mask))
        parts = ups[::-1] + ([one_hot[:, None, :].expand(b, n, -1)] if one_hot is not None else []) + [points]
        x = torch.cat([p.to(points.dtype) for p in parts], dim=-1)
        for i, layer in enumerate(self.head):
            x = layer.forward_channels_last(x, mask)
            if self.head_dropout is not None and i < len(self.head) - 1:
                x = self.head_dropout(x)
        logits = self.classifier(x).transpose(1, 2)
        return (logits, no_aux_loss(points)) if return_aux else logits

    def _one_hot(self, categories, points):
        if self.num_categories == 0:
            if categories is not None:
                raise ValueError("categories given but the model was built with num_categories=0")
            return None
        if categories is None:
            raise ValueError(f"the model was built with num_categories={self.num_categories}: pass categories (B,)")
        out_of_range = (categories < 0) | (categories >= self.num_categories)
        if categories.shape != (points.shape[0],) or bool(out_of_range.any()):
            raise ValueError(
                f"categories must be (B,) = ({points.shape[0]},) in [0, {self.num_categories}), "
                f"got {tuple(categories.shape)}"
            )
        return F.one_hot(categories.long(), self.num_categories).to(points.dtype)
