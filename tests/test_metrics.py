"""ConfusionMatrix against hand-computed scores, incl. ignore_index, absent classes and all_reduce."""

import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pcseg.metrics import ConfusionMatrix

# 4 classes; class 3 never appears in truth or prediction; 255 is ignored.
TRUTH = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 255, 255])
PRED = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2, 0, 3, 1])
# Hand-built matrix (rows truth, cols prediction), the two ignored points dropped:
#   truth 0: pred 0,0,1      -> [2, 1, 0, 0]
#   truth 1: pred 1,2        -> [0, 1, 1, 0]
#   truth 2: pred 2,2,2,0    -> [1, 0, 3, 0]
#   truth 3: none            -> [0, 0, 0, 0]
EXPECTED_MATRIX = torch.tensor([[2, 1, 0, 0], [0, 1, 1, 0], [1, 0, 3, 0], [0, 0, 0, 0]])


def _nan_equal(a, b):
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    torch.testing.assert_close(a, b, equal_nan=True)


def test_matrix_and_scores_by_hand():
    cm = ConfusionMatrix(4, ignore_index=255)
    cm.update(PRED[:5], TRUTH[:5])
    cm.update(PRED[5:], TRUTH[5:])
    assert torch.equal(cm.matrix, EXPECTED_MATRIX)
    s = cm.compute()
    assert s.overall_accuracy == pytest.approx(6 / 9)
    # IoU: 0: 2/(3+3-2)=.5, 1: 1/(2+2-1)=1/3, 2: 3/(4+4-3)=.6, 3: 0/0 -> NaN
    _nan_equal(s.iou, [0.5, 1 / 3, 0.6, math.nan])
    assert s.miou == pytest.approx((0.5 + 1 / 3 + 0.6) / 3)
    # recall = class accuracy: 2/3, 1/2, 3/4, NaN
    _nan_equal(s.recall, [2 / 3, 1 / 2, 3 / 4, math.nan])
    _nan_equal(s.accuracy, s.recall)
    assert s.mean_accuracy == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    # precision: column sums 3, 2, 4, 0
    _nan_equal(s.precision, [2 / 3, 1 / 2, 3 / 4, math.nan])
    # F1 = 2TP / (2TP + FP + FN)
    _nan_equal(s.f1, [4 / 6, 2 / 4, 6 / 8, math.nan])
    assert s.mean_f1 == pytest.approx((4 / 6 + 2 / 4 + 6 / 8) / 3)
    # FWIoU: truth frequencies 3/9, 2/9, 4/9
    assert s.fwiou == pytest.approx(3 / 9 * 0.5 + 2 / 9 / 3 + 4 / 9 * 0.6)


def test_class_in_truth_but_never_predicted_scores_zero_not_nan():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 0, 1, 0]), torch.tensor([0, 0, 1, 2]))
    s = cm.compute()
    assert s.iou[2] == 0 and s.recall[2] == 0 and s.f1[2] == 0
    assert math.isnan(s.precision[2])
    # IoU: class 0 2/3, class 1 1, class 2 0 (a real miss, counted in the mean)
    assert s.miou == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


def test_logits_are_argmaxed_and_layouts_match():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 50, generator=g)
    truth = torch.randint(0, 5, (2, 50), generator=g)
    a, b = ConfusionMatrix(5), ConfusionMatrix(5)
    a.update(logits, truth)
    b.update(logits.argmax(1), truth)
    assert torch.equal(a.matrix, b.matrix)
    assert a.matrix.sum() == 100
    # reference count by a Python loop
    ref = torch.zeros(5, 5, dtype=torch.int64)
    for t, p in zip(truth.flatten().tolist(), logits.argmax(1).flatten().tolist()):
        ref[t, p] += 1
    assert torch.equal(a.matrix, ref)


def test_merge_reset_and_empty():
    a, b = ConfusionMatrix(4, 255), ConfusionMatrix(4, 255)
    a.update(PRED[:5], TRUTH[:5])
    b.update(PRED[5:], TRUTH[5:])
    assert torch.equal(a.merge(b).matrix, EXPECTED_MATRIX)
    a.reset()
    s = a.compute()
    assert math.isnan(s.overall_accuracy) and math.isnan(s.miou) and torch.isnan(s.iou).all()
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(ConfusionMatrix(3))


def test_bad_labels_raise():
    cm = ConfusionMatrix(3, ignore_index=-1)
    with pytest.raises(ValueError, match="target labels"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="predicted labels"):
        cm.update(torch.tensor([0, 5]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _all_reduce_worker(rank, world_size, port, result_path):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        cm = ConfusionMatrix(4, ignore_index=255)
        half = slice(0, 5) if rank == 0 else slice(5, None)
        cm.update(PRED[half], TRUTH[half])
        cm.all_reduce()
        torch.save(cm.matrix, f"{result_path}.{rank}")
    finally:
        dist.destroy_process_group()


def test_all_reduce_sums_over_two_processes(tmp_path):
    path = str(tmp_path / "matrix")
    mp.spawn(_all_reduce_worker, args=(2, _free_port(), path), nprocs=2, join=True)
    for rank in range(2):
        assert torch.equal(torch.load(f"{path}.{rank}"), EXPECTED_MATRIX)
    # without an initialised process group all_reduce is a no-op
    cm = ConfusionMatrix(4, 255)
    cm.update(PRED, TRUTH)
    cm.all_reduce()
    assert torch.equal(cm.matrix, EXPECTED_MATRIX)
