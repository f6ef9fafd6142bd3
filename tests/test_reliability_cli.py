"""Issue #12, points 4 and 5 through the real CLI: every expected failure is one line on stderr
naming the culprit and a non-zero exit, found before any room is generated or the run folder
is created; ``--debug`` / ``PCSEG_DEBUG=1`` add the traceback; checkpoints that cannot be
loaded say why and never advise ``weights_only=False``; ``predict --out`` is atomic."""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pcseg.data.loading as loading
from pcseg.cli import main
from pcseg.train import run_folder_lock

REPO = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()


def sets(*items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture
def no_rooms(monkeypatch):
    """Fails the test if any room is generated: errors must come before the work."""

    def must_not_generate(*args, **kwargs):
        raise AssertionError("a room was generated before the error")

    monkeypatch.setattr(loading, "generate_room", must_not_generate)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: pointnet_sem_seg\n")
    return path


def one_error_line(capsys, command: str) -> str:
    """The error line, which must end stderr; lines before it may only be progress reports."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith(f"pcseg {command}: error: "), err
    assert all(re.search(r": \d+(/\d+)? \w+ (done|running) in ", line) for line in lines[:-1]), err
    assert "Traceback" not in err and "weights_only=False" not in err
    return lines[-1]


def truncated_copy(checkpoint: Path, tmp_path: Path) -> Path:
    data = checkpoint.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def damaged_checkpoints(checkpoint: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words the error must contain)."""
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    tampered = tmp_path / "tampered.pt"
    torch.save({"format": 1, "model": argparse.Namespace(payload="not a tensor")}, tampered)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    return {
        "empty": (empty, "the file is empty"),
        "truncated": (truncated_copy(checkpoint, tmp_path), "truncated or not a torch checkpoint"),
        "random": (noise, "truncated or not a torch checkpoint"),
        "tampered": (tampered, "Python objects other than tensors"),
        "foreign": (foreign, "is not a pcseg checkpoint"),
    }


# ----------------------------------------------------------------------------- train: config and set-up
TRAIN_CASES = [
    (["train.val_every=0"], "train.val_every must be >= 1, got 0"),
    (["train.checkpoint_every=0"], "train.checkpoint_every must be >= 1, got 0"),
    (["train.epochs=.inf"], "train.epochs: expected an integer, got inf"),
    (["train.lr=-0.1"], "train.lr must be > 0, got -0.1"),
    (["train.lr=.nan"], "train.lr: expected a finite number"),
    (["train.device=tpu7"], "train.device must be cpu, cuda or cuda:N, got 'tpu7'"),
    (["data.num_classes=2"], "data.num_classes is 2 but the synthetic labels have 13 classes"),
    (["data.train_rooms=0"], "data.train_rooms must be >= 1, got 0"),
    (["data.points_per_room=0"], "data.points_per_room must be >= 1, got 0"),
    (["train.lr=[1,"], "override 'train.lr=[1,' is not valid YAML"),
    (["train.momentum=1.5"], "train.momentum must be in [0, 1)"),
    (["data.dataset=s3dis", "data.root=/nonexistent/s3dis"], "S3DIS cache folder not found: /nonexistent/s3dis"),
]


@pytest.mark.parametrize("overrides, words", TRAIN_CASES, ids=[c[0][0] for c in TRAIN_CASES])
def test_train_config_errors_come_first_as_one_line(overrides, words, config, tmp_path, capsys, no_rooms):
    out = tmp_path / "run"
    code = main(["train", "--config", str(config), *sets(*overrides, f"train.out_dir={out}")])
    assert code == 2
    assert words in one_error_line(capsys, "train")
    assert not out.exists()  # the run folder is not created for a run that cannot start


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without CUDA")
def test_train_on_cuda_without_cuda(config, tmp_path, capsys, no_rooms):
    code = main(["train", "--config", str(config), *sets("train.device=cuda", f"train.out_dir={tmp_path / 'run'}")])
    assert code == 2
    assert "train.device is 'cuda' but CUDA is not available" in one_error_line(capsys, "train")
    assert not (tmp_path / "run").exists()


def test_invalid_yaml_file_names_it_and_the_line(tmp_path, capsys, no_rooms):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  lr: [0.1\n")
    assert main(["train", "--config", str(path)]) == 2
    line = one_error_line(capsys, "train")
    assert f"{path}: not valid YAML" in line and "line 3" in line


def test_out_dir_under_a_file(config, tmp_path, capsys, no_rooms):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "--config", str(config), *sets(f"train.out_dir={blocker / 'run'}")]) == 2
    line = one_error_line(capsys, "train")
    assert "train.out_dir" in line and f"{blocker} is an existing file" in line
    assert blocker.read_text() == "x"


def test_resume_of_a_missing_checkpoint(config, tmp_path, capsys, no_rooms):
    missing = tmp_path / "nope.pt"
    assert (
        main(["train", "--config", str(config), "--resume", str(missing), *sets(f"train.out_dir={tmp_path / 'run'}")])
        == 2
    )
    assert f"checkpoint not found: {missing}" in one_error_line(capsys, "train")
    assert not (tmp_path / "run").exists()


