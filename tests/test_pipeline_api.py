"""Segmenter (numpy API) and tiled prediction: any N, tiles, threads, bad input, no trainer."""

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from pcseg.config import load_config
from pcseg.data import generate_room
from pcseg.predict import iter_tiles, min_tile_width, segment_cloud, vote_turns
from pcseg.segmenter import Segmenter


def test_inference_does_not_import_the_trainer(checkpoint, tmp_path):
    """Segmenter.from_checkpoint(...).predict(...) and `pcseg predict` in a fresh interpreter
    import neither the training loop nor the losses."""
    room = generate_room(3, 3000)
    cloud = tmp_path / "room.npy"
    np.save(cloud, np.concatenate([room["coord"], room["color"] / 255.0], 1))
    code = f"""
import sys
import numpy as np
import pcseg
from pcseg.cli import main

labels, _ = pcseg.Segmenter.from_checkpoint({str(checkpoint)!r}).predict(np.load({str(cloud)!r})[:, :3])
assert labels.shape == (3000,)
assert main(["predict", {str(cloud)!r}, "--checkpoint", {str(checkpoint)!r}, "--out", {str(tmp_path / "o.npy")!r}]) == 0
print(sorted(name for name in ("pcseg.train", "pcseg.losses") if name in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert np.load(tmp_path / "o.npy").shape == (3000,)


@pytest.mark.parametrize("n", [1, 5, 127, 128, 129, 3000])
def test_predict_any_n(checkpoint, n):
    segmenter = Segmenter.from_checkpoint(checkpoint)
    room = generate_room(3, 3000)
    labels, probs = segmenter.predict(room["coord"][:n], room["color"][:n])
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert probs.shape == (n, 13) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, probs.argmax(1))


def test_empty_and_bad_input(checkpoint):
    segmenter = Segmenter.from_checkpoint(checkpoint)
    labels, probs = segmenter.predict(np.zeros((0, 3), np.float32))
    assert labels.shape == (0,) and probs.shape == (0, 13)
    with pytest.raises(ValueError, match=r"points must be an \(N, 3\) array"):
        segmenter.predict(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        segmenter.predict(np.array([[0.0, 0.0, np.nan]]))
    with pytest.raises(ValueError, match=r"colors must be \(3, 3\)"):
        segmenter.predict(np.zeros((3, 3)), np.zeros((2, 3)))


def test_vote_turns_turn_the_cloud_about_the_vertical_axis():
    rng = np.random.default_rng(0)
    points = rng.uniform(-20, 20, (500, 3)) + [1000.0, 2000.0, 5.0]
    clouds = list(vote_turns(points, 4, about_origin=False))
    assert len(clouds) == 4 and clouds[0] is points
    centre = (points[:, :2].min(0) + points[:, :2].max(0)) / 2
    for i, cloud in enumerate(clouds):
        angle = np.pi / 2 * i
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        np.testing.assert_allclose(cloud[:, :2], (points[:, :2] - centre) @ turn.T + centre, atol=1e-9)
        np.testing.assert_array_equal(cloud[:, 2], points[:, 2])
    # a LiDAR's cloud turns about its sensor: every range stays what the sensor measured
    for cloud in vote_turns(points, 3, about_origin=True):
        np.testing.assert_allclose(np.linalg.norm(cloud, axis=1), np.linalg.norm(points, axis=1), rtol=1e-12)
    assert len(list(vote_turns(points[:0], 5, about_origin=True))) == 1


def test_votes_average_the_turned_passes(checkpoint):
    segmenter = Segmenter.from_checkpoint(checkpoint)
    model, cfg = segmenter.model, segmenter.config
    room = generate_room(3, 3000)
    with torch.no_grad():
        passes = [
            segment_cloud(model, cfg, cloud, room["color"])["probabilities"]
            for cloud in vote_turns(room["coord"], 3, about_origin=False)
        ]
        voted = segment_cloud(model, cfg, room["coord"], room["color"], votes=3, keep_probabilities=False)
    mean = np.mean(passes, axis=0)
    assert voted["probabilities"] is None
    np.testing.assert_allclose(voted["confidence"], mean.max(1), atol=1e-5)
    assert (voted["labels"] == mean.argmax(1)).mean() > 0.999  # ties within float rounding only
    assert np.abs(passes[1] - passes[0]).max() > 1e-4  # the turns do change the blocks
    labels, probs = Segmenter.from_checkpoint(checkpoint, votes=3).predict(room["coord"], room["color"])
    np.testing.assert_allclose(probs, mean, atol=1e-5)
    empty = segment_cloud(model, cfg, room["coord"][:0], room["color"][:0], votes=3, keep_probabilities=False)
    assert empty["labels"].shape == (0,) and empty["probabilities"] is None
    one = segment_cloud(model, cfg, room["coord"], room["color"], votes=1)
    np.testing.assert_array_equal(one["probabilities"], passes[0])
    for votes in (0, True, 1.5):
        with pytest.raises(ValueError, match="votes must be an int >= 1"):
            segment_cloud(model, cfg, room["coord"], room["color"], votes=votes)
        with pytest.raises(ValueError, match="votes must be an int >= 1"):
            Segmenter(model, cfg, votes=votes)


def test_tiles_cover_every_point_once():
    rng = np.random.default_rng(0)
    coord = rng.uniform(0, 30, (20_000, 3)).astype(np.float32)
    seen = np.zeros(len(coord), dtype=np.int64)
    for core, context in iter_tiles(coord, max_points=3000, max_extent=10.0, margin=1.0):
        seen[core] += 1
        assert np.isin(core, context).all() and len(context) <= 3000
        lo, hi = coord[core, :2].min(0), coord[core, :2].max(0)
        inside = np.all((coord[:, :2] >= lo - 1.0) & (coord[:, :2] <= hi + 1.0), 1)
        assert np.isin(np.flatnonzero(inside), context).mean() > 0.99  # margin of one block around the tile
    np.testing.assert_array_equal(seen, 1)


@pytest.mark.parametrize(
    "max_points, min_width",
    [(300_000, min_tile_width(1.0, 4096, 300_000)), (50_000, None)],
    ids=["whole cube dealt", "block-wide tiles dealt"],
)
def test_dense_cloud_tiles_are_bounded(max_points, min_width):
    """2 million points in a 3.5 m cube: one block-wide column alone holds ~570k points. Tiles
    stop at min_width (6.6 m: the whole cube; or one block) and their contexts are dealt into
    parts of at most max_points, each a uniform sample of its tile and margin."""
    rng = np.random.default_rng(0)
    coord = rng.uniform(0, 3.5, (2_000_000, 3)).astype(np.float32)
    x, y = coord[:, 0].copy(), coord[:, 1].copy()
    seen = np.zeros(len(coord), dtype=np.int64)
    for core, context in iter_tiles(coord, max_points=max_points, margin=1.0, min_width=min_width):
        assert 0 < len(core) <= len(context) <= max_points
        assert (np.diff(context) > 0).all() and (context[np.searchsorted(context, core)] == core).all()
        seen[core] += 1
        lo, hi = np.array([x[core].min(), y[core].min()]), np.array([x[core].max(), y[core].max()])
        ctx_lo = np.array([x[context].min(), y[context].min()])
        ctx_hi = np.array([x[context].max(), y[context].max()])
        # the context is the tile and its margin (clipped to the cube), sampled throughout
        np.testing.assert_allclose(ctx_lo, np.maximum(lo - 1.0, 0.0), atol=0.02)
        np.testing.assert_allclose(ctx_hi, np.minimum(hi + 1.0, 3.5), atol=0.02)
    np.testing.assert_array_equal(seen, 1)


class RoomPositionModel(torch.nn.Module):
    """Stands in for a trained network with a known answer: the class is which of 13 slices
    of the cloud's x range a point lies in (its room-normalised x, feature 3 with colour on),
    plus a faint class-dependent term from its chunk's mean height (as a PointNet's global
    feature). A tile's points are labelled as untiled only if their blocks are fed in the
    whole cloud's frame."""

    def forward(self, points, features, normals=None, lengths=None):
        slices = features[..., 3:4] * 13  # (B, P, 1)
        classes = torch.arange(13, dtype=points.dtype)
        logits = -4.0 * (slices - classes - 0.5) ** 2 + 0.01 * points[..., 2:3].mean(1, keepdim=True) * classes
        return logits.transpose(1, 2)  # (B, 13, P)


