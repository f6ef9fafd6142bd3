"""Segmentation and classification models: PointNet and A-CNN.

``MODELS`` maps the config names to classes; ``build_model(name, **kwargs)`` calls the class
with the config's keyword arguments. Every model has one forward signature,
``forward(points, features=None, normals=None, lengths=None, return_aux=False)``:
``points (B, N, 3)``, optional ``features (B, N, in_channels)``, ``normals (B, N, 3)`` (used by
A-CNN, which estimates them when None; ignored by PointNet) and ``lengths (B,)``. Segmentation
models return logits ``(B, num_classes, N)``, classification models ``(B, num_classes)``; with
``return_aux=True`` also a dict whose ``"loss"`` is the model's auxiliary training loss (a 0-d
tensor, zero for models without one), so a trainer adds it without knowing the model class.
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
    """Instantiates ``MODELS[name](**kwargs)``.

    Args:
        name: a key of ``MODELS``.
        **kwargs: the class's keyword arguments; A-CNN's ``levels`` may be a list of dicts (as
            read from YAML), which become ``AnnularLevelConfig``.

    Returns:
        model: the new model.

    Raises:
        KeyError: for an unknown name (the message lists the known ones).
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