def test_resume_of_another_model(config, checkpoint, tmp_path, capsys, no_rooms):
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--resume",
                str(checkpoint),
                *sets("model.name=acnn", f"train.out_dir={tmp_path / 'run'}"),
            ]
        )
        == 2
    )
    line = one_error_line(capsys, "train")
    assert f"checkpoint {checkpoint} holds model 'pointnet_sem_seg', the config asks for 'acnn'" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", ["empty", "truncated", "random", "tampered", "foreign"])
def test_resume_of_a_damaged_checkpoint(case, config, checkpoint, tmp_path, capsys, no_rooms):
    path, words = damaged_checkpoints(checkpoint, tmp_path)[case]
    assert (
        main(["train", "--config", str(config), "--resume", str(path), *sets(f"train.out_dir={tmp_path / 'run'}")]) == 2
    )
    line = one_error_line(capsys, "train")
    assert str(path) in line and words in line
    assert not (tmp_path / "run").exists()


def test_empty_semantic_kitti_yaml(config, tmp_path, capsys, no_rooms):
    label_config = tmp_path / "semantic-kitti.yaml"
    label_config.write_text("")
    overrides = [
        "data.dataset=semantickitti",
        f"data.root={tmp_path}",
        f"data.label_config={label_config}",
        f"train.out_dir={tmp_path / 'run'}",
    ]
    assert main(["train", "--config", str(config), *sets(*overrides)]) == 2
    assert f"{label_config}: the SemanticKITTI config is empty" in one_error_line(capsys, "train")
    assert not (tmp_path / "run").exists()


def test_a_busy_run_folder_is_refused_at_start(config, tmp_path, capsys, no_rooms):
    out = tmp_path / "run"
    with run_folder_lock(out):  # another run holds it (flock conflicts across open files)
        assert main(["train", "--config", str(config), *sets(f"train.out_dir={out}")]) == 2
    line = one_error_line(capsys, "train")
    assert f"run folder {out} (train.out_dir) is in use by another pcseg train (pid {os.getpid()})" in line
    assert not (out / "config.yaml").exists()


