import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from pcseg.ops import knn, knn_naive
from pcseg.testing import DEVICES, cloud_with_duplicates, lattice_cloud, random_cloud, random_lengths

DTYPES = [torch.float32, torch.float64]


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    m=st.integers(1, 60),
    n=st.integers(1, 200),
    k=st.integers(1, 210),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 10_000),
    use_lengths=st.booleans(),
)
def test_matches_naive_on_random_shapes(batch, m, n, k, dtype, seed, use_lengths):
    query = random_cloud(batch, m, dtype, seed=seed)
    points = random_cloud(batch, n, dtype, seed=seed + 7)
    ql = random_lengths(batch, m, seed) if use_lengths else None
    pl = random_lengths(batch, n, seed + 3) if use_lengths else None
    d, i = knn(query, points, k, ql, pl)
    dn, inn = knn_naive(query, points, k, ql, pl)
    assert torch.equal(i, inn)
    assert torch.equal(d, dn)


@pytest.mark.parametrize("device", DEVICES)
def test_ties_and_duplicates_follow_the_lowest_index_rule(device):
    lattice = lattice_cloud(1, 8, device=device)
    d, i = knn(lattice, lattice, 27)
    dn, inn = knn_naive(lattice, lattice, 27)
    assert torch.equal(i, inn) and torch.equal(d, dn)
    dup = cloud_with_duplicates(2, 300, unique=15, device=device)
    d, i = knn(dup, dup, 40)
    assert torch.equal(i, knn_naive(dup, dup, 40)[1])


@pytest.mark.parametrize("device", DEVICES)
def test_k_256_and_more_than_n_pads_with_minus_one_and_inf(device):
    points = random_cloud(2, 300, device=device)
    query = random_cloud(2, 50, device=device, seed=1)
    d, i = knn(query, points, 256)
    assert torch.equal(i, knn_naive(query, points, 256)[1])
    d, i = knn(query, points, 310, lengths=torch.tensor([300, 5], device=device))
    assert (i[0, :, :300] >= 0).all() and (i[0, :, 300:] == -1).all()
    assert (i[1, :, :5] >= 0).all() and (i[1, :, 5:] == -1).all()
    assert torch.isinf(d[1, :, 5:]).all() and torch.isfinite(d[1, :, :5]).all()


def test_100k_points_against_scipy_ckdtree():
    rng = np.random.default_rng(0)
    points = rng.random((100_000, 3)).astype(np.float32)
    query = rng.random((5_000, 3)).astype(np.float32)
    d, i = knn(torch.from_numpy(query), torch.from_numpy(points), 16)
    d_ref, i_ref = cKDTree(points.astype(np.float64)).query(query.astype(np.float64), 16)
    np.testing.assert_allclose(d.sqrt().numpy(), d_ref, rtol=1e-5, atol=1e-6)
    # Random float coordinates have no exact ties, so the indices agree everywhere except
    # where float32 rounding swaps two neighbours at the same float64 distance.
    assert (i.numpy() == i_ref).mean() > 0.999


