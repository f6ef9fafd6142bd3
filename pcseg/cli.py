"""The ``pcseg`` command (also ``python -m pcseg``).

    pcseg demo [--out demo_out] [--model pointnet|acnn]  the whole job on procedural rooms
    pcseg train --config C [--set k=v ...] [--resume K]  (torchrun --nproc_per_node=N -m pcseg train ...)
    pcseg eval --config C --checkpoint K [--out DIR]
    pcseg s3dis-protocol --config C --protocol 6fold|area5 [--out DIR]   (pcseg.protocols)
    pcseg predict INPUT --checkpoint K --out OUT.ply
    pcseg fuse FOLDER --out MAP.ply
    pcseg predict --bag IN --topic /points ... / pcseg fuse --bag IN ... / pcseg ros ...  (pcseg.ros.cli)
    pcseg prepare s3dis RAW_DIR OUT_DIR
    pcseg view FILE [--color-by label|file]              a (labelled) cloud in Open3D's viewer
    pcseg --version
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from pcseg import __version__

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pcseg", description="3D point-cloud semantic segmentation")
    parser.add_argument("--version", action="version", version=f"pcseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_set(p):
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config value, e.g. --set train.lr=0.01 (repeatable)")

    p = sub.add_parser("demo", help="generate rooms, train, evaluate, segment, fuse (a few minutes on a CPU)")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-bridge", action="store_true", help="skip the 2D-3D fusion part")
    p.add_argument("--model", choices=("pointnet", "acnn"), default="pointnet",
                   help="the model trained (default pointnet; acnn: A-CNN with the authors' decoder)")
    add_set(p)

    p = sub.add_parser("train", help="train a model from a config")
    p.add_argument("--config", required=True, help="YAML config (configs/*.yaml)")
    p.add_argument("--resume", default=None, help="continue from this last.pt")
    add_set(p)

    p = sub.add_parser("eval", help="whole-room evaluation of a checkpoint on the config's validation rooms")
    p.add_argument("--config", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", default=None, help="folder for metrics.json and confusion_matrix.png")
    p.add_argument("--device", default="cpu")
    add_set(p)

    p = sub.add_parser("s3dis-protocol", help="S3DIS 6-fold cross-validation or Area 5: train, test, merged scores")
    p.add_argument("--config", required=True, help="an S3DIS config (configs/*_s3dis.yaml)")
    p.add_argument("--protocol", choices=("6fold", "area5"), default="6fold")
    p.add_argument("--out", default=None, help="folder for the runs and protocol.json (default train.out_dir)")
    p.add_argument("--device", default="cpu", help="where the evaluation runs")
    add_set(p)

    p = predict = sub.add_parser("predict", help="segment a point cloud file (.ply .pcd .npy .bin .txt .mat)")
    p.add_argument("input", nargs="?")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="output .ply (coloured, with a label property) or .npy (labels)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-tile-points", type=int, default=300_000,
                   help="points per tile predicted at once; bounds memory (default 300000)")

    p = sub.add_parser("fuse", help="fuse a folder of RGB-D / LiDAR+camera frames and 2D segmentations into a map")
    p.add_argument("input", nargs="?", help="folder with frames.json (see pcseg.fuse_folder)")
    p.add_argument("--out", required=True, help="output map (.ply or .npz)")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--voxel-size", type=float, default=None)
    p.add_argument("--mode", default=None, help="fusion mode (see pcseg.Fuser)")
    from pcseg.ros.cli import add_bag_arguments, add_ros_parser

    add_bag_arguments(predict, p)
    add_ros_parser(sub)

    p = sub.add_parser("prepare", help="convert a raw data set into pcseg's cache")
    prepare = p.add_subparsers(dest="dataset", required=True)
    s3dis = prepare.add_parser("s3dis", help="Stanford3dDataset_v1.2_Aligned_Version -> Area_k/<room>.npz")
    s3dis.add_argument("raw_dir")
    s3dis.add_argument("out_dir")
    s3dis.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("view", help="open a point cloud file in Open3D's viewer (coloured by label when labelled)")
    p.add_argument("input", help="any file pcseg reads (.ply .pcd .las .laz .e57 .bin .npy .npz .txt .mat)")
    p.add_argument("--input-format", default=None, help="the format when the suffix is ambiguous (e.g. nuscenes)")
    p.add_argument("--color-by", choices=("label", "file"), default="label",
                   help="colour a labelled cloud by label (default) or show the file's own colours")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as error:
        # bad input (config key, file, checkpoint): one clear line instead of a traceback
        print(f"pcseg {args.command}: error: {error}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command in ("predict", "fuse") and (args.bag or args.input is None):
        from pcseg.ros.cli import run_bag

        return run_bag(args)
    if args.command == "ros":
        from pcseg.ros.cli import run_ros

        return run_ros(args)
    if args.command == "demo":
        from pcseg.demo.rooms import run_demo

        run_demo(args.out, args.overrides, seed=args.seed, bridge=not args.no_bridge, model=args.model)
        return 0
    if args.command == "train":
        from pcseg.config import load_config
        from pcseg.train import train

        cfg = load_config(args.config, args.overrides)
        summary = train(cfg, resume=args.resume)
        if summary["interrupted"]:
            return 130
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
            print(f"best val mIoU {summary['best_miou']:.4f}; checkpoints {summary['last']}, {summary['best']}")
        return 0
    if args.command == "eval":
        from pcseg.config import load_config
        from pcseg.evaluate import evaluate_checkpoint

        cfg = load_config(args.config, args.overrides)
        evaluate_checkpoint(cfg, args.checkpoint, args.out, args.device)
        return 0
    if args.command == "s3dis-protocol":
        from pcseg.config import load_config
        from pcseg.protocols import run_s3dis_protocol

        run_s3dis_protocol(load_config(args.config, args.overrides), args.protocol, args.out, args.device)
        return 0
    if args.command == "predict":
        from pcseg.predict import predict_file

        summary = predict_file(args.input, args.checkpoint, args.out, args.device,
                               max_tile_points=args.max_tile_points)
        print(f"wrote {summary['out']}: {summary['points']:,} points in {summary['seconds']:.1f} s "
              f"({summary['points_per_s']:,.0f} points/s)")
        return 0
    if args.command == "fuse":
        from pcseg.fuse_folder import fuse_folder

        summary = fuse_folder(args.input, args.out, num_classes=args.num_classes, voxel_size=args.voxel_size,
                              mode=args.mode)
        print(json.dumps(summary))
        return 0
    if args.command == "prepare":
        from pcseg.data import prepare_s3dis

        paths = prepare_s3dis(args.raw_dir, args.out_dir, overwrite=args.overwrite)
        print(f"prepared {len(paths)} rooms under {args.out_dir}")
        for room, message in paths.failed:
            print(f"pcseg prepare: failed: Area_{room.area}/{room.name}: {message}", file=sys.stderr)
        # Rooms that failed are retried by the next run; the exit code tells scripts to look.
        return 1 if paths.failed else 0
    if args.command == "view":
        from pcseg.utils.open3d import view_point_cloud

        try:
            view_point_cloud(args.input, args.input_format, args.color_by)
        except RuntimeError as error:  # no display: a clear line, not a traceback
            print(f"pcseg view: error: {error}", file=sys.stderr)
            return 1
        return 0
    raise AssertionError(args.command)
