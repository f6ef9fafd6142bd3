"""Python API for robotics stacks: a trained model as a numpy-in, numpy-out segmenter.

    segmenter = Segmenter.from_checkpoint("runs/demo/best.pt", device="cpu")
    labels, probabilities = segmenter.predict(points, colors)   # (N,) int64, (N, C) float32

Any N: the cloud is cut into tiles of bounded size and each tile is predicted with sliding
blocks (``pcseg.predict.segment_cloud``). The segmenter holds only its model (in eval mode,
never modified) and its config: no global state is read or written, and ``predict`` may be
called from several threads at once (e.g. ROS callbacks); each call runs under
``torch.no_grad`` with its own random generator.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pcseg.config import Config

__all__ = ["Segmenter"]


class Segmenter:
    """A trained segmentation model behind ``predict(points, colors=None)``.

    model: a pcseg segmentation model; config: the ``Config`` it was trained with (inputs,
    block size, class count); max_tile_points: the largest tile (with its margin) predicted
    at once, which bounds memory.
    """

    def __init__(self, model: torch.nn.Module, config: Config, device: str | torch.device = "cpu",
                 max_tile_points: int = 300_000, batch_size: int = 16):
        self.model = model.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        self.max_tile_points = int(max_tile_points)
        self.batch_size = int(batch_size)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", **kwargs) -> "Segmenter":
        """Loads a checkpoint written by ``pcseg train`` (``torch.load(weights_only=True)``)."""
        from pcseg.train import model_from_checkpoint

        model, config, _ = model_from_checkpoint(path, device)
        return cls(model, config, device, **kwargs)

    @property
    def num_classes(self) -> int:
        return self.config.data.num_classes

    @property
    def class_names(self) -> list[str]:
        from pcseg.evaluate import class_names_for

        return class_names_for(self.config)

    def predict(self, points: np.ndarray, colors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """points ``(N, 3)`` float (metres, z up), colors ``(N, 3)`` float in [0, 1] or uint8
        (None: mid grey) -> labels ``(N,)`` int64 and probabilities ``(N, num_classes)`` float32."""
        from pcseg.predict import segment_cloud

        points = np.asarray(points)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must be an (N, 3) array, got shape {points.shape}")
        if not np.isfinite(points).all():
            raise ValueError("points contain NaN or inf; drop them before predict")
        if len(points) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.num_classes), dtype=np.float32)
        if colors is not None and not self.config.data.use_color:
            colors = None
        with torch.no_grad():
            result = segment_cloud(self.model, self.config, points, colors, self.device,
                                   max_tile_points=self.max_tile_points, batch_size=self.batch_size)
        return result["labels"], result["probabilities"]
