"""Training: exact resume, checkpoints (atomic, weights_only, mismatch errors), logs, schedule, DDP."""
import json
import os
import socket
import time

import pytest
import torch

from pcseg.config import load_config
from pcseg.data import generate_room
from pcseg.train import (CheckpointMismatchError, WarmupCosine, load_checkpoint, model_from_checkpoint,
                         train)

TINY = ["data.points_per_room=3000", "data.num_points=128", "data.blocks_per_room=8", "data.val_blocks_per_room=2",
        "data.block_size=2.0", "data.eval_stride=2.0", "data.neighbours=8", "model.width_multiplier=0.125",
        "train.batch_size=4", "train.epochs=3", "train.lr=0.01", "train.warmup_epochs=1", "train.amp=none"]


def tiny_config(out_dir, *extra):
    return load_config(None, [*TINY, f"train.out_dir={out_dir}", *extra])


@pytest.fixture(scope="module")
def rooms():
    return [generate_room(s, 3000) for s in (0, 1)], [generate_room(100, 3000)]


def test_resume_matches_uninterrupted_run(tmp_path, rooms):
    full = train(tiny_config(tmp_path / "full"), rooms=rooms, progress=False)
    assert full["epochs"] == 3
    first = train(tiny_config(tmp_path / "split"), rooms=rooms, progress=False, stop_after_epochs=1)
    assert first["epochs"] == 1
    resumed = train(tiny_config(tmp_path / "split"), rooms=rooms, progress=False,
                    resume=tmp_path / "split" / "last.pt")
    assert resumed["epochs"] == 3
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["scheduler"] == b["scheduler"]
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_run_folder_contents(tmp_path, rooms):
    summary = train(tiny_config(tmp_path / "run", "train.epochs=2"), rooms=rooms, progress=False)
    run = tmp_path / "run"
    for name in ("config.yaml", "last.pt", "best.pt", "log.jsonl", "log.csv", "curve.png"):
        assert (run / name).is_file(), name
    assert not list(run.glob("*.tmp"))  # atomic writes leave no temporary file
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(0 <= r["val_miou"] <= 1 for r in rows)
    assert (run / "log.csv").read_text().splitlines()[0].startswith("epoch,train_loss")
    assert load_config(run / "config.yaml").train.out_dir == str(run)
    # plain tensors and numbers only: loads with weights_only=True
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["config"]["model"]["name"] == "pointnet_sem_seg"
    assert summary["best_miou"] == max(r["val_miou"] for r in rows)


def test_checkpoint_mismatch_errors(tmp_path, rooms):
    train(tiny_config(tmp_path / "run", "train.epochs=1"), rooms=rooms, progress=False)
    path = tmp_path / "run" / "last.pt"
    with pytest.raises(CheckpointMismatchError, match="trained for 13 classes, the config asks for 20"):
        model_from_checkpoint(path, cfg=tiny_config(tmp_path, "data.num_classes=20"))
    with pytest.raises(CheckpointMismatchError, match="holds model 'pointnet_sem_seg', the config asks for 'acnn'"):
        model_from_checkpoint(path, cfg=tiny_config(tmp_path, "model.name=acnn"))
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a pcseg checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_keyboard_interrupt_saves_and_returns(tmp_path, rooms, monkeypatch):
    import pcseg.train as train_module

    calls = {"n": 0}
    real = train_module.forward_model

    def interrupt_on_third_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "forward_model", interrupt_on_third_step)
    summary = train(tiny_config(tmp_path / "run"), rooms=rooms, progress=False)
    assert summary["interrupted"] and summary["epochs"] == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 0


def test_warmup_cosine_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = WarmupCosine(opt, base_lr=1.0, warmup_steps=4, total_steps=12, min_ratio=0.0)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        schedule.step()
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == 1.0 and lrs[8] == pytest.approx(0.5) and lrs[11] == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(7 / 8 * torch.pi)).item()))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir, overrides):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "RANK": str(rank), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    rooms = ([generate_room(s, 3000) for s in (0, 1)], [generate_room(100, 3000)])
    train(load_config(None, [*TINY, f"train.out_dir={out_dir}", *overrides]), rooms=rooms, progress=False)


def test_ddp_two_processes_match_single_process(tmp_path, rooms):
    """2 gloo processes with batch 4 each follow the single process with batch 8 (same global
    batches: every rank takes its interleaved share of one shared permutation). Batch norm
    statistics are per process (no SyncBatchNorm: pcseg's masked batch norm), so the match is
    close, not exact."""
    common = ["model.options={dropout: 0.0}", "train.epochs=1", "train.optimizer=sgd", "train.lr=0.05",
              "train.warmup_epochs=0", "train.grad_clip=0",
              "data.blocks_per_room=16", "data.augment_rotate=false"]
    single = tiny_config(tmp_path / "single", *common, "train.batch_size=8")
    train(single, rooms=rooms, progress=False)
    context = torch.multiprocessing.start_processes(
        _ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp"), [*common, "train.batch_size=4"]), nprocs=2,
        join=False, start_method="spawn")
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("DDP workers did not finish in 120 s")
    a = load_checkpoint(tmp_path / "single" / "last.pt")
    b = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert a["scheduler"]["step_count"] == b["scheduler"]["step_count"] == 4  # 32 blocks / global batch 8
    # the initial weights: same seed, same construction
    torch.manual_seed(single.train.seed)
    from pcseg.train import build_model_from_config
    initial = build_model_from_config(single).state_dict()
    moved, differ = 0.0, 0.0
    for key, w in a["model"].items():
        # the classifier head sits after the global feature: per-process batch-norm statistics
        # of the early layers perturb it least, so its update must agree closely
        if key.startswith("head.convs") and key.endswith("weight"):
            moved += float((w - initial[key]).pow(2).sum())
            differ += float((w - b["model"][key]).pow(2).sum())
    assert moved > 0
    assert differ ** 0.5 < 0.5 * moved ** 0.5, (differ ** 0.5, moved ** 0.5)
    # the all-reduced epoch loss and validation scores agree
    assert abs(a["history"][0]["train_loss"] - b["history"][0]["train_loss"]) < 0.01 * a["history"][0]["train_loss"]
    assert abs(a["history"][0]["val_miou"] - b["history"][0]["val_miou"]) < 0.02
