"""Segmentation and classification models: PointNet and A-CNN.

``MODELS`` maps the config names to classes; ``build_model(name, **kwargs)`` calls the class
with the config's keyword arguments. All segmentation models take ``points (B, N, 3)`` and
optional ``features (B, N, in_channels)`` / ``lengths (B,)`` and return logits
``(B, num_classes, N)``; classification models return ``(B, num_classes)``.
"""
from __future__ import annotations

from pcseg.models.acnn import (
    ACNNCls,
    ACNNSeg,
    AnnularLevelConfig,
    acnn_block_preset,
    acnn_classification_levels,
)
from pcseg.models.pointnet import FEATURE_TRANSFORM_WEIGHT, PointNetCls, PointNetSeg, PointNetSemSeg, TNet

MODELS = {
    "pointnet": PointNetSeg,
    "pointnet_sem_seg": PointNetSemSeg,
    "pointnet_cls": PointNetCls,
    "acnn": ACNNSeg,
    "acnn_cls": ACNNCls,
}


def build_model(name: str, **kwargs):
    """Instantiate ``MODELS[name](**kwargs)``; unknown names raise a ``KeyError`` listing the known ones.

    For A-CNN, ``levels`` may be given as a list of dicts (as read from YAML); they are turned
    into :class:`AnnularLevelConfig`.
    """
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    levels = kwargs.get("levels")
    if levels is not None:
        kwargs["levels"] = [lv if isinstance(lv, AnnularLevelConfig) else AnnularLevelConfig(**lv) for lv in levels]
    return MODELS[name](**kwargs)


__all__ = [
    "MODELS",
    "build_model",
    "PointNetSeg",
    "PointNetSemSeg",
    "PointNetCls",
    "TNet",
    "ACNNSeg",
    "ACNNCls",
    "AnnularLevelConfig",
    "acnn_block_preset",
    "acnn_classification_levels",
    "FEATURE_TRANSFORM_WEIGHT",
]
