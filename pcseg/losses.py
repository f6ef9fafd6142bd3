"""Segmentation losses with ``ignore_index`` and optional class weights.

Every loss takes raw logits and integer labels in one of two layouts:

- segmentation: ``logits (B, C, N)`` (or any ``(B, C, *spatial)``) and ``labels (B, N)`` int64,
- flat: ``logits (P, C)`` and ``labels (P,)`` int64,

so ``loss(model(points), labels)`` works on the models' ``(B, num_classes, N)`` output.
Points whose label equals ``ignore_index`` contribute nothing (neither to the value nor to
the gradient). ``weight (C,)`` scales each class, as in ``F.cross_entropy``.

Which normalisation each loss uses is written in its docstring; the tests in
``tests/test_losses.py`` check every one against hand-computed values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "cross_entropy_loss",
    "noisy_label_cross_entropy_loss",
    "label_transition_from_confusion",
    "focal_loss",
    "soft_dice_loss",
    "tversky_loss",
    "lovasz_softmax_loss",
    "feature_transform_regularizer",
    "class_weights_from_counts",
]


def _flatten(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, C, *S)`` / ``(P, C)`` logits and matching labels -> ``(P, C)``, ``(P,)``."""
    if logits.dim() < 2:
        raise ValueError(f"logits must be (P, C) or (B, C, ...), got shape {tuple(logits.shape)}")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    num_classes = logits.shape[1]
    if logits.dim() == 2:
        expected = logits.shape[:1]
        flat_logits = logits
    else:
        expected = logits.shape[:1] + logits.shape[2:]
        flat_logits = logits.movedim(1, -1).reshape(-1, num_classes)
    if labels.shape != expected:
        raise ValueError(
            f"labels must have shape {tuple(expected)} to match logits {tuple(logits.shape)}, got {tuple(labels.shape)}"
        )
    return flat_logits, labels.reshape(-1).long()


def _valid(labels: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """Bool mask of labels to use; raises on labels outside ``[0, C)`` that are not ignored."""
    valid = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
    kept = labels[valid]
    if kept.numel() and (kept.min() < 0 or kept.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}, "
            f"got values in [{int(kept.min())}, {int(kept.max())}]"
        )
    return valid


def _kept(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat logits ``(P_kept, C)`` (half precision upcast to float32), labels ``(P_kept,)`` of the
    points not ignored, and the flat logits ``(P, C)`` of all points (for empty-batch zeros)."""
    flat_logits, flat_labels = _flatten(logits, labels)
    num_classes = flat_logits.shape[1]
    if weight is not None and weight.shape != (num_classes,):
        raise ValueError(f"weight must have shape ({num_classes},), got {tuple(weight.shape)}")
    valid = _valid(flat_labels, num_classes, ignore_index)
    z, y = flat_logits[valid], flat_labels[valid]
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    return z, y, flat_logits


def _reduce(per_point: torch.Tensor, point_weight: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        # Weighted mean, F.cross_entropy's convention: sum(w_y * l) / sum(w_y).
        return (per_point * point_weight).sum() / point_weight.sum()
    if reduction == "sum":
        return (per_point * point_weight).sum()
    if reduction == "none":
        return per_point * point_weight
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int | None = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Softmax cross-entropy, ``-w_y log softmax(z)_y``.

    ``mean`` divides by the summed weights of the kept points (``F.cross_entropy``'s rule;
    NaN when every point is ignored).

    Args:
        logits: (B, C, N) (or (B, C, *spatial)) or flat (P, C) float scores, unnormalised.
        labels: (B, N) (or (B, *spatial)) or flat (P,) integer class ids in [0, C).
        weight: (C,) float per-class weights, or None for equal weights.
        ignore_index: label of points that count nowhere (value and gradient); None keeps all.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        loss: () float, or (P_kept,) weighted per-point values in flat order for ``"none"``.

    Raises:
        ValueError: when shapes disagree, a label lies outside [0, C), or ``reduction`` is unknown.
        TypeError: when ``labels`` is not an integer tensor.
    """
    z, y, _ = _kept(logits, labels, weight, ignore_index)
    nll = -torch.log_softmax(z, dim=1).gather(1, y[:, None])[:, 0]
    point_weight = torch.ones_like(nll) if weight is None else weight.to(nll.dtype)[y]
    return _reduce(nll, point_weight, reduction)


def label_transition_from_confusion(confusion, smoothing: float = 0.0) -> torch.Tensor:
    """The label-noise transition matrix of a 2D network from its confusion matrix.

    ``T[i, j]`` is the chance that a point of true class ``i`` carries label ``j``: the
    confusion matrix (rows true classes, columns predicted) with each row divided by its
    sum. A row with no count (a class absent from the validation images) becomes the identity
    row: nothing is known of its errors, so its labels are taken as right.

    Args:
        confusion: (C, C) counts or probabilities (numpy or torch), rows true classes.
        smoothing: mass spread evenly over a row's C entries before normalising, in [0, 1).

    Returns:
        transition: (C, C) float32, rows summing to 1.

    Raises:
        ValueError: when it is not square, holds a negative or non-finite value, or
            ``smoothing`` lies outside [0, 1).
    """
    matrix = torch.as_tensor(confusion, dtype=torch.float64)
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"confusion must be a square (C, C) matrix, got shape {tuple(matrix.shape)}")
    if not torch.isfinite(matrix).all() or (matrix < 0).any():
        raise ValueError("confusion must hold finite values >= 0")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must lie in [0, 1), got {smoothing}")
    rows = matrix.sum(dim=1, keepdim=True)
    transition = torch.where(rows > 0, matrix / rows.clamp_min(1e-300), torch.eye(len(matrix), dtype=matrix.dtype))
    transition = (1.0 - smoothing) * transition + smoothing / len(matrix)
    return transition.float()


