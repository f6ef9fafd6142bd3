"""The robotics API: a trained model as a numpy-in, numpy-out segmenter (``pcseg.Segmenter``).

    segmenter = Segmenter.from_checkpoint("runs/demo/best.pt", device="cpu")
    labels, probabilities = segmenter.predict(points, colors)   # (N,) int64, (N, C) float32

Any N, any frame: the cloud's offset is removed in float64, it is cut into tiles of bounded
size and each tile is predicted with blocks placed where its points are
(``pcseg.predict.segment_cloud``). The segmenter holds only its model (in eval mode,
never modified) and its config: no global state is read or written, and ``predict`` may be
called from several threads at once (e.g. ROS callbacks); each call runs under
``torch.no_grad`` with its own random generator. Loading and predicting need the checkpoint
format and the inference code only, never the trainer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pcseg.checkpoint import model_from_checkpoint
from pcseg.config import Config
from pcseg.predict import segment_cloud

__all__ = ["Segmenter"]


class Segmenter:
    """A trained segmentation model behind ``predict(points, colors=None)``.

    Args:
        model: a pcseg segmentation model (put in eval mode on ``device``, never modified).
        config: the ``Config`` it was trained with (inputs, block size, class count).
        device: where the model runs.
        max_tile_points: the most points of a tile (with its margin) predicted at once, which
            bounds memory.
        batch_size: blocks per forward pass.
    """

    def __init__(self, model: torch.nn.Module, config: Config, device: str | torch.device = "cpu",
                 max_tile_points: int = 300_000, batch_size: int = 16):
        self.model = model.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        self.max_tile_points = int(max_tile_points)
        self.batch_size = int(batch_size)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", **kwargs) -> Segmenter:
        """Loads a checkpoint written by ``pcseg train`` (``torch.load(weights_only=True)``).

        Args:
            path: the checkpoint (``best.pt`` / ``last.pt`` of a run folder).
            device: where the model runs.
            **kwargs: ``max_tile_points``, ``batch_size`` (see the class).

        Returns:
            segmenter: the checkpoint's model with its own config.

        Raises:
            FileNotFoundError: when ``path`` is not a file.
            ValueError: when it is not a pcseg checkpoint.
        """
        model, config, _ = model_from_checkpoint(path, device)
        return cls(model, config, device, **kwargs)

    @property
    def num_classes(self) -> int:
        """The number of classes the model predicts."""
        return self.config.data.num_classes

    @property
    def class_names(self) -> list[str]:
        """One name per class (``pcseg.evaluate.class_names_for``)."""
        from pcseg.evaluate import class_names_for

        return class_names_for(self.config)

    def predict(self, points: np.ndarray, colors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Segments a cloud of any size, in any frame.

        Blocks are placed relative to the cloud and its offset is removed in float64 before
        any float32 work, so a cloud and the same cloud shifted (even by millions of metres,
        as in a UTM map frame; pass float64 there) get the same result to float rounding.

        Args:
            points: (N, 3) float coordinates in metres, z up.
            colors: (N, 3) float in [0, 1] or uint8 0..255; None: mid grey (also ignored when the
                model was trained without colour).

        Returns:
            labels: (N,) int64.
            probabilities: (N, num_classes) float32.

        Raises:
            ValueError: when ``points`` is not (N, 3) or holds NaN or inf, or ``colors`` does not
                match it, holds NaN or inf, or is out of range (``pcseg.predict.check_colors``).
        """
        with torch.no_grad():
            result = segment_cloud(self.model, self.config, points, colors, self.device,
                                   max_tile_points=self.max_tile_points, batch_size=self.batch_size)
        return result["labels"], result["probabilities"]
