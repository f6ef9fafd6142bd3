"""The robotics API: a trained model as a numpy-in, numpy-out segmenter (``pcseg.Segmenter``).

    segmenter = Segmenter.from_checkpoint("runs/demo/best.pt", device="cpu")
    labels, probabilities = segmenter.predict(points, colors)   # (N,) int64, (N, C) float32
    # a pcseg.uncertainty.Prediction: labels, probabilities, entropy, mutual_information
    prediction = segmenter.predict(points, colors, uncertainty=True, mc_samples=8)

Any N, any frame: the cloud's offset is removed in float64, it is cut into tiles of bounded
size and each tile is predicted with blocks placed where its points are
(``pcseg.predict.segment_cloud``). The segmenter holds only its model (in eval mode,
never modified) and its config: no global state is read or written, and ``predict`` may be
called from several threads at once (e.g. ROS callbacks); each call runs under
``torch.no_grad`` with its own random generator (MC dropout passes excepted: they seed torch's
default generator, ``pcseg.uncertainty.mc_dropout_samples``). A temperature stored by
``pcseg calibrate`` is applied to the probabilities, then the CRF when ``refine="crf"``.
Loading and predicting need the checkpoint format and the inference code only, never the
trainer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pcseg.calibration import entropy, mutual_information
from pcseg.checkpoint import checkpoint_temperature, model_from_checkpoint
from pcseg.config import Config
from pcseg.predict import check_votes, segment_cloud
from pcseg.uncertainty import Prediction, apply_temperature, check_refine, mc_dropout_samples, refine_probabilities

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
        refine: None, or "crf": refine the probabilities with ``pcseg.refine.crf`` and the
            config's ``refine`` section.
        temperature: T > 0 dividing the logits before the softmax (``pcseg calibrate``).
        votes: passes averaged, the cloud turned about the vertical axis between them
            (``pcseg.predict.segment_cloud``'s test-time voting); 1: one pass.

    Raises:
        ValueError: when ``refine`` is not None or "crf", ``temperature`` is not positive, or
            ``votes`` is not an int >= 1.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: Config,
        device: str | torch.device = "cpu",
        max_tile_points: int = 300_000,
        batch_size: int = 16,
        refine: str | None = None,
        temperature: float = 1.0,
        votes: int = 1,
    ):
        check_refine(refine)
        check_votes(votes)
        if isinstance(temperature, bool) or not (0 < float(temperature) < float("inf")):
            raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
        self.model = model.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        self.max_tile_points = int(max_tile_points)
        self.batch_size = int(batch_size)
        self.refine = refine
        self.temperature = float(temperature)
        self.votes = votes

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", **kwargs) -> Segmenter:
        """Loads a checkpoint written by ``pcseg train`` (``torch.load(weights_only=True)``).

        Args:
            path: the checkpoint (``best.pt`` / ``last.pt`` of a run folder).
            device: where the model runs.
            **kwargs: ``max_tile_points``, ``batch_size``, ``refine``, ``temperature``, ``votes`` (see the
                class); the temperature defaults to the checkpoint's (1 when it has none).

        Returns:
            segmenter: the checkpoint's model with its own config.

        Raises:
            FileNotFoundError: when ``path`` is not a file.
            ValueError: when it is not a pcseg checkpoint.
        """
        model, config, checkpoint = model_from_checkpoint(path, device)
        kwargs.setdefault("temperature", checkpoint_temperature(checkpoint, path))
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

    def predict(
        self,
        points: np.ndarray,
        colors: np.ndarray | None = None,
        *,
        uncertainty: bool = False,
        mc_samples: int = 0,
        seed: int = 0,
        intensity: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray] | Prediction:
        """Segments a cloud of any size, in any frame.

        Blocks are placed relative to the cloud and its offset is removed in float64 before
        any float32 work, so a cloud and the same cloud shifted (even by millions of metres,
        as in a UTM map frame; pass float64 there) get the same result to float rounding.

        Args:
            points: (N, 3) float coordinates in metres, z up.
            colors: (N, 3) float in [0, 1] or uint8 0..255; None: mid grey (also ignored when the
                model was trained without colour).
            uncertainty: return a ``Prediction`` with the predictive entropy per point.
            mc_samples: S > 0: MC dropout over S passes (a ``Prediction`` with the mean
                probabilities, their entropy and the mutual information); 0: one pass.
            seed: the seed of the first MC dropout pass (the same seed, the same result).
            intensity: (N,) float LiDAR intensity / remission, for models trained with
                ``data.use_intensity`` (scaled by ``data.intensity_scale``).

        Returns:
            labels: (N,) int64.
            probabilities: (N, num_classes) float32.
            Or, when ``uncertainty`` or ``mc_samples`` is set, a ``pcseg.uncertainty.Prediction``
            ``(labels, probabilities, entropy, mutual_information)``: entropy (N,) float64 in
            nats, mutual_information (N,) float64 (None without MC dropout).

        Raises:
            ValueError: when ``points`` is not (N, 3) or holds NaN or inf, or ``colors`` does not
                match it, holds NaN or inf, or is out of range (``pcseg.predict.check_colors``);
                when ``mc_samples`` is negative or set for a model without dropout.
        """
        if isinstance(mc_samples, bool) or not isinstance(mc_samples, int) or mc_samples < 0:
            raise ValueError(f"mc_samples must be an int >= 0, got {mc_samples!r}")
        points = np.asarray(points)
        labels: np.ndarray | None
        information: np.ndarray | None
        if mc_samples and len(points):
            # every pass has dropout on: no deterministic pass is needed beside them
            def one_pass(model: torch.nn.Module) -> np.ndarray:
                return apply_temperature(
                    self._segment(model, points, colors, intensity)["probabilities"], self.temperature
                )

            samples = mc_dropout_samples(self.model, one_pass, mc_samples, seed)
            labels, probabilities = None, samples.mean(axis=0)
            information = mutual_information(samples)
        else:
            result = self._segment(self.model, points, colors, intensity)
            labels, probabilities = result["labels"], apply_temperature(result["probabilities"], self.temperature)
            information = np.zeros(0) if mc_samples else None
        return self._finish(points, colors, labels, probabilities, information, uncertainty, mc_samples)

    def _segment(
        self, model: torch.nn.Module, points: np.ndarray, colors: np.ndarray | None, intensity: np.ndarray | None
    ) -> dict:
        """One pass of ``model`` over the cloud (``pcseg.predict.segment_cloud``, no gradients)."""
        with torch.no_grad():
            return segment_cloud(
                model,
                self.config,
                points,
                colors,
                self.device,
                max_tile_points=self.max_tile_points,
                batch_size=self.batch_size,
                intensity=intensity,
                votes=self.votes,
            )

    def _finish(
        self,
        points: np.ndarray,
        colors: np.ndarray | None,
        labels: np.ndarray | None,
        probabilities: np.ndarray,
        information: np.ndarray | None,
        uncertainty: bool,
        mc_samples: int,
    ) -> tuple[np.ndarray, np.ndarray] | Prediction:
        """``predict``'s post-processing of the (temperature-scaled) probabilities: the CRF, the
        labels where the probabilities changed, and the return type asked for."""
        if self.refine == "crf" and len(points):
            probabilities = refine_probabilities(points, probabilities, colors, self.config.refine)
        if labels is None or self.refine or self.temperature != 1.0:
            labels = probabilities.argmax(axis=1)
        if uncertainty or mc_samples:
            return Prediction(labels, probabilities, entropy(probabilities), information)
        return labels, probabilities
