"""Indoor transfer: a model trained on generated rooms only, applied to the real NYU Depth v2
frame 1407 (issue #18 point 6).

    .venv/bin/python benchmarks/bm_nyu_transfer.py --checkpoint demo_out/run/last.pt [more.pt ...] [--votes 8]

The frame (``../shared/data/nyu1407``: the labelled 425 x 560 crop, its depth and the class13
labels) is back-projected, turned z-up by ``pcseg.bridge.gravity_alignment`` from its floor (as
an IMU would give it: no label is used), and labelled by ``Segmenter.predict`` with its colours.
The five classes the two label sets share and the issue names are scored: floor, wall,
chair, sofa and table (NYU class13 ids 5, 12, 4, 9, 10; S3DIS ids 1, 2, 8, 9, 7). Every
other labelled pixel is "other": a point of a bed labelled table counts against table. IoU per
class and their mean; unlabelled pixels (NYU 0) are left out.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from pcseg.bridge import gravity_alignment
from pcseg.data.classes import S3DIS_CLASS_NAMES
from pcseg.data.nyu import read_nyu_frame
from pcseg.segmenter import Segmenter

FRAME = Path(__file__).resolve().parents[2] / "shared" / "data" / "nyu1407"
# shared class -> (NYU class13 id, S3DIS id)
SHARED_CLASSES = {"floor": (5, 1), "wall": (12, 2), "chair": (4, 8), "sofa": (9, 9), "table": (10, 7)}


def nyu_frame_z_up(folder: Path = FRAME) -> dict:
    """The NYU 1407 frame's points turned z-up from its floor, with colours and class13 labels."""
    frame = read_nyu_frame(folder / "images.png", folder / "depth.png", folder / "DERIVED_class13_1407_crop425x560.png")
    # a hand-held camera: x right, y down, z forward
    T_up_from_camera = gravity_alignment(points=frame["coord"], up_hint=(0.0, -1.0, 0.0))
    coord = frame["coord"].astype(np.float64) @ T_up_from_camera[:3, :3].T
    return {"coord": coord, "color": frame["color"], "label": frame["label"]}


def shared_class_iou(nyu_label: np.ndarray, s3dis_prediction: np.ndarray) -> dict[str, float]:
    """IoU of each shared class over the labelled points (NYU label > 0).

    Args:
        nyu_label: (N,) int NYU class13 labels, 0 = unlabelled.
        s3dis_prediction: (N,) int S3DIS class ids.

    Returns:
        iou: class name -> IoU (NaN when the class is absent from truth and prediction).
    """
    labelled = nyu_label > 0
    truth, prediction = nyu_label[labelled], s3dis_prediction[labelled]
    iou = {}
    for name, (nyu_id, s3dis_id) in SHARED_CLASSES.items():
        t, p = truth == nyu_id, prediction == s3dis_id
        union = int((t | p).sum())
        iou[name] = float((t & p).sum() / union) if union else float("nan")
    return iou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", nargs="+", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--votes", type=int, default=1, help="test-time votes (Segmenter(votes=...)); 1: one pass")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not FRAME.is_dir():
        raise SystemExit(f"{FRAME} is missing: the real NYU frame is not on this machine")
    frame = nyu_frame_z_up()
    print(
        f"NYU 1407: {len(frame['coord']):,} points, {int((frame['label'] > 0).sum()):,} labelled; "
        f"torch {torch.__version__}, {args.threads} threads, {args.votes} vote(s), load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    names = list(SHARED_CLASSES)
    print(f"{'checkpoint':<40} {'mIoU':>6} " + " ".join(f"{n:>6}" for n in names) + "   predicted classes (share)")
    for path in args.checkpoint:
        segmenter = Segmenter.from_checkpoint(path, votes=args.votes)
        start = time.perf_counter()
        labels, _ = segmenter.predict(frame["coord"], frame["color"])
        seconds = time.perf_counter() - start
        iou = shared_class_iou(frame["label"], labels)
        shares = np.bincount(labels, minlength=len(S3DIS_CLASS_NAMES)) / len(labels)
        top = ", ".join(f"{S3DIS_CLASS_NAMES[c]} {shares[c]:.2f}" for c in np.argsort(-shares)[:5])
        print(
            f"{str(path)[-40:]:<40} {np.nanmean(list(iou.values())):6.3f} "
            + " ".join(f"{iou[n]:6.3f}" for n in names)
            + f"   {top} ({seconds:.2f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
