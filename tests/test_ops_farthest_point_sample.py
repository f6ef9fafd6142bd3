import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pcseg.ops import farthest_point_sample, farthest_point_sample_naive
from pcseg.testing import DEVICES, cloud_with_duplicates, lattice_cloud, random_cloud, random_lengths

DTYPES = [torch.float32, torch.float64]


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    n=st.integers(1, 200),
    frac=st.floats(0, 1),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 10_000),
    use_lengths=st.booleans(),
)
def test_matches_naive_on_random_shapes(batch, n, frac, dtype, seed, use_lengths):
    points = random_cloud(batch, n, dtype, seed=seed)
    m = int(frac * n)
    lengths = random_lengths(batch, n, seed) if use_lengths else None
    got = farthest_point_sample(points, m, lengths)
    assert torch.equal(got, farthest_point_sample_naive(points, m, lengths))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_naive_on_a_large_cloud(device, dtype):
    points = random_cloud(1, 30_000, dtype, device, seed=3)
    got = farthest_point_sample(points, 600)
    assert torch.equal(got, farthest_point_sample_naive(points, 600))
    assert got.unique().numel() == 600


@pytest.mark.parametrize("device", DEVICES)
def test_ties_on_a_lattice_follow_the_lowest_index_rule(device):
    points = lattice_cloud(2, 12, device=device)
    got = farthest_point_sample(points, 300)
    assert torch.equal(got, farthest_point_sample_naive(points, 300))


@pytest.mark.parametrize("device", DEVICES)
def test_duplicates_and_more_samples_than_distinct_points(device):
    points = cloud_with_duplicates(2, 500, unique=20, device=device)
    got = farthest_point_sample(points, 60)
    assert torch.equal(got, farthest_point_sample_naive(points, 60))
    # The first 20 samples are the 20 distinct points.
    first = points[0, got[0, :20]]
    assert torch.unique(first, dim=0).shape[0] == 20


def test_dense_clusters_match_naive():
    # Clusters much smaller than one cell of the cloud's Morton grid: the tree re-codes them.
    g = torch.Generator().manual_seed(7)
    centre = torch.randint(0, 3, (2, 4000, 1), generator=g).to(torch.float64) * 5.0
    points = (centre + torch.randn(2, 4000, 3, generator=g, dtype=torch.float64) * 1e-4).float()
    got = farthest_point_sample(points, 400)
    assert torch.equal(got, farthest_point_sample_naive(points, 400))


def test_padding_lengths_and_empty_clouds():
    points = random_cloud(3, 50)
    lengths = torch.tensor([50, 7, 0])
    got = farthest_point_sample(points, 10, lengths)
    assert (got[0] >= 0).all()
    assert (got[1, :7] >= 0).all() and (got[1, :7] < 7).all() and (got[1, 7:] == -1).all()
    assert (got[2] == -1).all()
    # Padding must not influence the real points' samples.
    assert torch.equal(got[1, :7], farthest_point_sample(points[1, :7], 7))


def test_unbatched_zero_samples_and_start_index():
    points = random_cloud(1, 40)[0]
    assert farthest_point_sample(points, 0).shape == (0,)
    got = farthest_point_sample(points, 5, start_index=17)
    assert got.shape == (5,) and got[0] == 17
    assert torch.equal(got, farthest_point_sample_naive(points, 5, start_index=17))


def test_random_start_is_deterministic_under_a_seed():
    points = random_cloud(4, 300)
    a = farthest_point_sample(points, 16, random_start=True, generator=torch.Generator().manual_seed(5))
    b = farthest_point_sample(points, 16, random_start=True, generator=torch.Generator().manual_seed(5))
    c = farthest_point_sample(points, 16, random_start=True, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    ref = farthest_point_sample_naive(points, 16, random_start=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, ref)


@pytest.mark.parametrize(
    "make_call, match",
    [
        (lambda p: farthest_point_sample(p, 11), r"num_samples must be in \[0, N\]"),
        (lambda p: farthest_point_sample(p, -1), r"num_samples must be in \[0, N\]"),
        (lambda p: farthest_point_sample(p[..., :2], 3), r"points must be \(B, N, 3\)"),
        (lambda p: farthest_point_sample(p[None], 3), r"points must be \(B, N, 3\)"),
        (lambda p: farthest_point_sample(p.int(), 3), r"points must be float32 or float64"),
        (lambda p: farthest_point_sample(p, 3, torch.tensor([10])), r"lengths must be \(B,\)"),
        (lambda p: farthest_point_sample(p, 3, torch.tensor([11, 2])), r"lengths must lie in"),
        (lambda p: farthest_point_sample(p, 3, start_index=10), r"start_index\[0\] = 10"),
        (lambda p: farthest_point_sample(p, 2.5), r"num_samples must be an int"),
    ],
)
def test_bad_input_names_the_argument(make_call, match):
    points = random_cloud(2, 10)
    with pytest.raises((RuntimeError, ValueError, TypeError), match=match):
        make_call(points)


def test_nan_is_refused_and_non_contiguous_input_works():
    points = random_cloud(1, 20)
    bad = points.clone()
    bad[0, 3, 1] = float("nan")
    with pytest.raises(RuntimeError, match="points contains NaN or Inf"):
        farthest_point_sample(bad, 4)
    wide = random_cloud(1, 20 * 2).reshape(1, 20, 6)[..., ::2]
    assert not wide.is_contiguous()
    assert torch.equal(farthest_point_sample(wide, 8), farthest_point_sample(wide.contiguous(), 8))


def test_opcheck():
    points = random_cloud(2, 64)
    args = (points, torch.tensor([64, 30]), 16, torch.tensor([0, 3]))
    torch.library.opcheck(torch.ops.pcseg.farthest_point_sample.default, args)
