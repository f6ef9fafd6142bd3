"""A-CNN: annularly convolutional networks on point clouds (Komarichev et al., CVPR 2019).

One encoder level (``AnnularLevel``) does:

1. farthest point sampling of ``num_centers`` centres (``pcseg.ops.farthest_point_sample``);
2. per ring ``[r_inner, r_outer)``: up to ``samples`` neighbours of each centre
   (``pcseg.ops.ring_query``), ordered counter-clockwise around the centre's normal;
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
``pcseg.ops.estimate_normals`` (PCA over ``normal_k`` neighbours, oriented towards +z). The
centres of level 2 take the normals of the level-1 centres they were sampled from. With
``normals_as_features=True`` (the default, as in the authors' ModelNet/ShapeNet models) the
normals are also level 1's input features, before any user ``features``.

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
    FullyConnected,
    MaskedBatchNorm,
    SharedMLP,
    check_inputs,
    lengths_mask,
    masked_max,
    no_aux_loss,
    scaled,
)

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

    Three levels at ``num_points / 4``, ``/ 16``, ``/ 64`` centres with rings of 0.1/0.2 m,
    0.2/0.4 m and 0.4/0.8 m (PointNet++'s S3DIS radii 0.1, 0.2, 0.4, 0.8 split into an inner
    disc and an outer annulus), no global level, and PointNet++'s S3DIS decoder widths. At
    4,096 points per block about 25 points fall within 0.1 m of a point on a wall or floor,
    hence 16 / 32 samples per ring.

    Args:
        num_points: points per block fed to the model.

    Returns:
        kwargs: ``levels``, ``global_mlp`` (None) and ``fp_mlps`` for ``ACNNSeg``.

    Raises:
        ValueError: when ``num_points < 64``.
    """
    if num_points < 64:
        raise ValueError(f"num_points must be >= 64 for the block preset, got {num_points}")
    return {
        "levels": [
            AnnularLevelConfig(num_points // 4, [(0.0, 0.1), (0.1, 0.2)], [16, 32], [[32, 32, 64], [32, 32, 64]]),
            AnnularLevelConfig(num_points // 16, [(0.0, 0.2), (0.2, 0.4)], [16, 32], [[64, 64, 128], [64, 64, 128]]),
            AnnularLevelConfig(num_points // 64, [(0.0, 0.4), (0.4, 0.8)], [16, 32], [[128, 128, 256], [128, 128, 256]]),
        ],
        "global_mlp": None,
        "fp_mlps": [[256, 256], [256, 128], [128, 128, 128]],
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


class CircularConv(nn.Module):
    """Kernel-3 circular convolution along the ring axis of channels-last ``(B, M, K, C_in)``.

    ``y_j = W_0 x_{j-1} + W_1 x_j + W_2 x_{j+1}`` with indices mod K, i.e. exactly
    ``nn.Conv1d(C_in, C_out, 3, padding=1, padding_mode="circular", bias=False)`` applied to
    each ring (``weight (C_out, C_in, 3)`` has that layout). Computed as one matrix product
    ``C_in -> 3 C_out`` on the wrapped ring and three shifted views, which the CPU runs faster
    than a ``(1, 3)`` ``Conv2d`` on ``(B, C, M, K)``. No bias: batch norm follows.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3))
        # Conv1d's default initialisation (fan_in = 3 C_in).
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = x.shape[-2]
        # Wrap one neighbour onto each end of the ring, then read the three taps as shifted views.
        wrapped = torch.cat([x[..., -1:, :], x, x[..., :1, :]], dim=-2)  # (B, M, K + 2, C_in)
        taps = F.linear(wrapped, self.weight.permute(2, 0, 1).reshape(3 * self.out_channels, self.in_channels))
        c = self.out_channels
        return taps[..., 0:k, 0:c] + taps[..., 1:k + 1, c:2 * c] + taps[..., 2:k + 2, 2 * c:3 * c]


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
        return x.amax(dim=2)


class AnnularLevel(nn.Module):
    """One A-CNN set-abstraction level (see the module docstring)."""

    def __init__(self, in_channels: int, config: AnnularLevelConfig, width_multiplier: float = 1.0):
        super().__init__()
        self.config = config
        self.rings = nn.ModuleList(
            CircularConvStack(3 + in_channels, [scaled(w, width_multiplier) for w in widths]) for widths in config.mlps
        )
        self.out_channels = sum(r.out_channels for r in self.rings)

    def forward(self, xyz, normals, features, lengths):
        """``xyz (B, N, 3)``, ``normals (B, N, 3)``, ``features (B, N, C)`` or None, ``lengths (B,)`` or None
        -> centres ``(B, M, 3)``, their normals ``(B, M, 3)``, features ``(B, M, C_out)`` in xyz's dtype,
        centre lengths ``(B,)`` or None (None = every cloud has M centres)."""
        cfg = self.config
        # A cloud smaller than num_centers keeps all its points (FPS pads with -1).
        num_centers = min(cfg.num_centers, xyz.shape[1])
        centre_idx = ops.farthest_point_sample(xyz, num_centers, lengths=lengths)
        new_xyz = ops.gather_points(xyz, centre_idx)
        new_normals = ops.gather_points(normals, centre_idx)
        counts = (centre_idx >= 0).sum(1)
        new_lengths = None if bool((counts == num_centers).all()) else counts
        centre_mask = None if new_lengths is None else centre_idx >= 0
        outputs = []
        for (r_in, r_out), k, stack in zip(cfg.rings, cfg.samples, self.rings):
            _, idx = ops.ring_query(new_xyz, xyz, new_normals, r_in, r_out, k, query_lengths=new_lengths, lengths=lengths)
            idx = fill_ring_slots(idx, centre_idx)
            grouped = ops.group_points(xyz, idx) - new_xyz[:, :, None, :]
            if centre_mask is not None:
                # Padded centres sit at 0 with zero neighbours; keep their offsets 0 as well.
                grouped = grouped * centre_mask[:, :, None, None].to(grouped.dtype)
            if features is not None:
                grouped = torch.cat([grouped, ops.group_points(features, idx)], dim=-1)
            outputs.append(stack(grouped, centre_mask))
        new_features = torch.cat(outputs, dim=-1).to(xyz.dtype)
        return new_xyz, new_normals, new_features, new_lengths


def _input_normals(points, normals, lengths, normal_k):
    if normals is None:
        with torch.no_grad():
            return ops.estimate_normals(points, k=normal_k, lengths=lengths)
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

    def forward(self, points, features, normals, lengths):
        """Checks the inputs, then -> lists (per level, level 0 = input) of xyz, features (or None), lengths."""
        check_inputs(points, features, self.in_channels)
        lengths_mask(lengths, points.shape[0], points.shape[1], points.device)  # validates lengths
        normals = _input_normals(points, normals, lengths, self.normal_k)
        feats = features.to(points.dtype) if features is not None and features.shape[-1] else None
        if self.normals_as_features:
            feats = normals if feats is None else torch.cat([normals, feats], dim=-1)
        xyzs, featss, lengthss = [points], [feats], [lengths]
        xyz, nrm, ln = points, normals, lengths
        for level in self.levels:
            xyz, nrm, feats, ln = level(xyz, nrm, feats, ln)
            xyzs.append(xyz)
            featss.append(feats)
            lengthss.append(ln)
        return xyzs, featss, lengthss


def _mask(lengths, xyz):
    return None if lengths is None else torch.arange(xyz.shape[1], device=xyz.device)[None] < lengths[:, None]


class ACNNCls(nn.Module):
    """A-CNN classification network.

    Defaults are the authors' model (:func:`acnn_classification_levels`), then a global level
    (xyz + features -> shared MLP (256, 512, 1024) -> max-pool over the remaining centres), then
    FC (512, 256) with batch norm and dropout ``dropout`` (drop probability, 0.6 per the
    authors' configuration) after each, then ``num_classes`` logits ``(B, num_classes)``.
    """

    def __init__(self, num_classes: int = 40, in_channels: int = 0, levels: Sequence[AnnularLevelConfig] | None = None,
                 global_mlp: Sequence[int] = (256, 512, 1024), fc: Sequence[int] = (512, 256), dropout: float = 0.6,
                 width_multiplier: float = 1.0, normals_as_features: bool = True, normal_k: int = 16):
        super().__init__()
        s = lambda w: scaled(w, width_multiplier)  # noqa: E731
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.encoder = _ACNNEncoder(in_channels, list(levels or acnn_classification_levels()), width_multiplier, normals_as_features, normal_k)
        self.global_mlp = SharedMLP(3 + self.encoder.levels[-1].out_channels, [s(w) for w in global_mlp])
        self.head = FullyConnected(self.global_mlp.out_channels, [s(w) for w in fc], dropout=dropout)
        self.classifier = nn.Linear(self.head.out_channels, num_classes)

    def forward(self, points: torch.Tensor, features: torch.Tensor | None = None, normals: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None, return_aux: bool = False):
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
    """A-CNN segmentation network: the A-CNN encoder and a feature-propagation decoder.

    Encoder: ``levels`` (default the authors' classification levels) and, unless
    ``global_mlp=None``, a global level whose 1024-d max-pooled feature is copied back to every
    last-level centre. Decoder, deepest first, one entry of ``fp_mlps`` per step: features of
    the coarser level are interpolated onto the finer level's points
    (``pcseg.ops.three_nn_interpolate``, inverse-distance 3-NN), concatenated with the finer
    level's own features (skip connection; at level 0 the normals and input features) and
    passed through a shared MLP. Head: shared MLP (128) -> dropout 0.5 -> ``num_classes``
    logits ``(B, num_classes, N)``. ``len(fp_mlps)`` must equal ``len(levels)`` (+1 with a
    global level). For indoor blocks use ``ACNNSeg(num_classes, **acnn_block_preset(4096))``.
    """

    def __init__(self, num_classes: int, in_channels: int = 0, levels: Sequence[AnnularLevelConfig] | None = None,
                 global_mlp: Sequence[int] | None = (256, 512, 1024),
                 fp_mlps: Sequence[Sequence[int]] = ((256, 256), (256, 128), (128, 128, 128)),
                 head_width: int = 128, dropout: float = 0.5, width_multiplier: float = 1.0,
                 normals_as_features: bool = True, normal_k: int = 16):
        super().__init__()
        s = lambda w: scaled(w, width_multiplier)  # noqa: E731
        levels = list(levels or acnn_classification_levels())
        if len(fp_mlps) != len(levels) + (global_mlp is not None):
            raise ValueError(
                f"fp_mlps needs {len(levels) + (global_mlp is not None)} entries (one per level"
                f"{' plus the global level' if global_mlp is not None else ''}), got {len(fp_mlps)}"
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.encoder = _ACNNEncoder(in_channels, levels, width_multiplier, normals_as_features, normal_k)
        level_channels = [self.encoder.input_channels] + [lv.out_channels for lv in self.encoder.levels]
        self.global_mlp = None
        fp_iter = iter(fp_mlps)
        self.fp = nn.ModuleList()
        c = level_channels[-1]
        if global_mlp is not None:
            self.global_mlp = SharedMLP(3 + level_channels[-1], [s(w) for w in global_mlp])
            # Global feature copied to every last-level centre, joined with that centre's features.
            self.fp.append(SharedMLP(self.global_mlp.out_channels + level_channels[-1], [s(w) for w in next(fp_iter)]))
            c = self.fp[-1].out_channels
        for skip in reversed(level_channels[:-1]):
            self.fp.append(SharedMLP(c + skip, [s(w) for w in next(fp_iter)]))
            c = self.fp[-1].out_channels
        self.head = SharedMLP(c, [s(head_width), num_classes], last_plain=True, dropout_before_last=dropout)

    def forward(self, points: torch.Tensor, features: torch.Tensor | None = None, normals: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None, return_aux: bool = False):
        """Segments each cloud of a batch.

        Args:
            points: (B, N, 3) float32 coordinates.
            features: (B, N, in_channels) float32 per-point features, or None when in_channels is 0.
            normals: (B, N, 3) float32 unit normals, or None to estimate them (``normal_k`` neighbours).
            lengths: (B,) int64 real points per cloud (real points first), or None.
            return_aux: also return ``{"loss": 0}`` (A-CNN has no auxiliary training loss).

        Returns:
            logits: (B, num_classes, N) float32, and the aux dict when ``return_aux``.
        """
        xyzs, feats, lens = self.encoder(points, features, normals, lengths)
        fp_modules = iter(self.fp)
        current = feats[-1]  # (B, M_L, C) channels-last, float32
        if self.global_mlp is not None:
            mask = _mask(lens[-1], xyzs[-1])
            x = torch.cat([xyzs[-1], feats[-1]], dim=-1).transpose(1, 2)
            glob = masked_max(self.global_mlp(x, mask), mask, dim=2)  # (B, 1024)
            x = torch.cat([glob[:, :, None].expand(-1, -1, xyzs[-1].shape[1]).to(x.dtype), feats[-1].transpose(1, 2)], 1)
            current = next(fp_modules)(x, mask).transpose(1, 2).to(points.dtype)
        for level in range(len(xyzs) - 1, 0, -1):
            interpolated = ops.three_nn_interpolate(xyzs[level - 1], xyzs[level], current, known_lengths=lens[level])
            skip = feats[level - 1]
            x = interpolated if skip is None else torch.cat([interpolated, skip], dim=-1)
            mask = _mask(lens[level - 1], xyzs[level - 1])
            current = next(fp_modules)(x.transpose(1, 2), mask)
            if level > 1:
                current = current.transpose(1, 2).to(points.dtype)
        logits = self.head(current, _mask(lengths, points))
        return (logits, no_aux_loss(points)) if return_aux else logits