def noisy_label_cross_entropy_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    transition: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int | None = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy against labels with known class-dependent noise (forward correction,
    Patrini et al. 2017), ``-w_y log (softmax(z) T)_y``.

    The network's softmax stays the distribution of the *true* class; it is carried through
    ``T`` (``T[i, j]``: the chance that a point of true class ``i`` is labelled ``j``, e.g. a 2D
    network's row-normalised confusion matrix, `label_transition_from_confusion`) before
    it meets the label. Labels that a known confusion makes ambiguous (half the sofas
    labelled chair) then teach the true class instead of the confusion. ``T = I`` gives
    :func:`cross_entropy_loss`. ``mean`` divides by the summed weights of the kept points.

    Args:
        logits: (B, C, N) (or (B, C, *spatial)) or flat (P, C) float scores, unnormalised.
        labels: (B, N) (or (B, *spatial)) or flat (P,) integer noisy class ids in [0, C).
        transition: (C, C) float row-stochastic noise matrix, rows true classes.
        weight: (C,) float per-class weights (indexed by the noisy label), or None.
        ignore_index: label of points that count nowhere (value and gradient); None keeps all.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        loss: () float, or (P_kept,) weighted per-point values in flat order for ``"none"``.

    Raises:
        ValueError: when shapes disagree, ``transition`` is not (C, C) with rows summing to 1,
            a label lies outside [0, C), or ``reduction`` is unknown.
        TypeError: when ``labels`` is not an integer tensor.
    """
    z, y, _ = _kept(logits, labels, weight, ignore_index)
    num_classes = z.shape[1]
    if transition.shape != (num_classes, num_classes):
        raise ValueError(f"transition must have shape ({num_classes}, {num_classes}), got {tuple(transition.shape)}")
    if not torch.allclose(transition.sum(dim=1), torch.ones((), dtype=transition.dtype), atol=1e-3):
        raise ValueError(
            "transition's rows must sum to 1 (label_transition_from_confusion normalises a confusion matrix)"
        )
    # log((p T)_y) = logsumexp_i(log p_i + log T_iy): finite where p underflows.
    log_t = transition.to(device=z.device, dtype=z.dtype).clamp_min(torch.finfo(z.dtype).tiny).log()
    nll = -torch.logsumexp(torch.log_softmax(z, dim=1) + log_t[:, y].T, dim=1)
    point_weight = torch.ones_like(nll) if weight is None else weight.to(nll.dtype)[y]
    return _reduce(nll, point_weight, reduction)


def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 2.0,
    weight: torch.Tensor | None = None,
    ignore_index: int | None = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017), ``-w_y (1 - p_y)^gamma log p_y``.

    ``weight`` plays the role of the paper's per-class ``alpha``. ``mean`` divides by the summed
    weights of the kept points, so ``gamma = 0`` gives exactly :func:`cross_entropy_loss`.

    Args:
        logits: (B, C, N) (or (B, C, *spatial)) or flat (P, C) float scores, unnormalised.
        labels: (B, N) (or (B, *spatial)) or flat (P,) integer class ids in [0, C).
        gamma: focusing exponent (0 = cross-entropy).
        weight: (C,) float per-class weights, or None for equal weights.
        ignore_index: label of points that count nowhere (value and gradient); None keeps all.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        loss: () float, or (P_kept,) weighted per-point values in flat order for ``"none"``.

    Raises:
        ValueError: when shapes disagree, a label lies outside [0, C), or ``reduction`` is unknown.
        TypeError: when ``labels`` is not an integer tensor.
    """
    z, y, _ = _kept(logits, labels, weight, ignore_index)
    log_p = torch.log_softmax(z, dim=1).gather(1, y[:, None])[:, 0]
    p = log_p.exp()
    per_point = -((1.0 - p).clamp_min(0.0) ** gamma) * log_p
    point_weight = torch.ones_like(per_point) if weight is None else weight.to(per_point.dtype)[y]
    return _reduce(per_point, point_weight, reduction)


def _soft_counts(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft TP, FP, FN per class ``(C,)`` over the kept points (softmax probabilities)."""
    z, y, _ = _kept(logits, labels, weight, ignore_index)
    prob = torch.softmax(z, dim=1)
    one_hot = F.one_hot(y, z.shape[1]).to(prob.dtype)
    tp = (prob * one_hot).sum(0)
    fp = (prob * (1.0 - one_hot)).sum(0)
    fn = ((1.0 - prob) * one_hot).sum(0)
    return tp, fp, fn


def _class_mean(per_class: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return per_class.mean()
    weight = weight.to(per_class.dtype)
    return (per_class * weight).sum() / weight.sum()


def tversky_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.5,
    beta: float = 0.5,
    smooth: float = 1.0,
    weight: torch.Tensor | None = None,
    ignore_index: int | None = -100,
) -> torch.Tensor:
    """Tversky loss (Salehi et al. 2017): ``1 - mean_c TI_c`` with soft counts over the batch.

    ``TI_c = (TP_c + smooth) / (TP_c + alpha FP_c + beta FN_c + smooth)`` where
    ``TP_c = sum p_c y_c``, ``FP_c = sum p_c (1 - y_c)``, ``FN_c = sum (1 - p_c) y_c`` over the
    kept points (``p`` = softmax). The mean runs over all ``C`` classes (weighted by ``weight``
    when given); ``smooth`` keeps classes absent from a batch finite (their index tends to 1
    when the network predicts them nowhere). ``alpha = beta = 0.5`` with ``smooth = s / 2`` is
    :func:`soft_dice_loss` with ``smooth = s``.

    Args:
        logits: (B, C, N) (or (B, C, *spatial)) or flat (P, C) float scores, unnormalised.
        labels: (B, N) (or (B, *spatial)) or flat (P,) integer class ids in [0, C).
        alpha: weight of the false positives.
        beta: weight of the false negatives.
        smooth: added to numerator and denominator.
        weight: (C,) float per-class weights, or None for equal weights.
        ignore_index: label of points that count nowhere (value and gradient); None keeps all.

    Returns:
        loss: () float.

    Raises:
        ValueError: when shapes disagree or a label lies outside [0, C).
        TypeError: when ``labels`` is not an integer tensor.
    """
    tp, fp, fn = _soft_counts(logits, labels, weight, ignore_index)
    index = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)
    return 1.0 - _class_mean(index, weight)


def soft_dice_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    smooth: float = 1.0,
    weight: torch.Tensor | None = None,
    ignore_index: int | None = -100,
) -> torch.Tensor:
    """Soft Dice loss: ``1 - mean_c (2 TP_c + smooth) / (sum p_c + sum y_c + smooth)``.

    Same soft counts, class mean and ``smooth`` rule as :func:`tversky_loss` (which it equals
    for ``alpha = beta = 0.5`` and half the smoothing, since
    ``sum p_c + sum y_c = 2 TP_c + FP_c + FN_c``).

    Args:
        logits: (B, C, N) (or (B, C, *spatial)) or flat (P, C) float scores, unnormalised.
        labels: (B, N) (or (B, *spatial)) or flat (P,) integer class ids in [0, C).
        smooth: added to numerator and denominator.
        weight: (C,) float per-class weights, or None for equal weights.
        ignore_index: label of points that count nowhere (value and gradient); None keeps all.

    Returns:
        loss: () float.

    Raises:
        ValueError: when shapes disagree or a label lies outside [0, C).
        TypeError: when ``labels`` is not an integer tensor.
    """
    tp, fp, fn = _soft_counts(logits, labels, weight, ignore_index)
    dice = (2.0 * tp + smooth) / (2.0 * tp + fp + fn + smooth)
    return 1.0 - _class_mean(dice, weight)


def _lovasz_grad(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors (Berman 2018, Alg. 1)."""
    gts = fg_sorted.sum()
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if fg_sorted.numel() > 1:
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return jaccard


def lovasz_softmax_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    classes: str = "present",
    weight: torch.Tensor | None = None,
    ignore_index: int | None = -100,
) -> torch.Tensor:
    """Lovász-softmax loss (Berman et al., CVPR 2018), computed over the whole batch.

    For each class ``c`` the errors ``|y_c - p_c|`` of the kept points are sorted in decreasing
    order and dotted with the Lovász gradient of the Jaccard index.

    Args:
        logits: (B, C, N) (or (B, C, *spatial)) or flat (P, C) float scores, unnormalised.
        labels: (B, N) (or (B, *spatial)) or flat (P,) integer class ids in [0, C).
        classes: ``"present"`` averages over the classes that occur in the kept labels (the
            paper's default), ``"all"`` over all ``C``.
        weight: (C,) float per-class weights, turning the mean over those classes into a
            weighted mean; None for equal weights.
        ignore_index: label of points that count nowhere (value and gradient); None keeps all.

    Returns:
        loss: () float; 0 (connected to the graph) when every point is ignored.

    Raises:
        ValueError: when ``classes`` is unknown, shapes disagree or a label lies outside [0, C).
        TypeError: when ``labels`` is not an integer tensor.
    """
    if classes not in ("present", "all"):
        raise ValueError(f"classes must be 'present' or 'all', got {classes!r}")
    z, y, flat_logits = _kept(logits, labels, weight, ignore_index)
    num_classes = z.shape[1]
    if y.numel() == 0:
        return flat_logits.sum() * 0.0
    prob = torch.softmax(z, dim=1)
    losses, kept_classes = [], []
    for c in range(num_classes):
        fg = (y == c).to(prob.dtype)
        if classes == "present" and not bool(fg.any()):
            continue
        errors = (fg - prob[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[order])))
        kept_classes.append(c)
    per_class = torch.stack(losses)
    if weight is None:
        return per_class.mean()
    w = weight.to(per_class.dtype)[torch.tensor(kept_classes, device=per_class.device)]
    return (per_class * w).sum() / w.sum()


