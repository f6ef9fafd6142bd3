"""Shared pytest fixtures: the real sample data folder, a raw S3DIS layout built from it, and
one torch thread per module. Input builders and the device list live in `pcseg.testing`."""

from pathlib import Path

import numpy as np
import pytest

from pcseg import testing
from pcseg.data.classes import S3DIS_CLASS_NAMES
from pcseg.testing import TINY_TRAINING

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real sample files (`../shared/data`); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def single_torch_thread():
    """One torch intra-op thread for a whole module.

    Opt in with ``pytestmark = pytest.mark.usefixtures("single_torch_thread")``: small
    bridge and fusion workloads run slower with spinning OpenMP threads on a shared machine.
    """
    with testing.single_torch_thread():
        yield


def _load_s3dis_sample(shared_data):
    folder = shared_data / "s3dis" / "mmdet3d_sample"
    points = np.fromfile(folder / "points" / "Area_1_office_2.bin", dtype=np.float32).reshape(-1, 6)
    semantic = np.fromfile(folder / "semantic_mask" / "Area_1_office_2.bin", dtype=np.int64)
    instance = np.fromfile(folder / "instance_mask" / "Area_1_office_2.bin", dtype=np.int64)
    assert points.shape == (100, 6) and semantic.shape == (100,) and instance.shape == (100,)
    return points, semantic, instance


def _write_raw_s3dis_room(room_dir, points, semantic, instance, class_names=S3DIS_CLASS_NAMES):
    """The published layout: <room>/<room>.txt and Annotations/<class>_<k>.txt, `%.3f %.3f %.3f %d %d %d`."""
    annotations = room_dir / "Annotations"
    annotations.mkdir(parents=True)
    fmt = "%.3f %.3f %.3f %d %d %d"
    np.savetxt(room_dir / f"{room_dir.name}.txt", points, fmt=fmt)
    files = []
    for k, inst in enumerate(np.unique(instance)):
        rows = instance == inst
        name = class_names[semantic[rows][0]]
        path = annotations / f"{name}_{k + 1}.txt"
        np.savetxt(path, points[rows], fmt=fmt)
        files.append(path)
    return files


@pytest.fixture
def raw_s3dis(tmp_path, shared_data):
    """A raw S3DIS tree of two rooms built from the real 100-point sample.

    Returns (raw folder, points (100, 6) float32 xyz+rgb, semantic (100,) int64,
    instance (100,) int64). Area_5/hallway_6 adds a class outside the 13 ("stairs" -> clutter).
    """
    points, semantic, instance = _load_s3dis_sample(shared_data)
    raw = tmp_path / "Stanford3dDataset_v1.2_Aligned_Version"
    _write_raw_s3dis_room(raw / "Area_1" / "office_2", points, semantic, instance)
    stairs = raw / "Area_5" / "hallway_6" / "Annotations"
    stairs.mkdir(parents=True)
    np.savetxt(stairs / "stairs_1.txt", points[:10], fmt="%.3f %.3f %.3f %d %d %d")
    np.savetxt(stairs / "floor_1.txt", points[10:20], fmt="%.3f %.3f %.3f %d %d %d")
    return raw, points, semantic, instance


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """`best.pt` of a tiny PointNet trained once per session on generated rooms."""
    from pcseg.config import load_config
    from pcseg.data import generate_room
    from pcseg.train import train

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    rooms = ([generate_room(0, 3000)], [generate_room(100, 3000)])
    train(load_config(None, [*TINY_TRAINING, f"train.out_dir={out}"]), rooms=rooms, progress=False)
    return out / "best.pt"
