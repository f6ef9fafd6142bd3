"""The CUDA kernels of pcseg's native ops against the CPU kernels and the pure-PyTorch references.

Every CUDA kernel is built to return what the CPU kernel returns bit for bit (same distance
formula without FMA, same tie rule, deterministic backward sums in the CPU's order), so the
comparisons here are exact (torch.equal) wherever both sides run pcseg kernels, and to a
tolerance only against references that go through other torch code (torch.linalg.eigh, sums).

The whole module needs a GPU and the pcseg._C_cuda extension; elsewhere it is skipped with the
reason. (.ci/cuda_compile_check.sh checks on GPU-less machines that the kernels compile.)
"""

import pytest
import torch

from pcseg.ops import (
    HAS_CUDA_KERNELS,
    ball_query,
    ball_query_naive,
    estimate_normals,
    estimate_normals_naive,
    farthest_point_sample,
    farthest_point_sample_naive,
    gather_points,
    gather_points_naive,
    group_points,
    group_points_naive,
    knn,
    knn_naive,
    ring_query,
    ring_query_naive,
    three_nn_interpolate,
    three_nn_interpolate_naive,
    voxelize,
    voxelize_naive,
)
from pcseg.testing import cloud_with_duplicates, lattice_cloud, random_cloud, surface_cloud

if not torch.cuda.is_available():
    pytestmark = pytest.mark.skip(
        reason="no CUDA GPU visible: the CUDA kernels are tested on GPU machines only "
        "(.ci/cuda_compile_check.sh checks that they compile)"
    )
elif not HAS_CUDA_KERNELS:
    pytestmark = pytest.mark.skip(
        reason="a GPU is visible but pcseg._C_cuda is not built: rebuild with "
        "FORCE_CUDA=1 pip install -e . --no-build-isolation"
    )

CUDA = "cuda"
DTYPES = [torch.float32, torch.float64]
# The window search keeps its neighbour list in a per-thread array of 8, 32 or 128 slots and in
# global scratch beyond: these k cover every path and its edges.
KS = [1, 8, 9, 32, 33, 128, 129, 256, 300, 400]  # 400 > N: padded


def cuda(*tensors):
    out = tuple(t.to(CUDA) if isinstance(t, torch.Tensor) else t for t in tensors)
    return out if len(out) > 1 else out[0]


def assert_same(cuda_result, cpu_result):
    """Exact equality of (tuples of) tensors computed on the GPU and on the CPU."""
    if isinstance(cpu_result, torch.Tensor):
        cuda_result, cpu_result = (cuda_result,), (cpu_result,)
    for got, want in zip(cuda_result, cpu_result):
        assert got.device.type == CUDA
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got.cpu(), want), (got.cpu() - want).abs().max()


def search_clouds(dtype, seed=0):
    """Queries and points for knn / ball / ring queries, with ties, duplicates, padding, an
    empty cloud and more than one shared-memory tile (256 points) per cloud."""
    lattice = lattice_cloud(2, 7, dtype, seed=seed)  # 343 points, distances tie everywhere
    dup = cloud_with_duplicates(2, 343, unique=20, dtype=dtype, seed=seed)
    points = torch.cat([lattice * 0.25, dup])  # (4, 343, 3): 0.25 keeps the lattice exact
    query = torch.cat([lattice[:, :90] * 0.25 + 0.125, dup[:, :90]])  # (4, 90, 3)
    query[0, :40] = points[0, :40]  # queries that coincide with points: distance 0
    lengths = torch.tensor([343, 300, 0, 257])
    query_lengths = torch.tensor([90, 7, 90, 0])
    return query, points, query_lengths, lengths


# ----------------------------------------------------------------------------- FPS


