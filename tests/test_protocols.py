"""The S3DIS protocols end to end: six tiny generated rooms in the raw S3DIS layout (one per
area), prepared, then ``pcseg s3dis-protocol`` trains and tests every fold and merges the
confusion matrices."""

import json

import numpy as np
import pytest

from pcseg.cli import main
from pcseg.data import generate_room
from pcseg.data.classes import S3DIS_CLASS_NAMES
from pcseg.data.s3dis import prepare_s3dis
from pcseg.protocols import merge_matrices, protocol_folds
from pcseg.testing import TINY_TRAINING

pytestmark = pytest.mark.usefixtures("single_torch_thread")

POINTS_PER_ROOM = 2000
TINY = [
    *TINY_TRAINING,
    f"data.points_per_room={POINTS_PER_ROOM}",
    "data.blocks_per_room=4",
    "train.class_weights=none",
]


def _write_raw_room(room_dir, room):
    """The published layout: <room>/<room>.txt and Annotations/<class>_<k>.txt, xyz rgb per line."""
    rows = np.concatenate([room["coord"].astype(np.float64), room["color"].astype(np.float64)], 1)
    annotations = room_dir / "Annotations"
    annotations.mkdir(parents=True)
    np.savetxt(room_dir / f"{room_dir.name}.txt", rows, fmt="%.3f %.3f %.3f %d %d %d")
    for k, label in enumerate(np.unique(room["label"])):
        np.savetxt(
            annotations / f"{S3DIS_CLASS_NAMES[label]}_{k + 1}.txt",
            rows[room["label"] == label],
            fmt="%.3f %.3f %.3f %d %d %d",
        )


@pytest.fixture(scope="module")
def s3dis_cache(tmp_path_factory):
    raw = tmp_path_factory.mktemp("s3dis") / "Stanford3dDataset_v1.2_Aligned_Version"
    for area in range(1, 7):
        _write_raw_room(raw / f"Area_{area}" / "office_1", generate_room(area, POINTS_PER_ROOM))
    cache = raw.parent / "cache"
    prepare_s3dis(raw, cache, progress=False)
    return cache


def test_folds_and_merge():
    assert protocol_folds("6fold") == [1, 2, 3, 4, 5, 6]
    assert protocol_folds("area5") == [5]
    with pytest.raises(ValueError, match="protocol must be one of"):
        protocol_folds("5fold")
    a = np.array([[3, 1], [0, 4]])
    b = np.array([[1, 0], [2, 2]])
    scores = merge_matrices([a, b], ignore_index=-1)
    assert scores.overall_accuracy == pytest.approx(10 / 13)
    assert scores.miou == pytest.approx((4 / 7 + 6 / 9) / 2)  # IoU = tp / (row + column - tp)
    assert scores.mean_accuracy == pytest.approx((4 / 5 + 6 / 8) / 2)


def test_six_fold_cli_end_to_end(s3dis_cache, tmp_path, capsys):
    out = tmp_path / "protocol"
    sets = [
        arg
        for s in [*TINY, "data.dataset=s3dis", f"data.root={s3dis_cache}", "data.geometric_features=true"]
        for arg in ("--set", s)
    ]
    assert (
        main(
            [
                "s3dis-protocol",
                "--config",
                "configs/pointnet_s3dis.yaml",
                "--protocol",
                "6fold",
                "--out",
                str(out),
                *sets,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "6-fold: OA" in printed and "mIoU" in printed
    record = json.loads((out / "protocol.json").read_text())
    assert sorted(record["folds"]) == ["1", "2", "3", "4", "5", "6"]
    matrix = np.asarray(record["matrix"])
    assert matrix.sum() == 6 * POINTS_PER_ROOM  # every room scored once, by the fold that held it out
    for area in range(1, 7):
        assert (out / f"area_{area}" / "last.pt").is_file()
    merged = merge_matrices([matrix], ignore_index=-1)
    assert record["merged"]["miou"] == pytest.approx(merged.miou)
    assert record["merged"]["overall_accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())


def test_area5_protocol_and_bad_data_set(s3dis_cache, tmp_path, capsys):
    from pcseg.config import load_config
    from pcseg.protocols import run_s3dis_protocol

    cfg = load_config("configs/acnn_s3dis.yaml", [*TINY, f"data.root={s3dis_cache}"])
    record = run_s3dis_protocol(cfg, "area5", tmp_path / "area5", progress=False)
    assert list(record["folds"]) == [5] and np.asarray(record["matrix"]).sum() == POINTS_PER_ROOM
    assert "Area 5: OA" in capsys.readouterr().out
    with pytest.raises(ValueError, match="data.dataset: s3dis"):
        run_s3dis_protocol(load_config(None, TINY), "area5", tmp_path / "x", progress=False)
