"""Training: exact resume, checkpoints (atomic, weights_only, mismatch errors), logs, schedule, DDP."""

import json
import os
import socket
import time

import pytest
import torch

from pcseg.checkpoint import CheckpointMismatchError, load_checkpoint, model_from_checkpoint
from pcseg.config import load_config
from pcseg.data import generate_room
from pcseg.testing import TINY_TRAINING
from pcseg.train import WarmupCosine, train

TINY = [*TINY_TRAINING, "train.epochs=3", "train.lr=0.01", "train.warmup_epochs=1"]


def tiny_config(out_dir, *extra):
    return load_config(None, [*TINY, f"train.out_dir={out_dir}", *extra])


@pytest.fixture(scope="module")
def rooms():
    return [generate_room(s, 3000) for s in (0, 1)], [generate_room(100, 3000)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, rooms):
    """The last checkpoint of a 3-epoch run straight through (dropout and rotation on)."""
    out = tmp_path_factory.mktemp("full")
    assert train(tiny_config(out), rooms=rooms, progress=False)["epochs"] == 3
    return load_checkpoint(out / "last.pt")


def assert_same_run(a, b):
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["scheduler"] == b["scheduler"]
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert [r["val_miou"] for r in a["history"]] == [r["val_miou"] for r in b["history"]]


def test_resume_matches_uninterrupted_run(tmp_path, rooms, uninterrupted):
    first = train(tiny_config(tmp_path / "split"), rooms=rooms, progress=False, stop_after_epochs=1)
    assert first["epochs"] == 1
    resumed = train(tiny_config(tmp_path / "split"), rooms=rooms, progress=False, resume=tmp_path / "split" / "last.pt")
    assert resumed["epochs"] == 3
    assert_same_run(uninterrupted, load_checkpoint(tmp_path / "split" / "last.pt"))


@pytest.mark.parametrize("where", ["step", "validation"])
def test_resume_after_ctrl_c_mid_epoch_matches_uninterrupted_run(tmp_path, rooms, uninterrupted, monkeypatch, where):
    """Ctrl-C inside epoch 2 (at its second step, or during its validation) and --resume give
    the uninterrupted run bit for bit: the epoch's block order and rotations are redrawn from
    the generator state of its start, the steps already done are skipped, the dropout RNG and
    the epoch's running loss sums continue from the last finished step."""
    import pcseg.train as train_module

    calls = {True: 0, False: 0}  # forward calls by model.training
    real = train_module.forward_model

    def interrupt_in_epoch_2(model, *args, **kwargs):
        calls[model.training] += 1
        # 4 steps an epoch: training call 6 is epoch 2's second step, eval call 2 its validation
        if (where == "step" and calls[True] == 6) or (where == "validation" and calls[False] == 2):
            raise KeyboardInterrupt
        return real(model, *args, **kwargs)

    monkeypatch.setattr(train_module, "forward_model", interrupt_in_epoch_2)
    split = tmp_path / "split"
    summary = train(tiny_config(split), rooms=rooms, progress=False)
    monkeypatch.setattr(train_module, "forward_model", real)
    assert summary["interrupted"] and summary["epochs"] == 1
    saved = load_checkpoint(split / "last.pt")
    assert (saved["epoch"], saved["step"]) == (1, 1 if where == "step" else 4)
    assert saved["scheduler"]["step_count"] == 4 + saved["step"]
    resumed = train(tiny_config(split), rooms=rooms, progress=False, resume=split / "last.pt")
    assert resumed["epochs"] == 3 and not resumed["interrupted"]
    assert_same_run(uninterrupted, load_checkpoint(split / "last.pt"))


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


