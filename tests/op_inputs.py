"""Input builders shared by the op tests and benchmarks/bm_*.py."""
from __future__ import annotations

import torch


def random_cloud(batch, n, dtype=torch.float32, device="cpu", seed=0):
    """(B, N, 3) uniform in the unit cube, deterministic under seed."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, n, 3, generator=g, dtype=torch.float64).to(dtype).to(device)


def random_lengths(batch, n, seed=0, device="cpu", min_len=0):
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randint(min_len, n + 1, (batch,), generator=g).to(device)


def lattice_cloud(batch, side, dtype=torch.float32, device="cpu", seed=0):
    """(B, side**3, 3) integer lattice points, shuffled: distances tie everywhere."""
    ax = torch.arange(side, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    g = torch.Generator().manual_seed(seed)
    clouds = [grid[torch.randperm(grid.shape[0], generator=g)] for _ in range(batch)]
    return torch.stack(clouds).to(dtype).to(device)


def cloud_with_duplicates(batch, n, unique, dtype=torch.float32, device="cpu", seed=0):
    """(B, N, 3) drawn from only `unique` distinct points."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, unique, 3, generator=g, dtype=torch.float64)
    pick = torch.randint(0, unique, (batch, n), generator=g)
    return torch.gather(base, 1, pick.unsqueeze(-1).expand(-1, -1, 3)).to(dtype).to(device)


def surface_cloud(n, seed=0, dtype=torch.float32):
    """(N, 3) points and true normals (N, 3) on a unit sphere: a surface with known normals."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, 3, generator=g, dtype=torch.float64)
    v = v / v.norm(dim=-1, keepdim=True)
    return v.to(dtype), v.to(dtype)


def mixed_density_cloud(batch, n, dtype=torch.float32, seed=0):
    """(B, N, 3) points whose density varies by orders of magnitude: a third in tight blobs,
    the rest in the unit cube ever denser towards x = 0. Neighbouring query groups then need
    very different search radii, and some windows hold fewer than k points."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(batch, n, 3, generator=g, dtype=torch.float64)
    pts[..., 0] = pts[..., 0] ** 4
    blob = torch.rand(batch, n, 1, generator=g, dtype=torch.float64) < 1 / 3
    centres = torch.rand(batch, 6, 3, generator=g, dtype=torch.float64)
    which = torch.randint(0, 6, (batch, n), generator=g)
    blobs = torch.gather(centres, 1, which.unsqueeze(-1).expand(-1, -1, 3))
    blobs = blobs + 0.01 * torch.randn(batch, n, 3, generator=g, dtype=torch.float64)
    return torch.where(blob, blobs, pts).to(dtype)