def feature_transform_regularizer(transform: torch.Tensor, reduction: str = "official") -> torch.Tensor:
    """PointNet's orthogonality regulariser on ``||I - A A^T||_F^2``, at the official scale.

    The paper adds it with weight 0.001; the official TF code (charlesq34/pointnet) takes
    ``tf.nn.l2_loss``: half the squared norm, summed over the batch, which is the default here.
    ``reduction="mean"`` takes the batch mean of the full squared norm instead (2 / B times the
    official value), whose weight does not scale with the batch size.

    Args:
        transform: (B, K, K) float, the feature T-Net output (``aux["feature_transform"]`` of
            the PointNet models).
        reduction: "official" (half the sum over the batch) or "mean" (the batch mean).

    Returns:
        loss: () float.

    Raises:
        ValueError: when ``transform`` is not (B, K, K) or ``reduction`` is unknown.
    """
    if transform.dim() != 3 or transform.shape[1] != transform.shape[2]:
        raise ValueError(f"transform must be (B, K, K), got {tuple(transform.shape)}")
    if reduction not in ("official", "mean"):
        raise ValueError(f'reduction must be "official" or "mean", got {reduction!r}')
    k = transform.shape[1]
    eye = torch.eye(k, dtype=transform.dtype, device=transform.device)
    diff = eye - transform @ transform.transpose(1, 2)
    per_cloud = diff.pow(2).sum(dim=(1, 2))
    return 0.5 * per_cloud.sum() if reduction == "official" else per_cloud.mean()