def test_ctrl_c_during_an_update_is_held_until_it_ends():
    """A real SIGINT inside the deferred block (the optimiser step and its counters) raises only
    once the block has finished, so a checkpoint never holds half a step."""
    import signal

    from pcseg.train import _sigint_deferred

    # Python's own handler, whatever this process inherited: a runner that starts the suite in
    # the background (`cmd &` in a script) hands it SIGINT ignored, and then Ctrl-C is ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        done = []
        with pytest.raises(KeyboardInterrupt):
            with _sigint_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.01)  # the signal is delivered here, inside the block
                done.append("rest of the step")
        assert done == ["rest of the step"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

        # an ignored SIGINT stays ignored: the block neither raises nor changes the disposition
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with _sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_progress_bars_for_loading_and_cutting(tmp_path, capsys):
    """Generating the rooms, cutting the training and validation blocks and the epochs report
    progress (S3DIS and KITTI are read while their blocks are cut)."""
    train(tiny_config(tmp_path / "run", "data.train_rooms=1", "data.val_rooms=1", "train.epochs=1"), progress=True)
    err = capsys.readouterr().err
    for desc in ("generating train rooms", "generating val rooms", "cutting blocks", "cutting validation blocks"):
        assert desc in err, desc
    # without a terminal (captured here, a log file in CI) each epoch reports one plain line
    assert len([line for line in err.splitlines() if line.startswith("epoch 1/1:")]) == 1


def test_warmup_cosine_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = WarmupCosine(opt, base_lr=1.0, warmup_steps=4, total_steps=12, min_ratio=0.0)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        schedule.step()
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert (
        lrs[4] == 1.0
        and lrs[8] == pytest.approx(0.5)
        and lrs[11] == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(7 / 8 * torch.pi)).item()))
    )
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir, overrides):
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(world),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
        }
    )
    torch.set_num_threads(1)
    rooms = ([generate_room(s, 3000) for s in (0, 1)], [generate_room(100, 3000)])
    # every rank but 0 gets its own out_dir: the test checks that nothing creates it
    run_dir = out_dir if rank == 0 else f"{out_dir}_rank{rank}"
    train(load_config(None, [*TINY, f"train.out_dir={run_dir}", *overrides]), rooms=rooms, progress=False)