def test_debug_flag_and_environment_show_the_traceback(config, tmp_path, capsys, monkeypatch, no_rooms):
    args = ["train", "--config", str(config), *sets("train.val_every=0", f"train.out_dir={tmp_path / 'r'}")]
    for argv in (["--debug", *args], [*args, "--debug"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert "Traceback" in err and last == f"pcseg train: error: {config}: train.val_every must be >= 1, got 0"
    monkeypatch.setenv("PCSEG_DEBUG", "1")
    assert main(args) == 2
    assert "Traceback" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_with_a_hint(config, tmp_path, capsys, monkeypatch):
    import pcseg.train

    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(pcseg.train, "_train", bug)
    assert main(["train", "--config", str(config), *sets(f"train.out_dir={tmp_path / 'run'}")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "pcseg train: internal error: ZeroDivisionError: division by zero "
        "(run with --debug or PCSEG_DEBUG=1 for the traceback)"
    ]


# ----------------------------------------------------------------------------- predict and eval
@pytest.fixture
def cloud(tmp_path):
    path = tmp_path / "cloud.npy"
    rng = np.random.default_rng(0)
    np.save(path, np.concatenate([rng.uniform(0, 2, (300, 3)), rng.uniform(0, 1, (300, 3))], 1).astype(np.float32))
    return path


@pytest.mark.parametrize("case", ["empty", "truncated", "random", "tampered", "foreign"])
def test_predict_with_a_damaged_checkpoint(case, checkpoint, cloud, tmp_path, capsys):
    path, words = damaged_checkpoints(checkpoint, tmp_path)[case]
    out = tmp_path / "labels.npy"
    assert main(["predict", str(cloud), "--checkpoint", str(path), "--out", str(out)]) == 2
    line = one_error_line(capsys, "predict")
    assert str(path) in line and words in line
    assert not out.exists() and not list(tmp_path.glob(".labels.*"))


def test_predict_checks_its_arguments_before_segmenting(checkpoint, cloud, tmp_path, capsys, monkeypatch):
    import pcseg.predict

    def must_not_segment(*args, **kwargs):
        raise AssertionError("segmented before the error")

    monkeypatch.setattr(pcseg.predict, "segment_cloud", must_not_segment)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (["--out", str(blocker / "labels.npy")], f"--out {blocker / 'labels.npy'}: {blocker} is an existing file"),
        (["--out", str(tmp_path / "labels.xyz")], "--out must end in one of .ply .pcd .las .laz .label .npy"),
        (["--out", str(tmp_path / "o.npy"), "--device", "tpu7"], "--device must be cpu, cuda or cuda:N"),
        (["--out", str(tmp_path / "o.npy"), "--checkpoint", str(tmp_path / "none.pt")], "checkpoint not found"),
    ]
    if not HAS_CUDA:
        cases.append((["--out", str(tmp_path / "o.npy"), "--device", "cuda"], "--device is 'cuda' but CUDA is not"))
    for extra, words in cases:
        argv = ["predict", str(cloud), "--checkpoint", str(checkpoint), *extra]
        if "--checkpoint" in extra:
            argv = ["predict", str(cloud), *extra]
        assert main(argv) == 2, extra
        assert words in one_error_line(capsys, "predict"), extra
    assert (
        main(
            [
                "predict",
                str(tmp_path / "missing.npy"),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "o.npy"),
            ]
        )
        == 2
    )
    assert f"input point cloud not found: {tmp_path / 'missing.npy'}" in one_error_line(capsys, "predict")


def test_predict_out_is_atomic(checkpoint, cloud, tmp_path, capsys, monkeypatch):
    import pcseg.predict

    out = tmp_path / "labels.npy"
    assert main(["predict", str(cloud), "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    assert f"wrote {out}: 300 points" in capsys.readouterr().out
    labels = np.load(out)
    assert labels.shape == (300,) and sorted(p.name for p in tmp_path.iterdir()) == ["cloud.npy", "labels.npy"]

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pcseg.predict.np, "save", disk_full)
    assert main(["predict", str(cloud), "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "No space left on device" in one_error_line(capsys, "predict")
    np.testing.assert_array_equal(np.load(out), labels)  # the earlier result is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cloud.npy", "labels.npy"]  # no temporary left


def test_eval_checks_before_reading_rooms(config, checkpoint, tmp_path, capsys, no_rooms):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    base = ["eval", "--config", str(config), "--checkpoint", str(checkpoint)]
    assert main([*base, "--out", str(blocker / "metrics")]) == 2
    assert f"{blocker} is an existing file" in one_error_line(capsys, "eval")
    assert main([*base, "--device", "tpu7"]) == 2
    assert "--device must be cpu, cuda or cuda:N" in one_error_line(capsys, "eval")
    assert main([*base, *sets("data.num_classes=20")]) == 2
    assert "trained for 13 classes, the config asks for 20" in one_error_line(capsys, "eval")
    path = truncated_copy(checkpoint, tmp_path)
    assert main(["eval", "--config", str(config), "--checkpoint", str(path)]) == 2
    assert "truncated or not a torch checkpoint" in one_error_line(capsys, "eval")


def test_prepare_out_dir_under_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    (tmp_path / "raw").mkdir()
    assert main(["prepare", "s3dis", str(tmp_path / "raw"), str(blocker / "cache")]) == 2
    assert f"OUT_DIR {blocker / 'cache'}: {blocker} is an existing file" in one_error_line(capsys, "prepare")


@pytest.mark.parametrize(
    "out, words",
    [
        ("map.xyz", "--out must end in .ply or .npz, got"),
        ("file/map.ply", "is an existing file, not a folder"),
    ],
)
def test_fuse_checks_its_output_before_reading_frames(out, words, tmp_path, capsys, monkeypatch):
    import pcseg.fuse_folder

    def must_not_fuse(*args, **kwargs):
        raise AssertionError("frames were read before the error")

    monkeypatch.setattr(pcseg.fuse_folder, "fuser_from_folder", must_not_fuse)
    (tmp_path / "file").write_text("x")
    (tmp_path / "frames").mkdir()
    assert main(["fuse", str(tmp_path / "frames"), "--out", str(tmp_path / out)]) == 2
    assert words in one_error_line(capsys, "fuse")
    assert main(["fuse", str(tmp_path / "none"), "--out", str(tmp_path / "map.ply")]) == 2
    assert f"input folder not found: {tmp_path / 'none'}" in one_error_line(capsys, "fuse")


# ----------------------------------------------------------------------------- as a real process
def run_pcseg(*args, env=None):
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pcseg", *args], capture_output=True, text=True, timeout=300, env=environment, cwd=REPO
    )


def test_subprocess_errors_are_one_line(checkpoint, cloud, tmp_path):
    truncated = truncated_copy(checkpoint, tmp_path)
    result = run_pcseg("predict", str(cloud), "--checkpoint", str(truncated), "--out", str(tmp_path / "o.npy"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"pcseg predict: error: cannot load checkpoint {truncated}: the file is truncated or not a torch "
        f"checkpoint ({truncated.stat().st_size:,} bytes without the zip directory that ends every torch.save file)"
    ]
    result = run_pcseg(
        "train",
        "--set",
        "train.checkpoint_every=0",
        "--set",
        f"train.out_dir={tmp_path / 'run'}",
        "--config",
        str(REPO / "configs" / "pointnet_synthetic.yaml"),
        env={"PCSEG_DEBUG": "1"},
    )
    assert result.returncode == 2 and "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("train.checkpoint_every must be >= 1, got 0")
    assert not (tmp_path / "run").exists()
