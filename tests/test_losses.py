"""Losses against hand-computed values, torch references and a brute-force Lovász; gradcheck."""

import math

import pytest
import torch
import torch.nn.functional as F

from pcseg.losses import (
    class_weights_from_counts,
    cross_entropy_loss,
    feature_transform_regularizer,
    focal_loss,
    label_transition_from_confusion,
    lovasz_softmax_loss,
    noisy_label_cross_entropy_loss,
    soft_dice_loss,
    tversky_loss,
)

# Probabilities chosen by hand; logits = log(p) so that softmax(logits) = p exactly.
PROBS = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.25, 0.25], [0.1, 0.1, 0.8]], dtype=torch.float64)
LOGITS = PROBS.log()
LABELS = torch.tensor([0, 1, 1, -1])  # class 2 never occurs in the truth; the last point is ignored


def test_cross_entropy_hand_computed_with_ignore_and_weights():
    # kept points: p_y = 0.6, 0.7, 0.25
    expected = -(math.log(0.6) + math.log(0.7) + math.log(0.25)) / 3
    assert cross_entropy_loss(LOGITS, LABELS, ignore_index=-1).item() == pytest.approx(expected, abs=1e-12)
    w = torch.tensor([2.0, 0.5, 7.0], dtype=torch.float64)
    expected_w = -(2.0 * math.log(0.6) + 0.5 * math.log(0.7) + 0.5 * math.log(0.25)) / (2.0 + 0.5 + 0.5)
    assert cross_entropy_loss(LOGITS, LABELS, weight=w, ignore_index=-1).item() == pytest.approx(expected_w, abs=1e-12)


def test_cross_entropy_segmentation_layout_matches_torch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    labels = torch.randint(0, 5, (2, 7), generator=g)
    labels[0, 3] = 255
    w = torch.rand(5, generator=g) + 0.1
    ours = cross_entropy_loss(logits, labels, weight=w, ignore_index=255)
    ref = F.cross_entropy(logits, labels, weight=w, ignore_index=255)
    torch.testing.assert_close(ours, ref)


def test_focal_hand_computed_and_gamma_zero_is_cross_entropy():
    gamma = 2.0
    expected = -sum((1 - p) ** gamma * math.log(p) for p in (0.6, 0.7, 0.25)) / 3
    assert focal_loss(LOGITS, LABELS, gamma=gamma, ignore_index=-1).item() == pytest.approx(expected, abs=1e-12)
    w = torch.tensor([2.0, 0.5, 7.0], dtype=torch.float64)
    torch.testing.assert_close(
        focal_loss(LOGITS, LABELS, gamma=0.0, weight=w, ignore_index=-1),
        cross_entropy_loss(LOGITS, LABELS, weight=w, ignore_index=-1),
    )


def _soft_counts_by_hand():
    # kept rows 0..2, truth 0, 1, 1
    p = PROBS[:3].tolist()
    y = [0, 1, 1]
    tp = [sum(p[i][c] for i in range(3) if y[i] == c) for c in range(3)]
    fp = [sum(p[i][c] for i in range(3) if y[i] != c) for c in range(3)]
    fn = [sum(1 - p[i][c] for i in range(3) if y[i] == c) for c in range(3)]
    return tp, fp, fn


def test_dice_hand_computed_with_empty_class():
    tp, fp, fn = _soft_counts_by_hand()
    # class 0: TP .6, FP .2+.5=.7, FN .4; class 1: TP .95, FP .3, FN 1.05; class 2 (empty): TP 0, FP .1+.1+.25=.45, FN 0
    assert tp == pytest.approx([0.6, 0.95, 0.0]) and fp == pytest.approx([0.7, 0.3, 0.45])
    smooth = 1.0
    dice = [(2 * tp[c] + smooth) / (2 * tp[c] + fp[c] + fn[c] + smooth) for c in range(3)]
    assert dice[2] == pytest.approx(1.0 / 1.45)
    expected = 1 - sum(dice) / 3
    assert soft_dice_loss(LOGITS, LABELS, smooth=smooth, ignore_index=-1).item() == pytest.approx(expected, abs=1e-12)
    w = torch.tensor([1.0, 3.0, 0.0], dtype=torch.float64)  # weight 0 drops the empty class
    expected_w = 1 - (dice[0] + 3 * dice[1]) / 4
    assert soft_dice_loss(LOGITS, LABELS, weight=w, ignore_index=-1).item() == pytest.approx(expected_w, abs=1e-12)