def class_weights_from_counts(
    counts: torch.Tensor, mode: str = "inverse_log", offset: float | None = None
) -> torch.Tensor:
    """Per-class loss weights from label counts.

    With frequencies ``f_c = counts_c / sum(counts)``:

    - ``"inverse_log"``: ``1 / log(offset + f_c)``, ``offset = 1.2`` by default (PointNet++'s
      ScanNet training),
    - ``"inverse"``: ``1 / (f_c + offset)``, ``offset = 0.02`` by default (RandLA-Net's
      ``1 / (frac + 0.02)``), the offset keeping empty classes finite.

    Args:
        counts: (C,) non-negative label counts (any numeric type), with a positive sum.
        mode: ``"inverse_log"`` or ``"inverse"``.
        offset: the mode's offset, or None for its default.

    Returns:
        weights: (C,) float32.

    Raises:
        ValueError: when ``counts`` is empty, negative or sums to 0, ``offset`` is out of
            range for the mode, or ``mode`` is unknown.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(f"counts must be a non-empty (C,) tensor, got shape {tuple(counts.shape)}")
    if (counts < 0).any() or counts.sum() <= 0:
        raise ValueError("counts must be non-negative with a positive sum")
    freq = counts / counts.sum()
    if mode == "inverse_log":
        offset = 1.2 if offset is None else offset
        if offset <= 1.0:
            raise ValueError(f"offset must be > 1 for mode='inverse_log' (log would be <= 0), got {offset}")
        weights = 1.0 / torch.log(offset + freq)
    elif mode == "inverse":
        offset = 0.02 if offset is None else offset
        if offset <= 0.0:
            raise ValueError(f"offset must be > 0 for mode='inverse', got {offset}")
        weights = 1.0 / (freq + offset)
    else:
        raise ValueError(f"mode must be 'inverse_log' or 'inverse', got {mode!r}")
    return weights.to(torch.float32)
