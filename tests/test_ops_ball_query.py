import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pcseg.ops import ball_query, ball_query_naive, knn
from pcseg.testing import DEVICES, lattice_cloud, mixed_density_cloud, random_cloud, random_lengths

DTYPES = [torch.float32, torch.float64]


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    m=st.integers(1, 50),
    n=st.integers(1, 200),
    k=st.integers(1, 64),
    radius=st.floats(0.01, 1.5),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 10_000),
    use_lengths=st.booleans(),
)
def test_matches_naive_on_random_shapes(batch, m, n, k, radius, dtype, seed, use_lengths):
    query = random_cloud(batch, m, dtype, seed=seed)
    points = random_cloud(batch, n, dtype, seed=seed + 7)
    ql = random_lengths(batch, m, seed) if use_lengths else None
    pl = random_lengths(batch, n, seed + 3) if use_lengths else None
    d, i = ball_query(query, points, radius, k, ql, pl)
    dn, inn = ball_query_naive(query, points, radius, k, ql, pl)
    assert torch.equal(i, inn) and torch.equal(d, dn)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_naive_where_density_varies(dtype):
    # Neighbouring query groups need very different radii (see the ring_query test of the
    # same name): balls that fill in the first step, on resuming, or never.
    points = mixed_density_cloud(2, 3000, dtype, seed=1)
    query = torch.cat([points[:, ::2], mixed_density_cloud(2, 1500, dtype, seed=2)], 1)
    for radius, k in [(0.1, 16), (0.3, 32), (0.5, 64), (0.2, 100)]:
        d, i = ball_query(query, points, radius, k)
        dn, inn = ball_query_naive(query, points, radius, k)
        assert torch.equal(i, inn) and torch.equal(d, dn), (radius, k)
        kept = (i >= 0).sum(-1)
        assert (kept < k).any() and (kept == k).any()


@pytest.mark.parametrize("device", DEVICES)
def test_returns_the_nearest_inside_the_radius_not_the_first_found(device):
    points = random_cloud(1, 5000, device=device)
    query = random_cloud(1, 100, device=device, seed=1)
    d, i = ball_query(query, points, 0.2, 8)
    dk, ik = knn(query, points, 8)
    inside = dk < 0.2 * 0.2
    assert torch.equal(i[inside], ik[inside])  # the k nearest, when inside
    assert (i[~inside] == -1).all()  # nothing beyond the radius
    assert (d[i >= 0] < 0.04).all()


def test_radius_is_strict_and_ties_on_the_boundary():
    lattice = lattice_cloud(1, 5)
    d, i = ball_query(lattice, lattice, 1.0, 10)  # neighbours at exactly 1.0 are excluded
    assert (i[..., 0] >= 0).all() and (i[..., 1:] == -1).all()
    d, i = ball_query(lattice, lattice, 1.0001, 10)
    dn, inn = ball_query_naive(lattice, lattice, 1.0001, 10)
    assert torch.equal(i, inn)


@pytest.mark.parametrize("radius", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_radius(radius):
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        ball_query(random_cloud(1, 4), random_cloud(1, 4), radius, 2)


def test_bad_k_and_shapes():
    with pytest.raises(ValueError, match="k must be >= 1"):
        ball_query(random_cloud(1, 4), random_cloud(1, 4), 0.1, 0)
    with pytest.raises(RuntimeError, match=r"points must be \(B, N, 3\)"):
        ball_query(random_cloud(1, 4), torch.zeros(1, 4, 4), 0.1, 2)


def test_opcheck():
    q, p = random_cloud(2, 20), random_cloud(2, 40, seed=1)
    torch.library.opcheck(
        torch.ops.pcseg.ball_query.default, (q, p, torch.tensor([20, 9]), torch.tensor([40, 30]), 0.3, 5)
    )
