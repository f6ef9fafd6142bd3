"""`pcseg prepare s3dis RAW OUT` on a raw-layout fixture built from the real 100-point sample."""

import os

import pytest

from pcseg.cli import main
from pcseg.data import s3dis


def test_prepare_s3dis_writes_the_cache_and_a_second_run_skips(raw_s3dis, tmp_path, capsys, monkeypatch):
    raw = raw_s3dis[0]
    out = tmp_path / "cache"
    assert main(["prepare", "s3dis", str(raw), str(out)]) == 0
    assert f"prepared 2 rooms under {out}" in capsys.readouterr().out
    caches = [out / "Area_1" / "office_2.npz", out / "Area_5" / "hallway_6.npz"]
    assert [len(s3dis.load_room(p)["label"]) for p in caches] == [100, 20]
    mtimes = [os.stat(p).st_mtime_ns for p in caches]

    def must_not_read(room_dir):
        raise AssertionError(f"{room_dir} was read again")

    monkeypatch.setattr(s3dis, "read_raw_room", must_not_read)
    assert main(["prepare", "s3dis", str(raw), str(out)]) == 0
    assert f"prepared 2 rooms under {out}" in capsys.readouterr().out
    assert [os.stat(p).st_mtime_ns for p in caches] == mtimes


def test_prepare_s3dis_of_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["prepare", "s3dis", str(missing), str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert f"pcseg prepare: error: S3DIS raw folder not found: {missing}" in err
    assert not (tmp_path / "cache").exists()


def test_prepare_s3dis_reports_a_failed_room_and_exits_1(raw_s3dis, tmp_path, capsys):  # noqa: F811
    raw = raw_s3dis[0]
    (raw / "Area_2" / "storage_1" / "Annotations").mkdir(parents=True)  # a room with no annotations
    out = tmp_path / "cache"
    with pytest.warns(UserWarning):
        assert main(["prepare", "s3dis", str(raw), str(out)]) == 1
    captured = capsys.readouterr()
    assert f"prepared 2 rooms under {out}" in captured.out
    assert "pcseg prepare: failed: Area_2/storage_1:" in captured.err
    assert (out / "Area_1" / "office_2.npz").is_file() and not (out / "Area_2").exists()