def _clusters(n, dtype, seed):
    """Tight clusters far apart, one with a lattice inside: many points share one Morton cell
    of the cloud's grid, so the tree re-codes them relative to their own box."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.randint(0, 4, (1, n, 1), generator=g).to(torch.float64) * 10.0
    pts = centre + torch.randn(1, n, 3, generator=g, dtype=torch.float64) * 1e-3
    lattice = torch.stack(torch.meshgrid(*[torch.arange(5.0)] * 3, indexing="ij"), -1)
    pts[0, :125] = 20.0 + 1e-3 * lattice.reshape(-1, 3)[:n]
    return pts.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 16, 100])
def test_dense_clusters_and_queries_of_another_density_match_naive(dtype, k):
    points = _clusters(2000, dtype, seed=4)
    d, i = knn(points, points, k)
    dn, inn = knn_naive(points, points, k)
    assert torch.equal(i, inn) and torch.equal(d, dn)
    # Sparse and dense query sets, inside and around the clusters (grouped by their own tree).
    for m in (40, 4000):
        query = _clusters(m, dtype, seed=5) + 2e-3
        d, i = knn(query, points, k)
        dn, inn = knn_naive(query, points, k)
        assert torch.equal(i, inn) and torch.equal(d, dn)


def test_self_query_and_unbatched():
    points = random_cloud(1, 500)[0]
    d, i = knn(points, points, 4)
    assert d.shape == (500, 4) and i.shape == (500, 4)
    assert torch.equal(i[:, 0], torch.arange(500)) and (d[:, 0] == 0).all()
    assert torch.equal(i, knn_naive(points, points, 4)[1])


def test_padded_query_rows_are_padding():
    query, points = random_cloud(2, 10), random_cloud(2, 20, seed=1)
    d, i = knn(query, points, 3, query_lengths=torch.tensor([4, 10]))
    assert (i[0, 4:] == -1).all() and torch.isinf(d[0, 4:]).all()
    assert (i[0, :4] >= 0).all() and (i[1] >= 0).all()


def test_empty_clouds():
    d, i = knn(torch.zeros(2, 0, 3), random_cloud(2, 5), 3)
    assert d.shape == (2, 0, 3) and i.shape == (2, 0, 3)
    d, i = knn(random_cloud(2, 4), torch.zeros(2, 0, 3), 3)
    assert (i == -1).all() and torch.isinf(d).all()


def test_dists_are_differentiable():
    query = random_cloud(2, 6, torch.float64).requires_grad_()
    points = random_cloud(2, 20, torch.float64, seed=2).requires_grad_()
    torch.autograd.gradcheck(lambda q, p: knn(q, p, 4)[0], (query, points))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda q, p: knn(q, p, 0), r"k must be >= 1"),
        (lambda q, p: knn(q, p, -3), r"k must be >= 1"),
        (lambda q, p: knn(q[..., :2], p, 3), r"query must be \(B, N, 3\)"),
        (lambda q, p: knn(q, p[:1], 3), r"same batch size"),
        (lambda q, p: knn(q, p.double(), 3), r"query is Float but points is Double"),
        (lambda q, p: knn(q.long(), p, 3), r"must be float32 or float64"),
        (lambda q, p: knn(q[0], p, 3), r"both be batched"),
        (lambda q, p: knn(q, p, 3, lengths=torch.tensor([1, 2, 3])), r"lengths must be \(B,\)"),
        (lambda q, p: knn(q, p, 3, lengths=torch.tensor([1.0, 2.0])), r"integer tensor"),
        (lambda q, p: knn(q, p, 3, query_lengths=torch.tensor([-1, 2])), r"query_lengths must lie"),
        (lambda q, p: knn(q, p.masked_fill(p > 0.5, float("inf")), 3), r"points contains NaN or Inf"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    query, points = random_cloud(2, 5), random_cloud(2, 30, seed=1)
    with pytest.raises((RuntimeError, ValueError, TypeError), match=match):
        call(query, points)


def test_opcheck():
    q, p = random_cloud(2, 20), random_cloud(2, 40, seed=1)
    torch.library.opcheck(torch.ops.pcseg.knn.default, (q, p, torch.tensor([20, 9]), torch.tensor([40, 30]), 5))


MEMORY_SCRIPT = """
import resource, torch, pcseg.ops as O
p = torch.rand(1_000_000, 3, generator=torch.Generator().manual_seed(0))
d, i = O.knn(p, p, 16)
assert i.shape == (1_000_000, 16) and (i[:, 0] == torch.arange(1_000_000)).all()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_million_point_self_query_stays_under_4_gb():
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=300, check=True)
    peak_kib = int(out.stdout.strip().splitlines()[-1])
    print(f"1M-point kNN k=16 peak RSS: {peak_kib / 2**20:.2f} GiB")
    assert peak_kib < 4 * 2**20
