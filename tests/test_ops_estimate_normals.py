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