def test_dense_cloud_tiled_prediction_matches_untiled(monkeypatch):
    """A dense room (1000+ points a block, 128 per model input) with max_tile_points=2500:
    split into tiles and dealt into parts of at most 2500 points; every point gets
    probabilities and the labels are the untiled ones."""
    import pcseg.predict as predict_module

    cfg = load_config(
        None,
        [
            "data.block_size=2.0",
            "data.eval_stride=2.0",
            "data.num_points=128",
            "data.room_coords=true",
            "data.geometric_features=false",
        ],
    )
    room = generate_room(5, 20_000)
    model = RoomPositionModel().eval()
    whole = segment_cloud(model, cfg, room["coord"], room["color"], max_tile_points=len(room["coord"]))
    contexts = []
    real = predict_module.predict_tile

    def recording(model, data, points, *args, **kwargs):
        contexts.append(len(points))
        return real(model, data, points, *args, **kwargs)

    monkeypatch.setattr(predict_module, "predict_tile", recording)
    tiled = segment_cloud(model, cfg, room["coord"], room["color"], max_tile_points=2500)
    assert len(contexts) > 8 and max(contexts) <= 2500
    np.testing.assert_allclose(tiled["probabilities"].sum(1), 1.0, atol=1e-5)  # every point predicted
    assert len(np.unique(whole["labels"])) == 13
    assert (tiled["labels"] == whole["labels"]).mean() > 0.995


def test_tiled_prediction_matches_untiled_inside_tiles(checkpoint):
    """Small tiles change only the context near tile borders: most labels agree with one tile."""
    room = generate_room(5, 3000)
    whole = Segmenter.from_checkpoint(checkpoint)
    tiled = Segmenter.from_checkpoint(checkpoint, max_tile_points=1200)
    a, pa = whole.predict(room["coord"], room["color"])
    b, pb = tiled.predict(room["coord"], room["color"])
    assert (a == b).mean() > 0.6


def test_threads_give_the_same_result(checkpoint):
    segmenter = Segmenter.from_checkpoint(checkpoint)
    room = generate_room(4, 2000)
    expected, _ = segmenter.predict(room["coord"], room["color"])
    results = [None] * 4

    def work(i):
        results[i] = segmenter.predict(room["coord"], room["color"])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, expected)
