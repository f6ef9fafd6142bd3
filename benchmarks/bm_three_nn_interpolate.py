"""three_nn_interpolate (the A-CNN / PointNet++ decoder step), forward and forward+backward:
pcseg vs scipy cKDTree (k=3) + numpy weighting and the pure-PyTorch reference.

python benchmarks/bm_three_nn_interpolate.py
"""

import numpy as np
import torch
from _common import median_ms, report
from scipy.spatial import cKDTree

from pcseg.ops import three_nn_interpolate, three_nn_interpolate_naive
from pcseg.testing import random_cloud


def scipy_interpolate(unknown, known, features):
    out = []
    for u, k, f in zip(unknown, known, features):
        d, i = cKDTree(k).query(u, 3, workers=-1)
        w = 1.0 / (d + 1e-8)
        w /= w.sum(-1, keepdims=True)
        out.append(np.einsum("nk,nkc->nc", w, f[i]))
    return np.stack(out)


def decoder_step(b=16, n=4096, m=1024, c=128):
    unknown = random_cloud(b, n, seed=0)
    known = random_cloud(b, m, seed=1)
    feats = torch.randn(b, m, c, generator=torch.Generator().manual_seed(2))
    ours = three_nn_interpolate(unknown, known, feats)
    ref = three_nn_interpolate_naive(unknown, known, feats)
    u, k, f = unknown.numpy(), known.numpy(), feats.numpy()
    feats_g = feats.clone().requires_grad_()
    grad = torch.randn(b, n, c)

    def ours_fwd_bwd():
        three_nn_interpolate(unknown, known, feats_g).backward(grad)

    def naive_fwd_bwd():
        three_nn_interpolate_naive(unknown, known, feats_g).backward(grad)

    rows = [
        (
            "pcseg three_nn_interpolate",
            median_ms(lambda: three_nn_interpolate(unknown, known, feats)),
            f"max |diff| vs naive {float((ours - ref).abs().max()):.1e}",
        ),
        (
            "scipy cKDTree k=3 + numpy weights",
            median_ms(lambda: scipy_interpolate(u, k, f)),
            f"max |diff| {np.abs(scipy_interpolate(u, k, f) - ours.numpy()).max():.1e}",
        ),
        (
            "naive torch (three_nn_interpolate_naive)",
            median_ms(lambda: three_nn_interpolate_naive(unknown, known, feats)),
            "reference",
        ),
        ("pcseg forward + backward", median_ms(ours_fwd_bwd), "grad w.r.t. features"),
        ("naive torch forward + backward", median_ms(naive_fwd_bwd), ""),
    ]
    report(f"3-NN interpolation, {b} x {n:,} points from {m:,} known, C={c}", rows, "pcseg three_nn_interpolate")


if __name__ == "__main__":
    decoder_step()
