"""Semantic segmentation metrics from an accumulated confusion matrix.

``ConfusionMatrix`` counts ``(truth, prediction)`` pairs with one ``torch.bincount`` per
update; rows are the true class, columns the predicted class. It can be merged with another
matrix (``merge``) and summed over processes (``all_reduce``, a no-op unless
``torch.distributed`` is initialised).

Absent classes (documented rule, used by every report):

- a score whose denominator is 0 is NaN, never 0: IoU and F1 of a class absent from both the
  truth and the predictions, recall (= class accuracy) of a class absent from the truth,
  precision of a class never predicted;
- a class present in the truth but never predicted has recall 0, IoU 0 and F1 0 (it is a real
  miss), precision NaN;
- means (``mean_accuracy``, ``miou``, ``mean_f1``) are ``nanmean`` over classes, so NaN classes
  are left out; FWIoU weights each IoU by the class's share of true points, so classes absent
  from the truth get weight 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["ConfusionMatrix", "SegmentationScores"]


@dataclass
class SegmentationScores:
    """Scores from a confusion matrix; per-class tensors are ``(C,) float64`` (NaN = undefined)."""

    overall_accuracy: float
    mean_accuracy: float
    miou: float
    fwiou: float
    mean_f1: float
    iou: torch.Tensor
    accuracy: torch.Tensor  # per-class recall
    precision: torch.Tensor
    recall: torch.Tensor
    f1: torch.Tensor  # = Dice


def _nanmean(values: torch.Tensor) -> float:
    kept = values[~torch.isnan(values)]
    return float("nan") if kept.numel() == 0 else float(kept.mean())


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    out = torch.full_like(num, float("nan"))
    nonzero = den > 0
    out[nonzero] = num[nonzero] / den[nonzero]
    return out


class ConfusionMatrix:
    """Accumulates a ``(C, C) int64`` confusion matrix (rows truth, columns prediction).

    Args:
        num_classes: C, labels lie in ``[0, C)``.
        ignore_index: a truth label to skip (e.g. -1 or 255); ``None`` skips nothing.
        device: where the counts live (keep it on the predictions' device to avoid copies).

    Raises:
        ValueError: when ``num_classes`` is below 1.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, device: str | torch.device = "cpu"):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        """Set every count back to 0."""
        self.matrix.zero_()

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch.

        Args:
            prediction: labels with ``target``'s shape (int), or logits/scores with the class
                axis at dim 1 (``(B, C, N)`` or ``(P, C)``), reduced by ``argmax(dim=1)``.
            target: true labels, int, e.g. ``(B, N)``; entries equal to ``ignore_index`` are skipped.

        Raises:
            ValueError: when the shapes do not match or a label lies outside ``[0, C)``.
        """
        if prediction.is_floating_point():
            if prediction.dim() != target.dim() + 1 or prediction.shape[1] != self.num_classes:
                raise ValueError(
                    f"float prediction must be scores (B, {self.num_classes}, ...) matching target "
                    f"{tuple(target.shape)}, got {tuple(prediction.shape)}"
                )
            prediction = prediction.argmax(dim=1)
        if prediction.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(prediction.shape)} != target shape {tuple(target.shape)}")
        pred = prediction.reshape(-1).long().to(self.matrix.device)
        true = target.reshape(-1).long().to(self.matrix.device)
        if self.ignore_index is not None:
            keep = true != self.ignore_index
            pred, true = pred[keep], true[keep]
        if true.numel() == 0:
            return
        c = self.num_classes
        if true.min() < 0 or true.max() >= c:
            raise ValueError(f"target labels must lie in [0, {c}) or equal ignore_index={self.ignore_index}")
        if pred.min() < 0 or pred.max() >= c:
            raise ValueError(f"predicted labels must lie in [0, {c}), got [{int(pred.min())}, {int(pred.max())}]")
        self.matrix += torch.bincount(true * c + pred, minlength=c * c).reshape(c, c)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts into this one.

        Args:
            other: a matrix with the same ``num_classes``.

        Returns:
            self, for chaining.

        Raises:
            ValueError: when the class counts differ.
        """
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class counts into {self.num_classes}-class counts")
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def all_reduce(self) -> None:
        """Sum the counts over all processes when ``torch.distributed`` is initialised (else no-op).

        Every rank must call it (it is a collective). With the NCCL backend keep the matrix on
        the rank's CUDA device.
        """
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def compute(self) -> SegmentationScores:
        """Scores of the counts so far.

        Returns:
            scores: a ``SegmentationScores``; per-class tensors are ``(C,) float64`` with NaN
                where a score is undefined (see the module docstring for the rule).
        """
        m = self.matrix.to(torch.float64).cpu()
        tp = m.diag()
        truth = m.sum(1)  # TP + FN
        predicted = m.sum(0)  # TP + FP
        total = m.sum()
        recall = _ratio(tp, truth)
        precision = _ratio(tp, predicted)
        iou = _ratio(tp, truth + predicted - tp)
        f1 = _ratio(2.0 * tp, truth + predicted)
        oa = float(tp.sum() / total) if total > 0 else float("nan")
        if total > 0:
            freq = truth / total
            present = freq > 0
            fwiou = float((freq[present] * iou[present]).sum())
        else:
            fwiou = float("nan")
        return SegmentationScores(
            overall_accuracy=oa,
            mean_accuracy=_nanmean(recall),
            miou=_nanmean(iou),
            fwiou=fwiou,
            mean_f1=_nanmean(f1),
            iou=iou,
            accuracy=recall.clone(),
            precision=precision,
            recall=recall,
            f1=f1,
        )