def test_tversky_hand_computed_and_half_half_is_dice():
    tp, fp, fn = _soft_counts_by_hand()
    a, b, s = 0.3, 0.7, 0.5
    expected = 1 - sum((tp[c] + s) / (tp[c] + a * fp[c] + b * fn[c] + s) for c in range(3)) / 3
    got = tversky_loss(LOGITS, LABELS, alpha=a, beta=b, smooth=s, ignore_index=-1)
    assert got.item() == pytest.approx(expected, abs=1e-12)
    # (TP + s/2) / (TP + FP/2 + FN/2 + s/2) = (2 TP + s) / (2 TP + FP + FN + s)
    torch.testing.assert_close(
        tversky_loss(LOGITS, LABELS, alpha=0.5, beta=0.5, smooth=0.5, ignore_index=-1),
        soft_dice_loss(LOGITS, LABELS, smooth=1.0, ignore_index=-1),
    )


def _lovasz_brute_force(prob, labels, classes):
    """Lovász extension evaluated from its definition with Python sets (independent of the library)."""
    losses = []
    n = len(labels)
    for c in classes:
        fg = {i for i in range(n) if labels[i] == c}

        def jaccard_loss(mistakes, fg=fg):
            inter = len(fg - mistakes)
            union = len(fg | mistakes)
            return 1.0 - inter / union if union else 0.0

        errors = [abs((1.0 if labels[i] == c else 0.0) - prob[i][c]) for i in range(n)]
        order = sorted(range(n), key=lambda i: -errors[i])
        total, prefix = 0.0, set()
        for i in order:
            before = jaccard_loss(prefix)
            prefix = prefix | {i}
            total += errors[i] * (jaccard_loss(prefix) - before)
        losses.append(total)
    return sum(losses) / len(losses)


def test_lovasz_matches_definition_present_and_all():
    p, y = PROBS[:3].tolist(), [0, 1, 1]
    got = lovasz_softmax_loss(LOGITS, LABELS, ignore_index=-1).item()
    assert got == pytest.approx(_lovasz_brute_force(p, y, [0, 1]), abs=1e-12)
    got_all = lovasz_softmax_loss(LOGITS, LABELS, classes="all", ignore_index=-1).item()
    assert got_all == pytest.approx(_lovasz_brute_force(p, y, [0, 1, 2]), abs=1e-12)


def test_lovasz_on_hard_predictions_is_one_minus_iou():
    # At one-hot probabilities the Lovász extension equals the Jaccard loss 1 - IoU per class.
    truth = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    pred = torch.tensor([0, 1, 1, 1, 2, 2, 0, 0])
    logits = F.one_hot(pred, 3).double() * 60.0
    ious = []
    for c in range(3):
        inter = ((truth == c) & (pred == c)).sum().item()
        union = ((truth == c) | (pred == c)).sum().item()
        ious.append(inter / union)
    expected = 1 - sum(ious) / 3
    assert lovasz_softmax_loss(logits, truth).item() == pytest.approx(expected, abs=1e-9)


def test_ignored_points_change_nothing():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 9, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 9), generator=g)
    ignored = labels.clone()
    ignored[:, 5:] = 99
    flat_logits = logits[:, :, :5].permute(0, 2, 1).reshape(-1, 4)
    flat_labels = labels[:, :5].reshape(-1)
    for loss in (cross_entropy_loss, focal_loss, soft_dice_loss, tversky_loss, lovasz_softmax_loss):
        torch.testing.assert_close(
            loss(logits, ignored, ignore_index=99), loss(flat_logits, flat_labels, ignore_index=99)
        )


# A 2D network that calls half of the class-1 objects class 0 and a tenth of class 2 class 1.
TRANSITION = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.1, 0.9]], dtype=torch.float64)


def _with_transition(logits, labels, **kwargs):
    return noisy_label_cross_entropy_loss(logits, labels, TRANSITION, **kwargs)


