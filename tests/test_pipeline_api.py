"""Segmenter (numpy API) and tiled prediction: any N, tiles, threads, bad input."""
import threading

import numpy as np
import pytest

from pcseg.api import Segmenter
from pcseg.config import load_config
from pcseg.data import generate_room
from pcseg.predict import iter_tiles
from pcseg.train import train

TINY = ["data.points_per_room=3000", "data.num_points=128", "data.blocks_per_room=8", "data.val_blocks_per_room=2",
        "data.block_size=2.0", "data.eval_stride=2.0", "data.neighbours=8", "model.width_multiplier=0.125",
        "train.batch_size=4", "train.epochs=1", "train.amp=none"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    rooms = ([generate_room(0, 3000)], [generate_room(100, 3000)])
    train(load_config(None, [*TINY, f"train.out_dir={out}"]), rooms=rooms, progress=False)
    return out / "best.pt"


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