@pytest.mark.parametrize("dtype", DTYPES)
def test_fps_equals_cpu_kernel_and_naive_with_ties_and_padding(dtype):
    lattice = lattice_cloud(2, 6, dtype)  # 216 points: every step has many equally far points
    dup = cloud_with_duplicates(2, 216, unique=30, dtype=dtype)
    points = torch.cat([lattice, dup])
    lengths = torch.tensor([216, 100, 30, 1])
    got = farthest_point_sample(cuda(points), 120, cuda(lengths))
    want = farthest_point_sample(points, 120, lengths)
    assert_same(got, want)
    assert torch.equal(want, farthest_point_sample_naive(points, 120, lengths))
    # Clouds shorter than num_samples are filled with -1 after their last point.
    assert (got[3, 1:] == -1).all() and (got[2, 30:] == -1).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_fps_large_cloud_spans_every_thread_and_warp(dtype):
    points = random_cloud(2, 6000, dtype, seed=3)  # > 512 threads x several points each
    lengths = torch.tensor([6000, 4099])
    g_cpu = torch.Generator().manual_seed(11)
    g_cuda = torch.Generator().manual_seed(11)
    got = farthest_point_sample(cuda(points), 300, cuda(lengths), random_start=True, generator=g_cuda)
    want = farthest_point_sample(points, 300, lengths, random_start=True, generator=g_cpu)
    assert_same(got, want)
    g_naive = torch.Generator().manual_seed(11)
    assert torch.equal(want, farthest_point_sample_naive(points, 300, lengths, random_start=True, generator=g_naive))


def test_fps_unbatched_and_zero_samples():
    points = random_cloud(1, 50)[0]
    assert_same(farthest_point_sample(cuda(points), 10), farthest_point_sample(points, 10))
    assert farthest_point_sample(cuda(points), 0).shape == (0,)


# ----------------------------------------------------------------------------- searches


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KS)
def test_knn_equals_cpu_kernel_and_naive(dtype, k):
    query, points, ql, pl = search_clouds(dtype)
    got = knn(*cuda(query, points), k, *cuda(ql, pl))
    want = knn(query, points, k, ql, pl)
    assert_same(got, want)
    naive = knn_naive(query, points, k, ql, pl)
    assert torch.equal(want[0], naive[0]) and torch.equal(want[1], naive[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 9, 33, 129, 300])
@pytest.mark.parametrize("radius", [0.25, 0.5, 0.3])
def test_ball_query_equals_cpu_kernel_and_naive(dtype, k, radius):
    # 0.25 and 0.5 are lattice spacings: many points lie exactly on the sphere (excluded).
    query, points, ql, pl = search_clouds(dtype, seed=1)
    got = ball_query(*cuda(query, points), radius, k, *cuda(ql, pl))
    want = ball_query(query, points, radius, k, ql, pl)
    assert_same(got, want)
    naive = ball_query_naive(query, points, radius, k, ql, pl)
    assert torch.equal(want[0], naive[0]) and torch.equal(want[1], naive[1])


def ring_normals(query, dtype):
    g = torch.Generator().manual_seed(5)
    normals = torch.randn(query.shape, generator=g, dtype=torch.float64).to(dtype)
    normals[0, :10] = 0.0  # no tangent frame: distance order
    normals[0, 10:20] = torch.tensor([0.0, 0.0, 1.0], dtype=dtype)  # lattice-aligned: ties
    normals[1, :5] = torch.tensor([0.0, 0.0, -3.0], dtype=dtype)  # not unit length
    return normals


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3, 16, 33, 129, 300])
@pytest.mark.parametrize("r_inner,r_outer", [(0.0, 0.6), (0.25, 0.6), (0.3, 0.55)])
def test_ring_query_equals_cpu_kernel_and_naive(dtype, k, r_inner, r_outer):
    query, points, ql, pl = search_clouds(dtype, seed=2)
    normals = ring_normals(query, dtype)
    got = ring_query(*cuda(query, points, normals), r_inner, r_outer, k, *cuda(ql, pl))
    want = ring_query(query, points, normals, r_inner, r_outer, k, ql, pl)
    assert_same(got, want)
    naive = ring_query_naive(query, points, normals, r_inner, r_outer, k, ql, pl)
    assert torch.equal(want[0], naive[0]) and torch.equal(want[1], naive[1])