def test_noisy_label_cross_entropy_hand_computed():
    # (p T)_y on the kept points: point 0 (y 0): 0.6 + 0.5 * 0.3; point 1 (y 1): 0.7 * 0.5 + 0.1 * 0.1;
    # point 2 (y 1): 0.25 * 0.5 + 0.25 * 0.1.
    q = [0.6 + 0.15, 0.35 + 0.01, 0.125 + 0.025]
    expected = -sum(math.log(v) for v in q) / 3
    assert _with_transition(LOGITS, LABELS, ignore_index=-1).item() == pytest.approx(expected, abs=1e-12)
    w = torch.tensor([2.0, 0.5, 7.0], dtype=torch.float64)  # indexed by the (noisy) label
    expected_w = -(2.0 * math.log(q[0]) + 0.5 * math.log(q[1]) + 0.5 * math.log(q[2])) / 3.0
    assert _with_transition(LOGITS, LABELS, weight=w, ignore_index=-1).item() == pytest.approx(expected_w, abs=1e-12)
    # The identity is the plain cross-entropy, values and gradients, in both layouts.
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (2, 7), generator=g)
    plain = cross_entropy_loss(logits, labels)
    corrected = noisy_label_cross_entropy_loss(logits, labels, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(corrected, plain)
    torch.testing.assert_close(
        torch.autograd.grad(corrected, logits)[0], torch.autograd.grad(plain, logits)[0], rtol=1e-9, atol=1e-12
    )
    # Finite where the true class's probability underflows to 0 in float32.
    far = torch.tensor([[200.0, -200.0, -200.0]])
    assert torch.isfinite(noisy_label_cross_entropy_loss(far, torch.tensor([1]), TRANSITION.float()))


def test_noisy_label_cross_entropy_learns_the_true_class_through_the_noise():
    # Two kinds of object: kind A is class 0, kind B is class 1, but the labels call half of
    # the B objects class 0 (TRANSITION's second row): 50 % of B's labels say 0, 50 % say 1.
    # With ties broken the wrong way (55 / 45, as in a finite sample) the plain cross-entropy
    # learns B as class 0; the corrected one learns it as class 1.
    logits = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)  # one row of scores per kind
    kind = torch.tensor([0] * 100 + [1] * 100)
    labels = torch.tensor([0] * 100 + [0] * 55 + [1] * 45)
    for loss_fn, expected in ((cross_entropy_loss, 0), (_with_transition, 1)):
        z = logits.detach().clone().requires_grad_(True)
        optimiser = torch.optim.Adam([z], lr=0.1)
        for _ in range(500):
            optimiser.zero_grad()
            loss_fn(z[kind], labels).backward()
            optimiser.step()
        assert z[0].argmax().item() == 0
        assert z[1].argmax().item() == expected, loss_fn


def test_label_transition_from_confusion():
    counts = torch.tensor([[8, 2, 0], [0, 0, 0], [1, 1, 2]])
    transition = label_transition_from_confusion(counts.numpy())
    expected = torch.tensor([[0.8, 0.2, 0.0], [0.0, 1.0, 0.0], [0.25, 0.25, 0.5]])  # an unseen class: identity row
    torch.testing.assert_close(transition, expected)
    smoothed = label_transition_from_confusion(counts, smoothing=0.3)
    torch.testing.assert_close(smoothed, 0.7 * expected + 0.1)
    with pytest.raises(ValueError, match="square"):
        label_transition_from_confusion(torch.ones(2, 3))
    with pytest.raises(ValueError, match=">= 0"):
        label_transition_from_confusion(torch.tensor([[1.0, -1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="smoothing"):
        label_transition_from_confusion(counts, smoothing=1.0)
    with pytest.raises(ValueError, match=r"transition must have shape \(3, 3\)"):
        noisy_label_cross_entropy_loss(LOGITS, LABELS, torch.eye(2), ignore_index=-1)
    with pytest.raises(ValueError, match="rows must sum to 1"):
        noisy_label_cross_entropy_loss(LOGITS, LABELS, torch.ones(3, 3), ignore_index=-1)


@pytest.mark.parametrize(
    "loss", [cross_entropy_loss, focal_loss, soft_dice_loss, tversky_loss, lovasz_softmax_loss, _with_transition]
)
def test_gradcheck_float64(loss):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (2, 6), generator=g)
    labels[1, 2] = -1
    weight = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: loss(z, labels, weight=weight, ignore_index=-1), (logits,))
    # ignored points receive exactly zero gradient
    loss(logits, labels, weight=weight, ignore_index=-1).backward()
    assert torch.all(logits.grad[1, :, 2] == 0)


def test_bad_labels_and_weights_raise():
    with pytest.raises(ValueError, match="labels must lie in"):
        cross_entropy_loss(LOGITS, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="weight must have shape"):
        focal_loss(LOGITS, LABELS, weight=torch.ones(2), ignore_index=-1)
    with pytest.raises(ValueError, match="labels must have shape"):
        soft_dice_loss(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def test_class_weights_from_counts_hand_computed():
    counts = torch.tensor([70, 20, 10, 0])
    f = [0.7, 0.2, 0.1, 0.0]
    torch.testing.assert_close(
        class_weights_from_counts(counts, "inverse_log"),
        torch.tensor([1 / math.log(1.2 + v) for v in f], dtype=torch.float32),
    )
    torch.testing.assert_close(
        class_weights_from_counts(counts, "inverse"),
        torch.tensor([1 / (v + 0.02) for v in f], dtype=torch.float32),
    )
    with pytest.raises(ValueError, match="mode"):
        class_weights_from_counts(counts, "median")


def test_feature_transform_regularizer():
    q, _ = torch.linalg.qr(torch.randn(3, 5, 5, dtype=torch.float64))
    assert feature_transform_regularizer(q).item() == pytest.approx(0.0, abs=1e-20)
    # A = 2I: I - 4I = -3I, squared Frobenius norm 9k
    a = 2 * torch.eye(4, dtype=torch.float64).expand(2, 4, 4)
    assert feature_transform_regularizer(a).item() == pytest.approx(36.0)