def test_ddp_two_processes_match_single_process(tmp_path, rooms):
    """2 gloo processes with batch 4 each follow 1 process with batch 8, the global batch: each
    global batch holds the same blocks (and rotations), batch-norm statistics (masked and
    fully connected) are synchronised over the processes and the class-weighted loss is
    normalised by the whole global batch, so every parameter and buffer agrees to float
    rounding. Only rank 0 writes. Dropout is off: its masks are drawn per process."""
    common = [
        "model.options={dropout: 0.0}",
        "train.epochs=1",
        "train.optimizer=sgd",
        "train.lr=0.05",
        "train.warmup_epochs=0",
        "data.blocks_per_room=16",
    ]
    single = tiny_config(tmp_path / "single", *common, "train.batch_size=8")
    train(single, rooms=rooms, progress=False)
    context = torch.multiprocessing.start_processes(
        _ddp_worker,
        args=(2, _free_port(), str(tmp_path / "ddp"), [*common, "train.batch_size=4"]),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("DDP workers did not finish in 120 s")
    assert not (tmp_path / "ddp_rank1").exists()  # rank 1 created no run folder and wrote nothing
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(
        p.name for p in (tmp_path / "single").iterdir()
    )
    a = load_checkpoint(tmp_path / "single" / "last.pt")
    b = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert a["scheduler"]["step_count"] == b["scheduler"]["step_count"] == 4  # 32 blocks / global batch 8
    torch.manual_seed(single.train.seed)
    from pcseg.checkpoint import build_model_from_config

    initial = build_model_from_config(single).state_dict()
    assert a["model"].keys() == b["model"].keys()
    for key, w in a["model"].items():
        if w.is_floating_point():
            assert not torch.equal(w, initial[key]), key  # every weight and statistic was trained
            # float32 rounding after 4 SGD steps at lr 0.05 reaches ~1e-5 in the first layers:
            # the same maths in two memory layouts, in one process, already differs by 1.1e-5
            torch.testing.assert_close(b["model"][key], w, rtol=1e-5, atol=5e-5, msg=key)
        else:
            assert torch.equal(b["model"][key], w), key  # num_batches_tracked
    # the all-reduced epoch loss and validation scores agree
    assert a["history"][0]["train_loss"] == pytest.approx(b["history"][0]["train_loss"], rel=1e-5)
    assert a["history"][0]["val_miou"] == pytest.approx(b["history"][0]["val_miou"], abs=1e-6)


def test_class_balanced_block_centres_reach_the_pool(rooms):
    """data.block_centres=class_balanced cuts more blocks around the rooms' rare classes."""
    from pcseg.train import build_block_pool

    train_rooms, _ = rooms
    counts = {}
    for centres in ("random", "class_balanced"):
        # small blocks, so that a block holds little beyond its centre's object
        cfg = load_config(None, [*TINY, f"data.block_centres={centres}", "data.block_size=0.5"])
        pool = build_block_pool(train_rooms, cfg.data, 64, seed=0)
        counts[centres] = torch.bincount(pool.label.flatten(), minlength=13).double()
    rarest = int(torch.argmin(torch.where(counts["random"] > 0, counts["random"], float("inf"))))
    commonest = int(torch.argmax(counts["random"]))
    share = {name: count / count.sum() for name, count in counts.items()}
    assert share["class_balanced"][rarest] > 2 * share["random"][rarest]
    assert share["class_balanced"][commonest] < share["random"][commonest]


def test_training_loss_is_the_sum_of_the_configured_terms():
    from pcseg.losses import cross_entropy_loss, lovasz_softmax_loss, tversky_loss
    from pcseg.train import _batch_loss

    torch.manual_seed(0)
    logits, label = torch.randn(2, 5, 30), torch.randint(-1, 5, (2, 30))
    weight = torch.rand(5) + 0.5
    cfg = load_config(None, ["data.num_classes=5", "data.ignore_index=-1", "train.loss=cross_entropy+lovasz"])
    expected = cross_entropy_loss(logits, label, weight=weight, ignore_index=-1) + lovasz_softmax_loss(
        logits, label, weight=weight, ignore_index=-1
    )
    torch.testing.assert_close(_batch_loss(logits, label, weight, cfg, world=1), expected)
    cfg = load_config(None, ["data.num_classes=5", "data.ignore_index=-1", "train.loss=tversky"])
    torch.testing.assert_close(
        _batch_loss(logits, label, None, cfg, world=1), tversky_loss(logits, label, ignore_index=-1)
    )


def test_trains_with_a_set_loss(tmp_path, rooms):
    summary = train(tiny_config(tmp_path / "run", "train.loss=cross_entropy+lovasz"), rooms=rooms, progress=False)
    assert 0 <= summary["best_miou"] <= 1


def test_label_transition_is_read_checked_and_corrects_the_loss(tmp_path, rooms):
    """``train.label_transition``: a 2D network's confusion matrix (.npy or text, counts or rows
    normalised); the training loss is then the forward-corrected cross-entropy."""
    import numpy as np

    from pcseg.config import ConfigError
    from pcseg.losses import label_transition_from_confusion, noisy_label_cross_entropy_loss
    from pcseg.train import _batch_loss, check_training, load_label_transition

    counts = np.eye(13) * 80 + 1.0
    counts[11, 2] = 60  # boards called walls
    np.save(tmp_path / "confusion.npy", counts)
    np.savetxt(tmp_path / "confusion.csv", counts, delimiter=",")
    expected = label_transition_from_confusion(counts)
    for name in ("confusion.npy", "confusion.csv"):
        torch.testing.assert_close(load_label_transition(tmp_path / name, 13), expected)
    with pytest.raises(ValueError, match=r"confusion.csv: must be a \(5, 5\) matrix"):
        load_label_transition(tmp_path / "confusion.csv", 5)
    (tmp_path / "bad.txt").write_text("1 2\nthree 4\n")
    with pytest.raises(ValueError, match="train.label_transition: .*bad.txt"):
        load_label_transition(tmp_path / "bad.txt", 2)
    with pytest.raises(FileNotFoundError, match="train.label_transition: .*missing.npy"):
        check_training(tiny_config(tmp_path / "r0", f"train.label_transition={tmp_path / 'missing.npy'}"), None, False)
    with pytest.raises(ConfigError, match="label_transition corrects the cross-entropy only"):
        tiny_config(tmp_path / "r1", f"train.label_transition={tmp_path / 'confusion.npy'}", "train.loss=lovasz")

    torch.manual_seed(0)
    logits, label = torch.randn(2, 13, 30), torch.randint(-1, 13, (2, 30))
    cfg = tiny_config(tmp_path / "r2", f"train.label_transition={tmp_path / 'confusion.npy'}", "data.ignore_index=-1")
    torch.testing.assert_close(
        _batch_loss(logits, label, None, cfg, world=1, transition=expected),
        noisy_label_cross_entropy_loss(logits, label, expected, ignore_index=cfg.data.ignore_index),
    )
    summary = train(cfg, rooms=rooms, progress=False)
    assert summary["epochs"] == 3 and 0 <= summary["best_miou"] <= 1


def test_semantickitti_scans_are_read_lazily_with_a_stride(tmp_path, shared_data, monkeypatch):
    """Scans are read one at a time when used (a data set larger than memory), every
    scan_stride-th of the split."""
    import yaml

    from pcseg.data import kitti
    from pcseg.data.loading import LazyRooms, load_rooms

    source = shared_data / "semantickitti"
    for name in ("000000", "000001", "000002", "000003", "000004"):
        for folder, suffix in (("velodyne", ".bin"), ("labels", ".label")):
            (tmp_path / "sequences" / "00" / folder).mkdir(parents=True, exist_ok=True)
            (tmp_path / "sequences" / "00" / folder / f"{name}{suffix}").symlink_to(source / f"000000{suffix}")
    labels = yaml.safe_load((source / "semantic-kitti.yaml").read_text())
    labels["split"] = {"train": [0], "valid": [0], "test": [0]}
    (tmp_path / "semantic-kitti.yaml").write_text(yaml.safe_dump(labels))
    cfg = load_config(
        None,
        [
            "data.dataset=semantickitti",
            f"data.root={tmp_path}",
            "data.num_classes=20",
            f"data.label_config={tmp_path / 'semantic-kitti.yaml'}",
            "data.scan_stride=2",
        ],
    )
    read = []
    real_read = kitti.read_semantickitti_scan
    monkeypatch.setattr(
        kitti,
        "read_semantickitti_scan",
        lambda scan, label, *a, **k: read.append(scan.name) or real_read(scan, label, *a, **k),
    )
    rooms = load_rooms(cfg.data, "train")
    assert isinstance(rooms, LazyRooms) and len(rooms) == 3 and read == []
    scan = rooms[1]
    assert read == ["000002.bin"]
    assert scan["coord"].shape == (124_668, 3) and scan["color"].shape == (124_668, 3)
    assert scan["label"].shape == (124_668,) and scan["label"].max() < 20
    with pytest.raises(IndexError, match="room index 3 is outside 0..2"):
        rooms[3]
    with pytest.raises(ValueError, match="scan_stride must be >= 1"):
        load_config(None, ["data.scan_stride=0"])


@pytest.mark.parametrize("name", ["pointnet", "pointnet_sem_seg", "acnn"])
def test_every_segmentation_model_takes_the_trainers_one_forward(name):
    """The trainer calls every model alike (pcseg.train.forward_model): logits (B, C, P) and the
    auxiliary loss from aux["loss"], PointNet's weighted feature-transform regulariser or 0."""
    from pcseg.checkpoint import build_model_from_config
    from pcseg.inputs import input_channels
    from pcseg.losses import feature_transform_regularizer
    from pcseg.models import FEATURE_TRANSFORM_WEIGHT
    from pcseg.train import forward_model

    cfg = load_config(
        None,
        [
            *TINY,
            f"model.name={name}",
            "data.geometric_features=true",
            "data.num_points=64",
            f"model.block_preset={name == 'acnn'}",
        ],
    )
    torch.manual_seed(0)
    model = build_model_from_config(cfg).eval()
    if name == "pointnet":  # move the feature T-Net off the identity it starts at (regulariser 0)
        torch.nn.init.normal_(model.encoder.feature_tnet.out.weight, std=0.01)
    points = torch.rand(2, 64, 3)
    features = torch.rand(2, 64, input_channels(cfg.data))
    with torch.no_grad():
        logits, aux_loss = forward_model(model, points, features, cfg.data)
        _, aux = model(points, features, return_aux=True)
    assert logits.shape == (2, 13, 64) and aux_loss.shape == ()
    if name == "pointnet":
        expected = FEATURE_TRANSFORM_WEIGHT * feature_transform_regularizer(aux["feature_transform"])
        torch.testing.assert_close(aux_loss, expected)
        assert aux_loss > 0
    else:
        assert aux_loss == 0