def test_ring_reference_on_the_normal_axis_keeps_distance_order():
    # The farthest kept point lies straight above the centre: no tangent frame.
    points = torch.tensor([[[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [0.0, 0.3, 0.0], [-0.3, 0.0, 0.0], [0.0, 0.0, 0.5]]])
    query = torch.zeros(1, 1, 3)
    normals = torch.tensor([[[0.0, 0.0, 1.0]]])
    got = ring_query(*cuda(query, points, normals), 0.1, 1.0, 4)
    want = ring_query(query, points, normals, 0.1, 1.0, 4)
    assert_same(got, want)
    assert want[1].tolist() == [[[1, 2, 3, 4]]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_knn_on_a_larger_random_cloud(dtype):
    points = random_cloud(2, 4000, dtype, seed=7)
    query = random_cloud(2, 3000, dtype, seed=8)
    assert_same(knn(*cuda(query, points), 16), knn(query, points, 16))
    assert_same(knn(*cuda(points, points), 20), knn(points, points, 20))


def test_search_gradients_match_the_cpu():
    query, points, ql, pl = search_clouds(torch.float64, seed=3)
    q_cpu, p_cpu = query.requires_grad_(), points.requires_grad_()
    q_cuda, p_cuda = (t.detach().to(CUDA).requires_grad_() for t in (query, points))
    for fn in (lambda q, p, a, b: knn(q, p, 5, a, b), lambda q, p, a, b: ball_query(q, p, 0.5, 7, a, b)):
        d_cpu, i_cpu = fn(q_cpu, p_cpu, ql, pl)
        d_cuda, i_cuda = fn(q_cuda, p_cuda, *cuda(ql, pl))
        weight = torch.randn(d_cpu.shape, dtype=torch.float64)
        (d_cpu.masked_fill(i_cpu < 0, 0) * weight).sum().backward()
        (d_cuda.masked_fill(i_cuda < 0, 0) * cuda(weight)).sum().backward()
        torch.testing.assert_close(q_cuda.grad.cpu(), q_cpu.grad, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(p_cuda.grad.cpu(), p_cpu.grad, rtol=1e-12, atol=1e-12)
        for t in (q_cpu, p_cpu, q_cuda, p_cuda):
            t.grad = None


# ----------------------------------------------------------------------------- gather / group


def gather_inputs(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(3, 40, 19, generator=g, dtype=torch.float64).to(dtype)
    idx = torch.randint(-1, 40, (3, 25, 6), generator=g)  # -1 slots and repeated rows
    idx[1] = -1  # a batch that gathers nothing
    idx[2, :, :3] = 7  # one row gathered many times: a long backward segment
    return features, idx


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_and_group_forward_backward_equal_cpu(dtype):
    features, idx = gather_inputs(dtype)
    for fn, index in ((gather_points, idx[..., 0]), (group_points, idx)):
        f_cpu = features.detach().clone().requires_grad_()
        f_cuda = cuda(features.detach().clone()).requires_grad_()
        out_cpu, out_cuda = fn(f_cpu, index), fn(f_cuda, cuda(index))
        assert_same(out_cuda.detach(), out_cpu.detach())
        assert torch.equal(out_cpu.detach(), gather_points_naive(features, index))
        grad = torch.randn(out_cpu.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
        out_cpu.backward(grad)
        out_cuda.backward(cuda(grad))
        # Deterministic segment sums in the CPU's order: bit-identical gradients.
        assert_same(f_cuda.grad, f_cpu.grad)
        f_naive = features.detach().clone().requires_grad_()
        group_points_naive(f_naive, index).backward(grad)
        torch.testing.assert_close(f_cpu.grad, f_naive.grad)


def test_gather_backward_is_deterministic_and_matches_the_kernel_of_the_cpu():
    g = torch.Generator().manual_seed(2)
    grad = torch.randn(2, 5000, 8, generator=g)
    idx = torch.randint(-1, 30, (2, 5000), generator=g)  # ~170 entries per row
    want = torch.ops.pcseg.gather_rows_backward(grad, idx, 30)
    first = torch.ops.pcseg.gather_rows_backward(*cuda(grad, idx), 30)
    second = torch.ops.pcseg.gather_rows_backward(*cuda(grad, idx), 30)
    assert torch.equal(first, second)
    assert_same(first, want)


def test_gather_gradcheck_and_gradgradcheck_on_cuda():
    features, idx = gather_inputs(torch.float64, seed=3)
    f = cuda(features[:, :10, :3]).requires_grad_()
    index = cuda(idx[:, :6, :2].clamp(max=9))
    assert torch.autograd.gradcheck(lambda x: group_points(x, index), (f,))
    assert torch.autograd.gradgradcheck(lambda x: group_points(x, index), (f,))


# ----------------------------------------------------------------------------- interpolation


def interpolate_inputs(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 30, 21, generator=g, dtype=torch.float64).to(dtype)
    idx = torch.randint(-1, 30, (2, 50, 3), generator=g)
    idx[0, :5] = 4  # one row receiving many entries
    weight = torch.rand(2, 50, 3, generator=g, dtype=torch.float64).to(dtype)
    return features, idx, weight


@pytest.mark.parametrize("dtype", DTYPES)
def test_three_interpolate_kernels_equal_cpu(dtype):
    features, idx, weight = interpolate_inputs(dtype)
    want = torch.ops.pcseg.three_interpolate(features, idx, weight)
    assert_same(torch.ops.pcseg.three_interpolate(*cuda(features, idx, weight)), want)
    grad = torch.randn(want.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(dtype)
    want_b = torch.ops.pcseg.three_interpolate_backward(grad, features, idx, weight)
    got_b = torch.ops.pcseg.three_interpolate_backward(*cuda(grad, features, idx, weight))
    assert_same(got_b, want_b)
    again = torch.ops.pcseg.three_interpolate_backward(*cuda(grad, features, idx, weight))
    assert torch.equal(again[0], got_b[0]) and torch.equal(again[1], got_b[1])
    # A float32 grad_out is converted to the features' dtype, as on the CPU.
    if dtype == torch.float64:
        assert_same(
            torch.ops.pcseg.three_interpolate_backward(*cuda(grad.float(), features, idx, weight)),
            torch.ops.pcseg.three_interpolate_backward(grad.float(), features, idx, weight),
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_three_nn_interpolate_forward_backward_match_naive(dtype):
    unknown = random_cloud(2, 200, dtype, seed=1)
    known = random_cloud(2, 60, dtype, seed=2)
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(2, 60, 9, generator=g, dtype=torch.float64).to(dtype)
    known_lengths = torch.tensor([60, 2])  # the second cloud has fewer than 3 known points
    inputs = [t.clone().requires_grad_() for t in (unknown, known, feats)]
    ref_inputs = [t.clone().requires_grad_() for t in (unknown, known, feats)]
    cuda_inputs = [cuda(t).requires_grad_() for t in (unknown, known, feats)]
    out = three_nn_interpolate(*cuda_inputs, cuda(known_lengths))
    ref = three_nn_interpolate_naive(*ref_inputs, known_lengths)
    # Against references that round differently (other sum orders, autograd graphs).
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.detach().cpu(), ref.detach(), **tol)
    grad = torch.randn(ref.shape, generator=g, dtype=torch.float64).to(dtype)
    out.backward(cuda(grad))
    ref.backward(grad)
    for got, want in zip(cuda_inputs, ref_inputs):
        torch.testing.assert_close(got.grad.cpu(), want.grad, **tol)
    three_nn_interpolate(*inputs, known_lengths).backward(grad)
    for got, want in zip(cuda_inputs, inputs):
        torch.testing.assert_close(got.grad.cpu(), want.grad, **tol)


def test_three_nn_interpolate_gradcheck_on_cuda():
    unknown = cuda(random_cloud(1, 12, torch.float64, seed=4)).requires_grad_()
    known = cuda(random_cloud(1, 7, torch.float64, seed=5)).requires_grad_()
    feats = cuda(torch.randn(1, 7, 3, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(three_nn_interpolate, (unknown, known, feats))


# ----------------------------------------------------------------------------- normals


@pytest.mark.parametrize("dtype", DTYPES)
def test_normals_from_neighbors_equals_cpu_kernel(dtype):
    points = torch.cat([random_cloud(1, 200, dtype, seed=6), lattice_cloud(1, 6, dtype)[:, :200]])
    _, idx = knn(points, points, 12)
    idx[0, :20, 2:] = -1  # exactly 2 valid neighbours: zero normal
    idx[1, :10, 5:] = -1
    want = torch.ops.pcseg.normals_from_neighbors(points, idx)
    assert_same(torch.ops.pcseg.normals_from_neighbors(*cuda(points, idx)), want)
    assert (want[0, :20] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_estimate_normals_matches_cpu_and_naive(dtype):
    points, true_normals = surface_cloud(800, seed=1, dtype=dtype)
    points, true_normals = points.unsqueeze(0), true_normals.unsqueeze(0)
    lengths = torch.tensor([700])
    got = estimate_normals(cuda(points), 16, cuda(lengths), viewpoint=[0.0, 0.0, 0.0])
    assert_same(got, estimate_normals(points, 16, lengths, viewpoint=[0.0, 0.0, 0.0]))
    naive = estimate_normals_naive(points, 16, lengths, viewpoint=[0.0, 0.0, 0.0])
    cos = (got.cpu()[0, :700].double() * naive[0, :700].double()).sum(-1)
    assert cos.min() > 1 - 1e-4  # same orientation, eigh vs Jacobi rounding only
    # Oriented towards the viewpoint at the sphere's centre: opposite the outward normals.
    assert ((got.cpu()[0, :700] * true_normals[0, :700]).sum(-1) < -0.95).all()
    assert (got[0, 700:] == 0).all()


# ----------------------------------------------------------------------------- plumbing


def test_cuda_checks_name_the_argument_like_the_cpu():
    p = random_cloud(1, 10)
    with pytest.raises(RuntimeError, match=r"points must be \(B, N, 3\)"):
        knn(cuda(p), cuda(p[..., :2]), 3)
    with pytest.raises(RuntimeError, match="points contains NaN or Inf"):
        knn(cuda(p), cuda(p * float("nan")), 3)
    with pytest.raises(RuntimeError, match=r"lengths must lie in \[0, 10\]"):
        ball_query(cuda(p), cuda(p), 0.5, 3, lengths=cuda(torch.tensor([11])))
    # Mixed devices reach the CUDA kernel, whose checks name both tensors like the CPU's.
    with pytest.raises(RuntimeError, match="query is on cuda:0 but points is on cpu"):
        torch.ops.pcseg.knn(cuda(p), p, cuda(torch.tensor([10])), torch.tensor([10]), 3)
    with pytest.raises(RuntimeError, match="query is on cpu but points is on cuda:0"):
        torch.ops.pcseg.knn(p, cuda(p), torch.tensor([10]), cuda(torch.tensor([10])), 3)
    with pytest.raises(RuntimeError, match="start_index"):
        torch.ops.pcseg.farthest_point_sample(cuda(p), cuda(torch.tensor([10])), 3, cuda(torch.tensor([10])))
    with pytest.raises(RuntimeError, match=r"idx values must lie in \[-1, 10\)"):
        gather_points(cuda(p), cuda(torch.tensor([[10]])))
    with pytest.raises(RuntimeError, match=r"idx values must lie in \[-1, 10\)"):
        torch.ops.pcseg.normals_from_neighbors(cuda(p), cuda(torch.full((1, 10, 3), 10)))


def test_non_contiguous_inputs_and_a_side_stream():
    query, points, ql, pl = search_clouds(torch.float32, seed=4)
    query_t = cuda(query.transpose(0, 1).contiguous()).transpose(0, 1)  # non-contiguous
    assert not query_t.is_contiguous()
    want = knn(query, points, 10, ql, pl)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # query_t was copied on the default stream
    with torch.cuda.stream(stream):
        got = knn(query_t, cuda(points), 10, *cuda(ql, pl))
        fps = farthest_point_sample(cuda(points), 50, cuda(pl))
    stream.synchronize()
    assert_same(got, want)
    assert_same(fps, farthest_point_sample(points, 50, pl))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second GPU")
def test_second_device():
    query, points, ql, pl = search_clouds(torch.float64, seed=5)
    dev = torch.device("cuda", 1)
    got = knn(query.to(dev), points.to(dev), 12, ql.to(dev), pl.to(dev))
    assert got[0].device == dev
    assert torch.equal(got[1].cpu(), knn(query, points, 12, ql, pl)[1])
    idx = farthest_point_sample(points.to(dev), 40, pl.to(dev))
    assert torch.equal(idx.cpu(), farthest_point_sample(points, 40, pl))


def test_opcheck_on_cuda():
    q, p = cuda(random_cloud(2, 20), random_cloud(2, 40, seed=1))
    n = cuda(random_cloud(2, 20, seed=2) - 0.5)
    ql, pl = cuda(torch.tensor([20, 9]), torch.tensor([40, 30]))
    ops = torch.ops.pcseg
    torch.library.opcheck(ops.farthest_point_sample.default, (p, pl, 12, cuda(torch.tensor([0, 3]))))
    torch.library.opcheck(ops.knn.default, (q, p, ql, pl, 5))
    torch.library.opcheck(ops.ball_query.default, (q, p, ql, pl, 0.3, 5))
    torch.library.opcheck(ops.ring_query.default, (q, p, n, ql, pl, 0.1, 0.4, 6))
    features, idx = cuda(*gather_inputs(torch.float64))
    torch.library.opcheck(ops.gather_rows.default, (features.requires_grad_(), idx[..., 0]))
    torch.library.opcheck(
        ops.gather_rows_backward.default, (cuda(torch.randn(3, 25, 4, dtype=torch.float64)), idx[..., 0], 40)
    )
    f, i, w = cuda(*interpolate_inputs(torch.float64))
    torch.library.opcheck(
        ops.three_interpolate_backward.default, (cuda(torch.randn(2, 50, 21, dtype=torch.float64)), f, i, w)
    )
    torch.library.opcheck(ops.three_interpolate.default, (f.requires_grad_(), i, w.requires_grad_()))
    torch.library.opcheck(ops.normals_from_neighbors.default, (p, cuda(torch.randint(-1, 40, (2, 40, 8)))))
    labels = cuda(torch.randint(-1, 3, (40,)))
    torch.library.opcheck(ops.voxelize.default, (p[0], 0.2, labels, 3, cuda(torch.rand(40, 2))))


# ----------------------------------------------------------------------------- voxelize
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spread", [2.0, 20_000.0])
def test_voxelize_equals_cpu_kernel_and_naive(dtype, spread):
    generator = torch.Generator().manual_seed(0)
    points = (torch.rand(100_000, 3, generator=generator, dtype=torch.float64) * spread).to(dtype)
    labels = torch.randint(-1, 5, (100_000,), generator=generator)
    values = torch.randn(100_000, 4, generator=generator, dtype=dtype)
    want = voxelize(points, 0.05, labels, 5, values)
    got = voxelize(cuda(points), 0.05, cuda(labels), 5, cuda(values))
    # Keys, numbering and counts are exact; the float sums differ by the order of the adds.
    for name in ("keys", "inverse", "counts", "label_counts"):
        assert torch.equal(getattr(got, name).cpu(), getattr(want, name)), name
    torch.testing.assert_close(got.point_sums.cpu(), want.point_sums, rtol=1e-9, atol=1e-6)
    torch.testing.assert_close(got.value_sums.cpu(), want.value_sums, rtol=1e-4, atol=1e-4)
    assert torch.equal(voxelize_naive(points, 0.05, labels, 5, values).keys, want.keys)


def test_voxelize_refuses_nan_and_distant_points_on_cuda():
    with pytest.raises(RuntimeError, match="finite"):
        voxelize(cuda(torch.tensor([[0.0, 0.0, float("nan")]])), 0.1)
    with pytest.raises(RuntimeError, match="beyond"):
        voxelize(cuda(torch.tensor([[0.0, 0.0, 1e7]])), 0.1)
