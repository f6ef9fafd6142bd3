import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pcseg.ops import three_nn_interpolate, three_nn_interpolate_naive
from pcseg.testing import DEVICES, random_cloud


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 3),
    n=st.integers(1, 60),
    m=st.integers(1, 40),
    c=st.integers(1, 32),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 1000),
)
def test_matches_naive(b, n, m, c, dtype, seed):
    unknown = random_cloud(b, n, dtype, seed=seed)
    known = random_cloud(b, m, dtype, seed=seed + 1)
    feats = torch.randn(b, m, c, generator=torch.Generator().manual_seed(seed)).to(dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(
        three_nn_interpolate(unknown, known, feats),
        three_nn_interpolate_naive(unknown, known, feats),
        rtol=tol,
        atol=tol,
    )


def test_reproduces_known_points_and_linear_fields():
    known = random_cloud(1, 50, torch.float64)
    feats = torch.randn(1, 50, 4, dtype=torch.float64)
    torch.testing.assert_close(three_nn_interpolate(known, known, feats), feats, rtol=1e-6, atol=1e-6)
    # A point midway between exactly two known points takes their average.
    k2 = torch.tensor([[[0.0, 0, 0], [2.0, 0, 0], [50.0, 0, 0]]], dtype=torch.float64)
    f2 = torch.tensor([[[1.0], [3.0], [1000.0]]], dtype=torch.float64)
    out = three_nn_interpolate(torch.tensor([[[1.0, 0, 0]]], dtype=torch.float64), k2, f2)
    w1, w3 = 1 / (1 + 1e-10), 1 / (49**2 + 1e-10)  # inverse squared distance with the documented eps
    expected = (1 * w1 + 3 * w1 + 1000 * w3) / (2 * w1 + w3)
    assert abs(out.item() - expected) < 1e-9


@pytest.mark.parametrize("device", DEVICES)
def test_inverse_squared_distance_by_hand(device):
    # Known points at distances 1 and 2 from the query: weights 1/1 and 1/4, normalised 0.8 / 0.2.
    unknown = torch.zeros(1, 1, 3, dtype=torch.float64, device=device, requires_grad=True)
    known = torch.tensor([[[1.0, 0, 0], [0, 2.0, 0]]], dtype=torch.float64, device=device)
    feats = torch.tensor([[[1.0, 10.0], [0.0, 20.0]]], dtype=torch.float64, device=device, requires_grad=True)
    out = three_nn_interpolate(unknown, known, feats)
    torch.testing.assert_close(out.cpu(), torch.tensor([[[0.8, 12.0]]], dtype=torch.float64))
    grad_feats, grad_unknown = torch.autograd.grad(out[..., 0].sum(), (feats, unknown))
    torch.testing.assert_close(grad_feats.cpu(), torch.tensor([[[0.8, 0.0], [0.2, 0.0]]], dtype=torch.float64))
    # out = a / (a + b), a = 1 / |u - k1|^2, b = 1 / |u - k2|^2: d out / du = (a' b - a b') / (a + b)^2
    # with a' = (2, 0, 0), b' = (0, 1/4, 0), a = 1, b = 1/4 at u = 0.
    torch.testing.assert_close(grad_unknown.cpu(), torch.tensor([[[0.32, -0.16, 0.0]]], dtype=torch.float64))
    torch.autograd.gradcheck(three_nn_interpolate, (unknown.detach().requires_grad_(), known.requires_grad_(), feats))


def test_fewer_than_three_known_points():
    unknown = random_cloud(2, 5, torch.float64)
    known = random_cloud(2, 4, torch.float64, seed=1)
    feats = torch.randn(2, 4, 3, dtype=torch.float64)
    out = three_nn_interpolate(unknown, known, feats, known_lengths=torch.tensor([1, 0]))
    torch.testing.assert_close(out[0], feats[0, :1].expand(5, 3))  # one point: its features
    assert (out[1] == 0).all()  # none: zeros


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_features_and_positions(device):
    unknown = random_cloud(2, 6, torch.float64, device).requires_grad_()
    known = random_cloud(2, 8, torch.float64, device, seed=1).requires_grad_()
    feats = torch.randn(2, 8, 3, dtype=torch.float64, device=device).requires_grad_()
    torch.autograd.gradcheck(three_nn_interpolate, (unknown, known, feats))


def test_backward_matches_naive():
    unknown = random_cloud(2, 30, torch.float64)
    known = random_cloud(2, 10, torch.float64, seed=1)
    feats = torch.randn(2, 10, 5, dtype=torch.float64)
    grads = []
    for fn in (three_nn_interpolate, three_nn_interpolate_naive):
        f = feats.clone().requires_grad_()
        u = unknown.clone().requires_grad_()
        fn(u, known, f).pow(2).sum().backward()
        grads.append((f.grad, u.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_bad_feature_shape():
    with pytest.raises(ValueError, match=r"known_features must be \(B, m, C\)"):
        three_nn_interpolate(random_cloud(1, 4), random_cloud(1, 5), torch.zeros(1, 6, 2))


def test_opcheck():
    feats = torch.randn(2, 8, 3, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(-1, 8, (2, 5, 3))
    w = torch.rand(2, 5, 3, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.pcseg.three_interpolate.default, (feats, idx, w))
    torch.library.opcheck(
        torch.ops.pcseg.three_interpolate_backward.default,
        (torch.randn(2, 5, 3, dtype=torch.float64), feats.detach(), idx, w.detach()),
    )
