"""gather_points / group_points, forward and forward+backward: pcseg vs torch's own
advanced indexing (the pure-PyTorch reference) on an A-CNN grouping.

python benchmarks/bm_gather_points.py
"""

import torch
from _common import median_ms, report

from pcseg.ops import group_points, group_points_naive


def grouping(b=16, n=1024, c=128, m=256, k=32):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(b, n, c, generator=g)
    idx = torch.randint(0, n, (b, m, k), generator=g)
    assert torch.equal(group_points(feats, idx), group_points_naive(feats, idx))
    feats_g = feats.clone().requires_grad_()
    grad = torch.randn(b, m, k, c, generator=g)

    def ours_fwd_bwd():
        group_points(feats_g, idx).backward(grad)

    def naive_fwd_bwd():
        group_points_naive(feats_g, idx).backward(grad)

    rows = [
        ("pcseg group_points", median_ms(lambda: group_points(feats, idx)), "identical to naive"),
        ("torch indexing (group_points_naive)", median_ms(lambda: group_points_naive(feats, idx)), ""),
        ("pcseg group_points forward + backward", median_ms(ours_fwd_bwd), ""),
        ("torch indexing forward + backward", median_ms(naive_fwd_bwd), ""),
    ]
    report(f"group_points: ({b}, {n:,}, {c}) features, idx ({b}, {m}, {k})", rows, "pcseg group_points")


if __name__ == "__main__":
    grouping()
