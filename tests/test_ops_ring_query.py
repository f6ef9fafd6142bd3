import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pcseg.ops import ring_query, ring_query_naive
from pcseg.testing import DEVICES, mixed_density_cloud, random_cloud, random_lengths

DTYPES = [torch.float32, torch.float64]


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    m=st.integers(1, 50),
    n=st.integers(1, 200),
    k=st.integers(1, 48),
    r_inner=st.floats(0, 0.5),
    width=st.floats(0.01, 1.0),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 10_000),
    use_lengths=st.booleans(),
)
def test_matches_naive_on_random_shapes(batch, m, n, k, r_inner, width, dtype, seed, use_lengths):
    query = random_cloud(batch, m, dtype, seed=seed)
    points = random_cloud(batch, n, dtype, seed=seed + 7)
    normals = torch.randn(batch, m, 3, generator=torch.Generator().manual_seed(seed)).to(dtype)
    ql = random_lengths(batch, m, seed) if use_lengths else None
    pl = random_lengths(batch, n, seed + 3) if use_lengths else None
    d, i = ring_query(query, points, normals, r_inner, r_inner + width, k, ql, pl)
    dn, inn = ring_query_naive(query, points, normals, r_inner, r_inner + width, k, ql, pl)
    assert torch.equal(i, inn) and torch.equal(d, dn)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 200),
    m=st.integers(1, 20),
    k=st.integers(1, 40),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 10_000),
)
def test_matches_naive_with_duplicate_and_grid_points(n, m, k, dtype, seed):
    # Duplicates (of the farthest neighbour too) and points on a grid, where many neighbours
    # lie exactly on the reference ray and their angle is 0 only up to rounding.
    g = torch.Generator().manual_seed(seed)
    distinct = torch.randint(0, 6, (max(n // 3, 1), 3), generator=g).to(dtype) / 10
    points = distinct[torch.randint(0, distinct.shape[0], (n,), generator=g)]
    query = points[torch.randint(0, n, (m,), generator=g)]
    normals = torch.randn(m, 3, generator=g).to(dtype)
    normals[::3] = torch.tensor([0.0, 0.0, 1.0], dtype=dtype)  # grid-aligned tangent planes
    d, i = ring_query(query, points, normals, 0.05, 0.45, k)
    dn, inn = ring_query_naive(query, points, normals, 0.05, 0.45, k)
    assert torch.equal(i, inn) and torch.equal(d, dn)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_naive_where_density_varies(dtype):
    # The CPU search first stops a little beyond the previous group's k-th distance and lets
    # the queries that fall short resume beyond it: here neighbouring groups need very
    # different radii, some rings fill only on resuming and some never fill.
    points = mixed_density_cloud(2, 3000, dtype, seed=1)
    query = torch.cat([points[:, ::2], mixed_density_cloud(2, 1500, dtype, seed=2)], 1)
    normals = torch.randn(query.shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    for r_inner, r_outer, k in [(0.0, 0.1, 16), (0.02, 0.08, 16), (0.05, 0.3, 32), (0.01, 0.5, 64), (0.1, 0.2, 100)]:
        d, i = ring_query(query, points, normals, r_inner, r_outer, k)
        dn, inn = ring_query_naive(query, points, normals, r_inner, r_outer, k)
        assert torch.equal(i, inn) and torch.equal(d, dn), (r_inner, r_outer, k)
        kept = (i >= 0).sum(-1)
        assert (kept < k).any() and (kept == k).any()


@pytest.mark.parametrize("n", [32, 33, 64, 65])
def test_angles_closer_than_float32_resolves_are_ordered_exactly(n):
    # Rings of up to 64 are ranked on 32-bit keys (32 or 64 wide), which cannot tell these
    # angles apart; the exact (float64) order must still come out, and past 64 (a comparison
    # sort) too.
    g = torch.Generator().manual_seed(0)
    base = torch.tensor([0.3, 1.1, 2.0, 4.0, 5.5], dtype=torch.float64)
    theta = base[torch.randint(0, 5, (n,), generator=g)] + 1e-11 * torch.randint(-50, 50, (n,), generator=g).double()
    radius = 0.2 + 0.2 * torch.rand(n, generator=g, dtype=torch.float64)
    points = torch.stack([radius * theta.cos(), radius * theta.sin(), torch.zeros(n).double()], -1)
    q = torch.zeros(1, 3, dtype=torch.float64)
    normal = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    d, i = ring_query(q, points, normal, 0.1, 0.5, n)
    dn, inn = ring_query_naive(q, points, normal, 0.1, 0.5, n)
    assert torch.equal(i, inn) and torch.equal(d, dn)
    assert (i >= 0).all()


def test_duplicates_of_the_farthest_neighbour_lead_the_ring():
    q = torch.zeros(1, 3)
    points = torch.tensor([[0.3, 0.0, 0.0], [0.0, 0.2, 0.0], [0.3, 0.0, 0.0], [-0.1, 0.0, 0.0]])
    d, i = ring_query(q, points, torch.tensor([[0.0, 0.0, 1.0]]), 0.0, 1.0, 4)
    # farthest: points 0 and 2 (tie -> 2 is the reference); both at angle 0, lower index first
    assert i[0].tolist() == [0, 2, 1, 3]


def _true_angles(query, points, normal, idx):
    """Counter-clockwise angle (atan2, radians) of each neighbour from the last-in-distance."""
    n = normal / normal.norm()
    v = points[idx] - query
    t = v - (v @ n)[:, None] * n
    dist = v.norm(dim=-1)
    ref = t[torch.argmax(dist)]
    u = ref / ref.norm()
    w = torch.linalg.cross(n, u)
    return torch.remainder(torch.atan2(t @ w, t @ u), 2 * math.pi)


@pytest.mark.parametrize("device", DEVICES)
def test_ring_is_in_the_annulus_and_ordered_counter_clockwise(device):
    points = random_cloud(1, 20_000, torch.float64, device)
    query = random_cloud(1, 50, torch.float64, device, seed=1) * 0.5 + 0.25
    normals = torch.randn(1, 50, 3, dtype=torch.float64, device=device)
    d, i = ring_query(query, points, normals, 0.05, 0.1, 32)
    assert ((d[i >= 0] >= 0.05**2) & (d[i >= 0] < 0.1**2)).all()
    for m in range(50):
        idx = i[0, m][i[0, m] >= 0]
        ang = _true_angles(query[0, m], points[0], normals[0, m], idx)
        assert ang[0] < 1e-9 or ang[0] > 2 * math.pi - 1e-9  # starts at the reference
        assert (ang[1:].diff() >= -1e-12).all()  # counter-clockwise


def test_counter_clockwise_seen_from_the_normal_tip():
    # Four points on the unit circle around +z at 0, 90, 180, 270 degrees; the farthest one
    # (slightly out) at 0 degrees is the reference.
    pts = torch.tensor([[1.05, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], dtype=torch.float64)
    q = torch.zeros(1, 3, dtype=torch.float64)
    _, up = ring_query(q, pts, torch.tensor([[0.0, 0, 1]], dtype=torch.float64), 0.5, 2, 4)
    _, down = ring_query(q, pts, torch.tensor([[0.0, 0, -1]], dtype=torch.float64), 0.5, 2, 4)
    assert up[0].tolist() == [0, 1, 2, 3]
    assert down[0].tolist() == [0, 3, 2, 1]


def test_short_and_empty_rings_are_padded_at_the_end():
    pts = torch.tensor([[[0.3, 0, 0], [0, 0.3, 0], [5, 5, 5]]])
    q = torch.zeros(1, 2, 3)
    q[0, 1] = 10
    n = torch.tensor([[[0.0, 0, 1], [0.0, 0, 1]]])
    d, i = ring_query(q, pts, n, 0.1, 1.0, 4)
    # Equally far: the reference is the last in distance order (index 1), then 0 at 270 deg.
    assert i[0, 0].tolist() == [1, 0, -1, -1]
    assert (i[0, 1] == -1).all() and torch.isinf(d[0, 1]).all()


def test_zero_normal_keeps_distance_order():
    pts = random_cloud(1, 300)
    q = random_cloud(1, 5, seed=3)
    d, i = ring_query(q, pts, torch.zeros(1, 5, 3), 0.0, 0.4, 16)
    assert d[i >= 0].reshape(-1).numel() > 0
    valid = i >= 0
    assert (d.masked_fill(~valid, float("inf")).diff(dim=-1).nan_to_num(0) >= 0).all()


@pytest.mark.parametrize(
    "r_inner, r_outer", [(0.2, 0.1), (-0.1, 0.2), (0.1, 0.1), (0.0, float("inf")), (float("nan"), 1.0)]
)
def test_bad_radii(r_inner, r_outer):
    p = random_cloud(1, 10)
    with pytest.raises(ValueError, match="0 <= r_inner < r_outer"):
        ring_query(p, p, p, r_inner, r_outer, 3)


def test_bad_normals():
    p = random_cloud(1, 10)
    with pytest.raises(RuntimeError, match=r"normals must be \(B, M, 3\)"):
        ring_query(p, p, p[:, :5], 0.0, 0.3, 3)
    with pytest.raises(RuntimeError, match="normals contains NaN or Inf"):
        ring_query(p, p, p * float("nan"), 0.0, 0.3, 3)


def test_opcheck():
    q, p = random_cloud(2, 20), random_cloud(2, 40, seed=1)
    n = random_cloud(2, 20, seed=2) - 0.5
    torch.library.opcheck(
        torch.ops.pcseg.ring_query.default, (q, p, n, torch.tensor([20, 9]), torch.tensor([40, 30]), 0.1, 0.4, 6)
    )
