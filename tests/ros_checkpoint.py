"""A tiny checkpoint for the ROS tests, trained in seconds (the config of tests/test_pipeline_api.py,
kept here so the ROS tests do not import another test module)."""
from pathlib import Path

TINY = ["data.points_per_room=3000", "data.num_points=128", "data.blocks_per_room=8", "data.val_blocks_per_room=2",
        "data.block_size=2.0", "data.eval_stride=2.0", "data.neighbours=8", "model.width_multiplier=0.125",
        "train.batch_size=4", "train.epochs=1", "train.amp=none"]


def train_tiny_checkpoint(out: Path) -> Path:
    """Train one epoch on two procedural rooms into `out`; returns best.pt (13 S3DIS classes)."""
    from pcseg.config import load_config
    from pcseg.data import generate_room
    from pcseg.train import train

    rooms = ([generate_room(0, 3000)], [generate_room(100, 3000)])
    train(load_config(None, [*TINY, f"train.out_dir={out}"]), rooms=rooms, progress=False)
    return out / "best.pt"
