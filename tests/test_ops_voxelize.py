"""pcseg.ops.voxelize: the native kernel against its pure-PyTorch reference on many shapes,
its edge cases (empty, every label -1, duplicates, voxel borders, NaN, beyond the keys'
range), its two numbering paths (dense box, radix sort), determinism across thread counts,
and the errors that name the argument."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pcseg.ops import voxelize, voxelize_naive
from pcseg.ops.voxelize import VOXEL_KEY_OFFSET, pack_voxel_keys, unpack_voxel_keys


def assert_same(result, reference, exact_sums=False):
    for name in ("keys", "inverse", "counts", "label_counts"):
        assert torch.equal(getattr(result, name), getattr(reference, name)), name
    for name in ("point_sums", "value_sums"):
        got, want = getattr(result, name), getattr(reference, name)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        if exact_sums:
            assert torch.equal(got, want), name
        else:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 3000),
    spread=st.sampled_from([0.05, 1.0, 30.0, 5000.0]),  # one voxel, dense boxes, a sparse scan
    voxel_size=st.sampled_from([0.01, 0.05, 0.1, 0.37, 2.0]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    num_classes=st.integers(0, 7),
    width=st.integers(0, 5),
    seed=st.integers(0, 10_000),
)
def test_matches_the_reference(n, spread, voxel_size, dtype, num_classes, width, seed):
    generator = torch.Generator().manual_seed(seed)
    points = ((torch.rand(n, 3, generator=generator, dtype=torch.float64) - 0.3) * spread).to(dtype)
    labels = torch.randint(-1, num_classes, (n,), generator=generator) if num_classes else None
    values = torch.randn(n, width, generator=generator, dtype=dtype) if width else None
    result = voxelize(points, voxel_size, labels, num_classes, values)
    assert_same(result, voxelize_naive(points, voxel_size, labels, num_classes, values))
    kept = result.inverse >= 0
    # Every kept point lies in its voxel (by the documented rule: the product in the points'
    # dtype), and the keys are strictly ascending.
    coordinates = unpack_voxel_keys(result.keys)[result.inverse[kept]]
    assert torch.equal(coordinates, torch.floor(points[kept] * (1.0 / voxel_size)).to(torch.int64))
    assert bool((result.keys[1:] > result.keys[:-1]).all())


def test_points_on_voxel_borders_and_negative_coordinates():
    points = torch.tensor([[0.0, 0.0, 0.0], [-0.0, -1e-9, 0.1], [0.1, 0.2, -0.1], [-0.1, -0.2, 0.3]])
    result = voxelize(points, 0.1)
    want = torch.floor(points * (1.0 / 0.1)).to(torch.int64)
    assert torch.equal(unpack_voxel_keys(result.keys)[result.inverse], want)
    assert torch.equal(result.keys, pack_voxel_keys(torch.unique(want, dim=0) + VOXEL_KEY_OFFSET))


def test_empty_all_skipped_and_duplicates():
    empty = voxelize(torch.zeros(0, 3), 0.1, torch.zeros(0, dtype=torch.long), 4, torch.zeros(0, 2))
    assert empty.keys.shape == (0,) and empty.label_counts.shape == (0, 4) and empty.value_sums.shape == (0, 2)
    skipped = voxelize(torch.rand(5, 3), 0.1, torch.full((5,), -1), 3)
    assert skipped.keys.numel() == 0 and skipped.inverse.tolist() == [-1] * 5
    same = torch.tensor([[1.23, -4.5, 6.0]]).repeat(1000, 1)
    labels = torch.arange(1000) % 3
    result = voxelize(same, 0.2, labels, 3, torch.ones(1000, 1))
    assert result.counts.tolist() == [1000] and result.label_counts.tolist() == [[334.0, 333.0, 333.0]]
    assert result.value_sums.tolist() == [[1000.0]]
    torch.testing.assert_close(result.point_sums, same[:1].double() * 1000, rtol=1e-6, atol=0)


@pytest.mark.parametrize("spread", [2.0, 20_000.0])  # the dense box and the radix sort
def test_sums_are_identical_at_any_thread_count(spread):
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(200_000, 3, generator=generator) * spread
    labels = torch.randint(-1, 5, (200_000,), generator=generator)
    values = torch.randn(200_000, 4, generator=generator)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = voxelize(points, 0.05, labels, 5, values)
        torch.set_num_threads(2)
        two = voxelize(points, 0.05, labels, 5, values)
    finally:
        torch.set_num_threads(threads)
    assert_same(one, two, exact_sums=True)
    assert_same(one, voxelize_naive(points, 0.05, labels, 5, values))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"points": torch.zeros(4, 2)}, "points must be \\(N, 3\\)"),
        ({"points": torch.zeros(4, 3, dtype=torch.int64)}, "points must be float32 or float64"),
        ({"voxel_size": 0.0}, "voxel_size must be a positive finite number"),
        ({"voxel_size": float("nan")}, "voxel_size must be a positive finite number"),
        ({"labels": torch.zeros(3, dtype=torch.long), "num_classes": 2}, "labels must be \\(N,\\) with N = 4"),
        ({"labels": torch.zeros(4, dtype=torch.int32), "num_classes": 2}, "labels must be int64"),
        ({"labels": torch.tensor([0, 1, 2, -1]), "num_classes": 2}, "labels must lie in \\[-1, 2\\)"),
        ({"labels": torch.zeros(4, dtype=torch.long), "num_classes": 0}, "num_classes must be > 0"),
        ({"values": torch.zeros(5, 2)}, "values must be \\(N, D\\) with N = 4"),
        ({"values": torch.zeros(4, 2, dtype=torch.int32)}, "values must be float32 or float64"),
        ({"points": torch.tensor([[0.0, 0.0, 0.0], [float("nan"), 0, 0], [1, 1, 1], [2, 2, 2]])}, "finite"),
        ({"points": torch.tensor([[0.0, 0, 0], [1, 1, 1], [2, 2, 2], [0, 0, 1e7]])}, "beyond \\+-1048576"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    arguments = {"points": torch.rand(4, 3), "voxel_size": 0.1} | kwargs
    with pytest.raises(RuntimeError, match=match):
        voxelize(**arguments)


def test_a_nan_point_with_label_minus_one_is_skipped_not_refused():
    points = torch.tensor([[0.0, 0.0, 0.0], [float("nan"), 0.0, 0.0]])
    result = voxelize(points, 0.1, torch.tensor([0, -1]), 1)
    assert result.inverse.tolist() == [0, -1] and result.counts.tolist() == [1]


def test_opcheck():
    points = torch.rand(50, 3, dtype=torch.float64)
    labels = torch.randint(-1, 3, (50,))
    torch.library.opcheck(torch.ops.pcseg.voxelize.default, (points, 0.2, labels, 3, torch.rand(50, 2)))
