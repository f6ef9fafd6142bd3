"""PointNet (Qi et al., CVPR 2017): classification, part/scene segmentation and the S3DIS variant.

All models take ``points (B, N, 3)`` float32, optional ``features (B, N, in_channels)`` (colour,
normalised coordinates, ...), ``normals`` (accepted like every pcseg model's, unused: PointNet sees
normals only as feature channels) and optional ``lengths (B,)`` int64 for padded batches (real
points first). With ``return_aux=True`` they also return a dict whose ``"loss"`` is the
auxiliary training loss (the feature-transform regulariser where there is a feature T-Net).
Padding never changes the real points' outputs: every max-pool ignores padded points and
batch-norm statistics in train mode are taken over real points only (see ``layers.py``).

``width_multiplier`` scales every hidden width (T-Nets included) but not the input, the
``num_classes`` output or the transform sizes' ``k`` of the input T-Net (3); the feature T-Net's
``k`` is the scaled local width. ``width_multiplier=1`` is the published network.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pcseg.models.layers import FullyConnected, SharedMLP, check_inputs, lengths_mask, masked_max, no_aux_loss, scaled

__all__ = ["TNet", "PointNetCls", "PointNetSeg", "PointNetSemSeg", "FEATURE_TRANSFORM_WEIGHT"]

# The paper's weight of the feature-transform orthogonality regulariser in the training loss.
FEATURE_TRANSFORM_WEIGHT = 0.001


class TNet(nn.Module):
    """The transformation network predicting a ``(k, k)`` matrix per cloud (paper's Fig. 2 / appendix).

    Shared MLP (64, 128, 1024) -> masked max-pool -> FC (512, 256) with batch norm -> FC to
    ``k * k``, initialised to output the identity (zero weights, identity bias), as in the
    original ``transform_nets.py``.
    """

    def __init__(self, k: int, width_multiplier: float = 1.0):
        super().__init__()
        self.k = k
        s = lambda w: scaled(w, width_multiplier)  # noqa: E731
        self.mlp = SharedMLP(k, [s(64), s(128), s(1024)])
        self.fc = FullyConnected(s(1024), [s(512), s(256)])
        self.out = nn.Linear(s(256), k * k)
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():
            self.out.bias.copy_(torch.eye(k).flatten())

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B, k, N)``, ``mask (B, N) bool`` or None -> transform ``(B, k, k)`` (applied as ``x^T A``)."""
        g = masked_max(self.mlp(x, mask), mask, dim=2)
        return self.out(self.fc(g)).view(-1, self.k, self.k)


def _aux_with_loss(aux: dict[str, torch.Tensor], points: torch.Tensor) -> dict[str, torch.Tensor]:
    """``aux`` plus ``"loss"``: the paper's weighted feature-transform regulariser, or 0 without a feature T-Net."""
    if "feature_transform" not in aux:
        return {**aux, **no_aux_loss(points)}
    from pcseg.losses import feature_transform_regularizer  # training only: inference never asks for aux

    return {**aux, "loss": FEATURE_TRANSFORM_WEIGHT * feature_transform_regularizer(aux["feature_transform"])}


def _transform(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply ``matrix (B, k, k)`` to channels-first ``x (B, k, N)``: rows ``x_i^T A``."""
    return torch.bmm(matrix.transpose(1, 2).to(x.dtype), x)


class _PointNetEncoder(nn.Module):
    """Input T-Net on xyz, MLP (64, 64), feature T-Net, MLP (64, 128, 1024), masked max-pool."""

    def __init__(self, in_channels: int, width_multiplier: float, input_transform: bool, feature_transform: bool):
        super().__init__()
        s = lambda w: scaled(w, width_multiplier)  # noqa: E731
        self.in_channels = in_channels
        self.input_tnet = TNet(3, width_multiplier) if input_transform else None
        self.mlp1 = SharedMLP(3 + in_channels, [s(64), s(64)])
        self.feature_tnet = TNet(s(64), width_multiplier) if feature_transform else None
        self.mlp2 = SharedMLP(s(64), [s(64), s(128), s(1024)])
        self.local_channels = s(64)
        self.global_channels = s(1024)

    def forward(self, points, features, mask):
        """-> local ``(B, 64, N)``, global ``(B, 1024)``, aux dict of transforms."""
        aux: dict[str, torch.Tensor] = {}
        xyz = points.transpose(1, 2)  # (B, 3, N)
        if self.input_tnet is not None:
            a = self.input_tnet(xyz, mask)
            aux["input_transform"] = a
            xyz = _transform(xyz, a)
        x = (
            xyz
            if features is None or self.in_channels == 0
            else torch.cat([xyz, features.transpose(1, 2).to(xyz.dtype)], 1)
        )
        local = self.mlp1(x, mask)
        if self.feature_tnet is not None:
            a = self.feature_tnet(local, mask)
            aux["feature_transform"] = a
            local = _transform(local, a)
        glob = masked_max(self.mlp2(local, mask), mask, dim=2)
        return local, glob, aux


class PointNetCls(nn.Module):
    """PointNet classification network (paper Fig. 2, top): 3.5 M parameters for 40 classes.

    Encoder as in :class:`PointNetSeg`, then FC (512, 256) with batch norm and dropout 0.3 after
    each (the original ``keep_prob=0.7``), then FC to ``num_classes``.
    """

    def __init__(
        self,
        num_classes: int = 40,
        in_channels: int = 0,
        width_multiplier: float = 1.0,
        dropout: float = 0.3,
        input_transform: bool = True,
        feature_transform: bool = True,
    ):
        super().__init__()
        s = lambda w: scaled(w, width_multiplier)  # noqa: E731
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.encoder = _PointNetEncoder(in_channels, width_multiplier, input_transform, feature_transform)
        self.head = FullyConnected(self.encoder.global_channels, [s(512), s(256)], dropout=dropout)
        self.classifier = nn.Linear(s(256), num_classes)

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
            normals: unused (the common model signature).
            lengths: (B,) int64 real points per cloud (real points first), or None.
            return_aux: also return the aux dict.

        Returns:
            logits: (B, num_classes) float32, and when ``return_aux`` the dict of the transforms
            ``(B, k, k)`` and ``"loss"``, the auxiliary training loss.
        """
        check_inputs(points, features, self.in_channels)
        mask = lengths_mask(lengths, points.shape[0], points.shape[1], points.device)
        _, glob, aux = self.encoder(points, features, mask)
        logits = self.classifier(self.head(glob))
        return (logits, _aux_with_loss(aux, points)) if return_aux else logits


class PointNetSeg(nn.Module):
    """PointNet segmentation network (paper Fig. 2, bottom).

    Input T-Net (3x3, on xyz only), shared MLP (64, 64), feature T-Net (64x64), shared MLP
    (64, 128, 1024), masked max-pool -> 1024-d global feature, concatenated to each point's 64-d
    (transformed) local feature -> shared MLP (512, 256, 128, 128) with batch norm -> per-point
    ``num_classes`` logits. Extra per-point channels (``in_channels``) join xyz after the input
    transform. With ``return_aux=True`` the forward also returns
    ``{"input_transform": (B, 3, 3), "feature_transform": (B, 64, 64), "loss": ()}``, where
    ``"loss"`` is ``FEATURE_TRANSFORM_WEIGHT * pcseg.losses.feature_transform_regularizer(
    aux["feature_transform"])``, to be added to the training loss as the paper does.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 0,
        width_multiplier: float = 1.0,
        input_transform: bool = True,
        feature_transform: bool = True,
    ):
        super().__init__()
        s = lambda w: scaled(w, width_multiplier)  # noqa: E731
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.encoder = _PointNetEncoder(in_channels, width_multiplier, input_transform, feature_transform)
        self.head = SharedMLP(
            self.encoder.local_channels + self.encoder.global_channels,
            [s(512), s(256), s(128), s(128), num_classes],
            last_plain=True,
        )

    def forward(
        self,
        points: torch.Tensor,
        features: torch.Tensor | None = None,
        normals: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        return_aux: bool = False,
    ):
        """Segments each cloud of a batch.

        Args:
            points: (B, N, 3) float32 coordinates.
            features: (B, N, in_channels) float32 per-point features, or None when in_channels is 0.
            normals: unused (the common model signature).
            lengths: (B,) int64 real points per cloud (real points first), or None.
            return_aux: also return the aux dict (see the class docstring).

        Returns:
            logits: (B, num_classes, N) float32, and the aux dict when ``return_aux``.
        """
        check_inputs(points, features, self.in_channels)
        n = points.shape[1]
        mask = lengths_mask(lengths, points.shape[0], n, points.device)
        local, glob, aux = self.encoder(points, features, mask)
        x = torch.cat([local, glob[:, :, None].expand(-1, -1, n).to(local.dtype)], dim=1)
        logits = self.head(x, mask)
        return (logits, _aux_with_loss(aux, points)) if return_aux else logits


class PointNetSemSeg(nn.Module):
    """The S3DIS semantic segmentation PointNet (original code's ``sem_seg/model.py``).

    No T-Nets. Input xyz + ``in_channels`` features (6 by default: RGB and room-normalised xyz,
    9 channels in all as in the paper) -> shared MLP (64, 64, 64, 128, 1024) -> masked max-pool
    -> FC (256, 128) with batch norm -> concatenated back to every point's 1024-d feature
    (1024 + 128) -> shared MLP (512, 256) -> dropout 0.3 -> ``num_classes`` logits ``(B, C, N)``.
    """

    def __init__(
        self, num_classes: int = 13, in_channels: int = 6, width_multiplier: float = 1.0, dropout: float = 0.3
    ):
        super().__init__()
        s = lambda w: scaled(w, width_multiplier)  # noqa: E731
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.mlp = SharedMLP(3 + in_channels, [s(64), s(64), s(64), s(128), s(1024)])
        self.fc = FullyConnected(s(1024), [s(256), s(128)])
        self.head = SharedMLP(
            s(1024) + s(128), [s(512), s(256), num_classes], last_plain=True, dropout_before_last=dropout
        )

    def forward(
        self,
        points: torch.Tensor,
        features: torch.Tensor | None = None,
        normals: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        return_aux: bool = False,
    ):
        """Segments each cloud of a batch.

        Args:
            points: (B, N, 3) float32 coordinates.
            features: (B, N, in_channels) float32 per-point features, or None when in_channels is 0.
            normals: unused (the common model signature).
            lengths: (B,) int64 real points per cloud (real points first), or None.
            return_aux: also return ``{"loss": 0}`` (no T-Nets, no auxiliary training loss).

        Returns:
            logits: (B, num_classes, N) float32, and the aux dict when ``return_aux``.
        """
        check_inputs(points, features, self.in_channels)
        n = points.shape[1]
        mask = lengths_mask(lengths, points.shape[0], n, points.device)
        # channels-last (B, N, C) throughout, as the inputs come: no transposes until the logits
        x = points if not self.in_channels else torch.cat([points, features.to(points.dtype)], -1)
        point_features = self.mlp.forward_channels_last(x.contiguous(), mask)  # (B, N, 1024)
        glob = self.fc(masked_max(point_features, mask, dim=1, channels_last=True))  # (B, 128)
        # The head's first layer on [point feature, global feature] as two products: the global
        # one once per cloud, not once per point, and the (B, N, 1024 + 128) concatenation never made.
        weight, bias = self.head.linear_weights(0)
        c = point_features.shape[-1]
        h = F.linear(point_features, weight[:, :c].contiguous())
        h += F.linear(glob.to(h.dtype), weight[:, c:], bias)[:, None, :]
        logits = self.head.forward_channels_last(h, mask, first_applied=True).transpose(1, 2).contiguous()
        return (logits, no_aux_loss(points)) if return_aux else logits
