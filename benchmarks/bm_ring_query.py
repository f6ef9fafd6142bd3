"""ring_query (k=32) against knn (k=32) on the same input: the issue's target is at most 1.5x
the kNN time. The ring query does strictly more work (an annulus filter, then the angular
order around each centre's normal), so the ratio is what is printed: the two are called in
turn, round after round, and the ratio is the median of the rounds' ratios (see
_common.interleaved_ms), with the median times beside it.

python benchmarks/bm_ring_query.py
"""

import os

import torch
from _common import interleaved_ms

from pcseg.ops import estimate_normals, farthest_point_sample, knn, ring_query
from pcseg.testing import random_cloud


def kept_per_ring(idx) -> str:
    kept = (idx >= 0).sum(-1).double()
    return f"mean {kept.mean():.1f} of {idx.shape[-1]} slots filled, {(kept == 0).double().mean():.1%} empty"


def report_pair(title, knn_call, ring_call, k, r_inner, r_outer, kept):
    medians, ratios = interleaved_ms({"knn": knn_call, "ring": ring_call})
    print(f"\n## {title}  (threads={torch.get_num_threads()}, load={os.getloadavg()[0]:.1f})")
    print(f"{'method':<44} {'median ms':>10} {'vs knn':>9}  note")
    print(
        f"{f'pcseg ring_query [{r_inner}, {r_outer}) k={k}':<44} {medians['ring']:10.2f} {ratios['ring']:8.2f}x  {kept}"
    )
    print(f"{f'pcseg knn k={k}':<44} {medians['knn']:10.2f} {'-':>9}  same queries and points")


def self_query(n=100_000, k=32, r_inner=0.03, r_outer=0.05):
    # Uniform unit cube: ~41 points expected in the 0.03-0.05 annulus, so most rings fill.
    pts = random_cloud(1, n, seed=0)[0]
    normals = estimate_normals(pts, 16)
    _, idx = ring_query(pts, pts, normals, r_inner, r_outer, k)
    report_pair(
        f"ring query vs kNN, self-query of {n:,} points in the unit cube",
        lambda: knn(pts, pts, k),
        lambda: ring_query(pts, pts, normals, r_inner, r_outer, k),
        k,
        r_inner,
        r_outer,
        kept_per_ring(idx),
    )


def acnn_level(b=16, n=4096, m=1024, k=32, r_inner=0.1, r_outer=0.2):
    # A-CNN's first level on 1 m blocks: FPS centres, ring [0.1, 0.2) m with 32 samples, on
    # points that lie on surfaces (a sphere of radius 0.5 m), where rings are 2D annuli.
    g = torch.Generator().manual_seed(3)
    v = torch.randn(b, n, 3, generator=g)
    pts = 0.5 * v / v.norm(dim=-1, keepdim=True)
    normals = estimate_normals(pts, 16)
    centres_idx = farthest_point_sample(pts, m)
    centres = torch.gather(pts, 1, centres_idx.unsqueeze(-1).expand(-1, -1, 3))
    centre_normals = torch.gather(normals, 1, centres_idx.unsqueeze(-1).expand(-1, -1, 3))
    _, idx = ring_query(centres, pts, centre_normals, r_inner, r_outer, k)
    report_pair(
        f"ring query vs kNN, A-CNN level: {b} x {m:,} centres on {n:,} surface points",
        lambda: knn(centres, pts, k),
        lambda: ring_query(centres, pts, centre_normals, r_inner, r_outer, k),
        k,
        r_inner,
        r_outer,
        kept_per_ring(idx),
    )


if __name__ == "__main__":
    self_query()
    acnn_level()
