"""Issue #12, point 3: atomic outputs and the run-folder lock, with real faults — a checkpoint
write killed with SIGKILL, a file-size limit (a full disk), a lock holder that dies."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from pcseg.checkpoint import atomic_save, load_checkpoint
from pcseg.train import RunFolderBusyError, run_folder_lock
from pcseg.utils.atomic import atomic_path, atomic_write, check_output_folder, check_output_path

REPO = Path(__file__).resolve().parents[1]


def python(code: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
        **kwargs,
    )


def checkpoint_dict(value: float, size: int = 1000) -> dict:
    return {"format": 1, "model": {"w": torch.full((size,), value)}, "config": {}, "model_name": "m", "num_classes": 2}


def test_killed_checkpoint_write_leaves_the_previous_one_and_no_temporary(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save(checkpoint_dict(1.0), path)
    # the child writes a first megabyte of the new checkpoint, says so and is killed mid-write
    child = python(f"""
        import sys, time, torch
        import pcseg.checkpoint as checkpoint

        def slow_save(obj, handle):
            handle.write(b"x" * 1_000_000)
            handle.flush()
            print("writing", flush=True)
            time.sleep(120)

        torch.save = slow_save
        checkpoint.atomic_save({{"format": 1}}, {str(path)!r})
    """)
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert float(load_checkpoint(path)["model"]["w"][0]) == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_checkpoint_writes_killed_at_random_leave_a_whole_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    child = python(f"""
        import torch
        from pcseg.checkpoint import atomic_save

        for i in range(1000):
            atomic_save({{"format": 1, "model": {{"w": torch.full((2_000_000,), float(i))}}, "config": {{}},
                         "model_name": "m", "num_classes": 2}}, {str(path)!r})
            print(i, flush=True)
    """)
    for _ in range(3):  # a few whole saves, then a kill at an arbitrary point of the next ones
        child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    saved = load_checkpoint(path)["model"]["w"]
    assert len(saved) == 2_000_000 and float(saved[0]) == float(saved[-1]) >= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_file_size_limit_keeps_the_previous_files(tmp_path):
    """A full disk emulated with RLIMIT_FSIZE (SIGXFSZ ignored, so the write raises EFBIG)."""
    atomic_save(checkpoint_dict(1.0, 2_000_000), tmp_path / "last.pt")
    np.save(tmp_path / "labels.npy", np.arange(10))
    (tmp_path / "cache.bin").write_bytes(b"old")
    child = python(f"""
        import resource, signal
        import numpy as np, torch
        from pcseg.checkpoint import atomic_save
        from pcseg.utils.atomic import atomic_path, atomic_write

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
        folder = {str(tmp_path)!r}
        try:
            atomic_save({{"format": 1, "model": {{"w": torch.zeros(3_000_000)}}}}, folder + "/last.pt")
        except OSError as error:
            print("checkpoint", error.errno)
        try:
            with atomic_path(folder + "/labels.npy") as tmp:
                np.save(tmp, np.zeros(3_000_000))
        except OSError as error:  # numpy's short write carries no errno
            print("npy", type(error).__name__)
        try:
            with atomic_write(folder + "/cache.bin") as handle:
                handle.write(b"y" * 3_000_000)
        except OSError as error:
            print("cache", error.errno)
    """)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert out.split() == ["checkpoint", str(errno.EFBIG), "npy", "OSError", "cache", str(errno.EFBIG)]
    assert len(load_checkpoint(tmp_path / "last.pt")["model"]["w"]) == 2_000_000
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), np.arange(10))
    assert (tmp_path / "cache.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.bin", "labels.npy", "last.pt"]


def test_atomic_path_keeps_the_suffix_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "sub" / "out.ply"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.suffix == ".ply" and tmp.name.startswith(".out.")
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert list(target.parent.iterdir()) == []
    with atomic_write(target) as handle:
        handle.write(b"whole")
    assert target.read_bytes() == b"whole" and [p.name for p in target.parent.iterdir()] == ["out.ply"]


def test_output_checks_name_the_blocking_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match=f"--out {blocker}/a/b.npy: {blocker} is an existing file"):
        check_output_path(blocker / "a" / "b.npy", "--out")
    with pytest.raises(IsADirectoryError, match="is a folder, not a file"):
        check_output_path(tmp_path, "--out")
    with pytest.raises(NotADirectoryError, match="train.out_dir"):
        check_output_folder(blocker, "train.out_dir")
    assert check_output_folder(tmp_path / "new" / "run") == tmp_path / "new" / "run"


def test_run_folder_lock_is_exclusive_and_taken_over_from_a_dead_process(tmp_path):
    run = tmp_path / "run"
    holder = python(f"""
        import time
        from pcseg.train import run_folder_lock

        with run_folder_lock({str(run)!r}):
            print("holding", flush=True)
            time.sleep(120)
    """)
    assert holder.stdout.readline().strip() == "holding"
    with pytest.raises(
        RunFolderBusyError, match=f"run folder {run} .* in use by another pcseg train \\(pid {holder.pid}\\)"
    ):
        with run_folder_lock(run):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    assert (run / ".lock").exists()  # the stale lock file stays; the OS released its lock
    with run_folder_lock(run):
        assert (run / ".lock").read_text().strip() == str(os.getpid())


def test_atomic_write_without_o_tmpfile_uses_a_named_temporary(tmp_path, monkeypatch):
    import pcseg.utils.atomic as atomic

    monkeypatch.setattr(atomic, "_open_unnamed", lambda folder: None)  # a file system without O_TMPFILE
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_write(target) as handle:
            handle.write(b"partial")
            names = [p.name for p in tmp_path.iterdir()]
            assert len(names) == 2 and any(n.startswith(".last.pt.") and n.endswith(".tmp") for n in names)
            raise OSError("disk full")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    with atomic_write(target) as handle:
        handle.write(b"new")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]
