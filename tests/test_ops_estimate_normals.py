import pytest
import torch

from pcseg.ops import estimate_normals, estimate_normals_naive
from pcseg.testing import DEVICES, random_cloud, surface_cloud


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_naive(device, dtype):
    points, _ = surface_cloud(3000, dtype=dtype)
    points = points.to(device)
    got = estimate_normals(points, 16)
    ref = estimate_normals_naive(points, 16)
    assert (got * ref).sum(-1).min() > 1 - 1e-4


def test_sphere_normals_are_radial_and_face_the_viewpoint():
    points, truth = surface_cloud(5000, seed=1, dtype=torch.float64)
    normals = estimate_normals(points, 12, viewpoint=torch.zeros(3, dtype=torch.float64))
    cos = (normals * truth).sum(-1)
    assert cos.max() < -0.99  # every normal points inwards, towards the centre


def test_plane_far_from_origin_faces_up():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2000, 2, generator=g) * 2 + 1000.0  # far from the origin: float32 stress
    points = torch.cat([xy, torch.full((2000, 1), 500.0)], -1)
    normals = estimate_normals(points, 10)
    assert torch.allclose(normals, torch.tensor([0.0, 0.0, 1.0]).expand_as(normals), atol=1e-3)


def test_padding_and_tiny_clouds_give_zero_normals():
    points = random_cloud(2, 50)
    normals = estimate_normals(points, 8, lengths=torch.tensor([50, 2]))
    assert (normals[1] == 0).all()
    assert torch.allclose(normals[0].norm(dim=-1), torch.ones(50), atol=1e-5)


def test_bad_viewpoint():
    with pytest.raises(ValueError, match=r"viewpoint must be \(3,\) or \(B, 3\)"):
        estimate_normals(random_cloud(1, 20), 5, viewpoint=[0.0, 1.0])


def test_opcheck():
    points = random_cloud(2, 30)
    idx = torch.randint(-1, 30, (2, 30, 6))
    torch.library.opcheck(torch.ops.pcseg.normals_from_neighbors.default, (points, idx))


def _two_walls_room(n=3000, seed=0):
    """Two parallel walls 4 m apart (x = 0 and x = 4), 5 m long, 3 m high, as one cloud."""
    g = torch.Generator().manual_seed(seed)
    yz = torch.rand(2 * n, 2, generator=g) * torch.tensor([5.0, 3.0])
    x = torch.cat([torch.zeros(n), torch.full((n,), 4.0)])
    return torch.cat([x[:, None], yz], -1), torch.cat([torch.ones(n), -torch.ones(n)])


def test_two_facing_walls_face_into_the_room():
    points, inwards_x = _two_walls_room()
    normals = estimate_normals(points, 12, viewpoint="interior")
    torch.testing.assert_close(normals[:, 0], inwards_x, atol=1e-4, rtol=0)
    # a known viewpoint inside the room (a sensor) gives the same, and the naive reference agrees
    torch.testing.assert_close(estimate_normals(points, 12, viewpoint=[2.0, 2.5, 1.5]), normals)
    assert ((estimate_normals_naive(points, 12, viewpoint="interior") * normals).sum(-1) > 0.999).all()
    with pytest.raises(ValueError, match="interior"):
        estimate_normals(points, 12, viewpoint="inside")


def test_blocks_of_a_room_face_its_interior():
    # The model inputs of a room's blocks (pcseg.inputs): every block's normals face the room's
    # interior, though no block sees both walls.
    from pcseg.config import DataConfig
    from pcseg.data.blocks import room_to_blocks
    from pcseg.inputs import block_inputs, input_normals

    points, inwards_x = _two_walls_room(6000)
    room = {
        "coord": points.numpy(),
        "color": torch.zeros(len(points), 3).numpy(),
        "label": (inwards_x > 0).long().numpy(),
    }
    blocks = room_to_blocks(room, block_size=1.0, stride=1.0, num_points=512)
    data = DataConfig(geometric_features=True, use_color=True)
    _, features = block_inputs(torch.as_tensor(blocks["features"]), data)
    normals = input_normals(features, data)
    expected = torch.where(torch.as_tensor(blocks["label"]) == 1, 1.0, -1.0)
    assert (normals[..., 0] * expected > 0.99).all()


def test_smallest_eigenvalue_in_closed_form_matches_lapack():
    """geometric_features' surface variation takes the smallest covariance eigenvalue from the
    closed-form cubic: it agrees with eigvalsh on planes, lines, blobs, tiny and large scales,
    multiples of I and zeros."""
    from pcseg.inputs import smallest_eigenvalue

    torch.manual_seed(0)
    shapes = [torch.tensor(s) for s in ([1.0, 1.0, 1e-4], [1.0, 1e-4, 1e-4], [1.0, 1.0, 1.0], [3.0, 1.0, 0.5])]
    for scale in (1e-5, 1.0, 1e4):
        for shape in shapes:
            x = torch.randn(5000, 16, 3) * shape * scale
            x = x @ torch.linalg.qr(torch.randn(3, 3))[0]  # a random orientation
            x = x - x.mean(1, keepdim=True)
            covariance = x.transpose(1, 2) @ x / 16  # float32: symmetric to rounding only
            reference = torch.linalg.eigvalsh(((covariance + covariance.mT) / 2).double())
            smallest, trace = smallest_eigenvalue(covariance)
            assert smallest.dtype == torch.float64 and smallest.shape == (5000,)
            total = reference.sum(-1)
            # a near-double root (the line) costs the cubic's solution sqrt(eps) of the trace
            assert float(((smallest - reference[:, 0]).abs() / total).max()) < 1e-7
            assert float(((trace - total).abs() / total).max()) < 1e-12
    special = torch.stack(
        [2 * torch.eye(3), torch.zeros(3, 3), torch.outer(torch.arange(1.0, 4.0), torch.arange(1.0, 4.0))]
    )
    smallest, trace = smallest_eigenvalue(special)
    torch.testing.assert_close(smallest, torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(trace, torch.tensor([6.0, 0.0, 14.0], dtype=torch.float64))
