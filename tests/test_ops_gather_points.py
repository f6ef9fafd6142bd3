import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pcseg.ops import gather_points, gather_points_naive, group_points, group_points_naive
from pcseg.testing import DEVICES


def _inputs(b, n, c, m, k, dtype=torch.float64, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(b, n, c, generator=g, dtype=dtype).to(device)
    idx = torch.randint(-1, n, (b, m, k), generator=g).to(device)
    return features, idx


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 3),
    n=st.integers(1, 50),
    c=st.integers(1, 40),
    m=st.integers(0, 30),
    k=st.integers(1, 8),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 1000),
)
def test_forward_matches_naive(b, n, c, m, k, dtype, seed):
    features, idx = _inputs(b, n, c, m, k, dtype, seed)
    assert torch.equal(group_points(features, idx), group_points_naive(features, idx))
    assert torch.equal(gather_points(features, idx[..., 0]), gather_points_naive(features, idx[..., 0]))


@pytest.mark.parametrize("device", DEVICES)
def test_backward_matches_naive_with_repeated_indices(device):
    features, idx = _inputs(2, 10, 5, 40, 6, device=device)  # many repeats
    f1 = features.clone().requires_grad_()
    f2 = features.clone().requires_grad_()
    grad = torch.randn(2, 40, 6, 5, dtype=torch.float64, device=device)
    (group_points(f1, idx) * grad).sum().backward()
    (group_points_naive(f2, idx) * grad).sum().backward()
    torch.testing.assert_close(f1.grad, f2.grad, rtol=1e-12, atol=1e-12)


def test_gradcheck_and_gradgradcheck():
    features, idx = _inputs(2, 7, 3, 5, 4)
    features.requires_grad_()
    torch.autograd.gradcheck(lambda f: group_points(f, idx), (features,))
    torch.autograd.gradgradcheck(lambda f: group_points(f, idx), (features,))
    torch.autograd.gradcheck(lambda f: gather_points(f, idx[..., 0]), (features,))


def test_minus_one_gathers_zeros_and_unbatched():
    features = torch.arange(12.0).reshape(4, 3)
    out = gather_points(features, torch.tensor([3, -1, 0]))
    assert out.tolist() == [[9, 10, 11], [0, 0, 0], [0, 1, 2]]
    assert group_points(features, torch.tensor([[1, -1]])).shape == (1, 2, 3)


@pytest.mark.parametrize(
    "idx, match",
    [
        (torch.tensor([[5]]), r"idx values must lie in \[-1, 4\)"),
        (torch.tensor([[-2]]), r"idx values must lie in \[-1, 4\)"),
        (torch.tensor([[1.0]]), r"idx must be int64"),
        (torch.tensor([[1], [2]]), r"idx must be \(B, S\) with B = 1"),
    ],
)
def test_bad_indices(idx, match):
    with pytest.raises(RuntimeError, match=match):
        gather_points(torch.zeros(1, 4, 2), idx)


def test_bad_ranks():
    with pytest.raises(ValueError, match=r"features must be \(B, N, C\)"):
        group_points(torch.zeros(1, 4, 2), torch.zeros(1, 3, dtype=torch.long))


def test_opcheck():
    features, idx = _inputs(2, 9, 4, 6, 1)
    features.requires_grad_()
    torch.library.opcheck(torch.ops.pcseg.gather_rows.default, (features, idx[..., 0]))
    torch.library.opcheck(
        torch.ops.pcseg.gather_rows_backward.default, (torch.randn(2, 6, 4, dtype=torch.float64), idx[..., 0], 9)
    )
