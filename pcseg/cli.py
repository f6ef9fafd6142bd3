"""The ``pcseg`` command (also ``python -m pcseg``).

    pcseg demo [--out demo_out] [--model pointnet|acnn] [--from-2d]   the whole job on procedural rooms
    pcseg demo --lidar [--real-scan BIN]                 the same on simulated LiDAR scans
    pcseg train --config C [--set k=v ...] [--resume K]  (torchrun --nproc_per_node=N -m pcseg train ...)
    pcseg eval --config C --checkpoint K [--out DIR] [--refine crf] [--votes N]
    pcseg calibrate --config C --checkpoint K            temperature scaling, stored in K
    pcseg s3dis-protocol --config C --protocol 6fold|area5 [--out DIR]   (pcseg.protocols)
    pcseg predict INPUT --checkpoint K --out OUT.ply|.pcd|.las|.laz|.label|.npy [--input-format F]
    pcseg predict DIR --checkpoint K --out DIR [--out-format label|ply|...]   every cloud under DIR
    pcseg fuse FOLDER --out MAP.ply
    pcseg pseudolabel FRAMES... --out DATASET             pseudo-labels fused from 2D segmentations
    pcseg predict --bag IN --topic /points ... / pcseg fuse --bag IN ... / pcseg ros ...  (pcseg.ros.cli)
    pcseg prepare s3dis RAW_DIR OUT_DIR
    pcseg view FILE [--color-by label|file]              a (labelled) cloud in Open3D's viewer
    pcseg export --checkpoint K --format onnx|torchscript --out FILE
    pcseg --version

Every expected failure (a bad config, file, checkpoint, device, output path; a run folder in
use) ends with one line on stderr, ``pcseg <command>: error: ...``, and exit status 2; an
unexpected one with one ``internal error`` line and status 1. ``--debug`` (before or after the
command) or ``PCSEG_DEBUG=1`` also prints the traceback. Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import traceback
import zipfile
from collections.abc import Sequence
from pathlib import Path

from pcseg import __version__

__all__ = ["main", "build_parser"]

# Failures that bad input causes (files, configs, checkpoints, devices, a busy run folder): one
# line. OSError covers missing files, full disks and file-size limits alike.
EXPECTED_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError)
FUSE_SUFFIXES = (".ply", ".npz")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pcseg", description="3D point-cloud semantic segmentation")
    parser.add_argument("--version", action="version", version=f"pcseg {__version__}")
    debug_help = "print the traceback of an error too (also PCSEG_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True)

    def add_debug(p):
        # SUPPRESS: the subcommand's default must not overwrite a --debug given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)

    def add_set(p):
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override a config value, e.g. --set train.lr=0.01 (repeatable)",
        )

    p = sub.add_parser("demo", help="generate rooms, train, evaluate, segment, fuse (a few minutes on a CPU)")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-bridge", action="store_true", help="skip the 2D-3D fusion part")
    p.add_argument(
        "--model",
        choices=("pointnet", "acnn"),
        default="pointnet",
        help="the model trained (default pointnet; acnn: A-CNN with the authors' decoder)",
    )
    p.add_argument(
        "--from-2d",
        action="store_true",
        help="instead: train on pseudo-labels fused from simulated 2D segmentations (pcseg.demo.from_2d)",
    )
    p.add_argument(
        "--lidar",
        action="store_true",
        help="the LiDAR demo instead: simulated HDL-64E scans, a model on xyz + intensity + range, "
        "SemanticKITTI metric (default output folder demo_lidar_out)",
    )
    p.add_argument(
        "--real-scan",
        default=None,
        metavar="BIN",
        help="with --lidar: a real SemanticKITTI .bin (its .label beside it) to test the transfer on "
        "(default ../shared/data/semantickitti/000000.bin when it exists)",
    )
    add_set(p)
    add_debug(p)

    p = sub.add_parser("train", help="train a model from a config")
    p.add_argument("--config", required=True, help="YAML config (configs/*.yaml)")
    p.add_argument("--resume", default=None, help="continue from this last.pt")
    add_set(p)
    add_debug(p)

    p = sub.add_parser("eval", help="whole-room evaluation of a checkpoint on the config's validation rooms")
    p.add_argument("--config", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", default=None, help="folder for metrics.json, confusion_matrix.png and reliability.png")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--refine",
        choices=("none", "crf"),
        default="none",
        help="refine each room's probabilities with the CRF of the config's refine section",
    )
    p.add_argument(
        "--votes",
        type=int,
        default=1,
        help="test-time voting: average this many passes over each room turned about the vertical axis (default 1)",
    )
    add_set(p)
    add_debug(p)

    p = sub.add_parser(
        "calibrate", help="fit temperature scaling on the config's validation rooms, store it in the checkpoint"
    )
    p.add_argument("--config", required=True)
    p.add_argument("--checkpoint", required=True, help="rewritten (atomically) with the temperature")
    p.add_argument("--device", default="cpu")
    add_set(p)
    add_debug(p)

    p = sub.add_parser("s3dis-protocol", help="S3DIS 6-fold cross-validation or Area 5: train, test, merged scores")
    p.add_argument("--config", required=True, help="an S3DIS config (configs/*_s3dis.yaml)")
    p.add_argument("--protocol", choices=("6fold", "area5"), default="6fold")
    p.add_argument("--out", default=None, help="folder for the runs and protocol.json (default train.out_dir)")
    p.add_argument("--device", default="cpu", help="where the evaluation runs")
    add_set(p)
    add_debug(p)

    p = predict = sub.add_parser("predict", help="segment a point cloud file, or every cloud under a folder")
    p.add_argument("input", nargs="?", help="a cloud (.ply .pcd .las .laz .e57 .bin .npy .npz .txt .mat) or a folder")
    p.add_argument("--checkpoint", required=True)
    p.add_argument(
        "--out",
        required=True,
        help="output file, its suffix picks the writer: .ply (coloured, label, confidence), .pcd, "
        ".las/.laz (classification), .label (SemanticKITTI raw ids), .npy (labels); "
        "a folder when INPUT is one",
    )
    p.add_argument(
        "--out-format",
        default=None,
        help="with a folder INPUT: the output suffix, ply pcd las laz label or npy (default ply)",
    )
    p.add_argument(
        "--input-format",
        default=None,
        help="the input format when the suffix is ambiguous (e.g. nuscenes for .bin sweeps)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--votes",
        type=int,
        default=1,
        help="test-time voting: average this many passes over the cloud turned about the vertical axis "
        "(default 1; costs that many passes)",
    )
    p.add_argument(
        "--max-tile-points",
        type=int,
        default=300_000,
        help="points per tile predicted at once; bounds memory (default 300000)",
    )
    add_debug(p)

    p = sub.add_parser("fuse", help="fuse a folder of RGB-D / LiDAR+camera frames and 2D segmentations into a map")
    p.add_argument("input", nargs="?", help="folder with frames.json (see pcseg.fuse_folder)")
    p.add_argument("--out", required=True, help="output map (.ply or .npz)")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--voxel-size", type=float, default=None)
    p.add_argument("--mode", default=None, help="fusion mode (see pcseg.Fuser)")
    add_debug(p)
    from pcseg.ros.cli import add_bag_arguments, add_ros_parser

    add_bag_arguments(predict, p)
    add_ros_parser(sub)

    p = sub.add_parser(
        "pseudolabel",
        help="fuse folders of frames with 2D segmentations into a pseudo-labelled data set (pcseg.pseudolabel)",
    )
    p.add_argument("input", nargs="+", metavar="FRAMES", help="folders with frames.json (see pcseg.fuse_folder)")
    p.add_argument("--out", required=True, help="the data set folder (train/, val/, classes.yaml)")
    p.add_argument(
        "--config",
        default=None,
        help="YAML file of thresholds (min_probability, min_observations, "
        "min_agreement; at the top or under pseudolabel:)",
    )
    for name in ("min-probability", "min-agreement"):
        p.add_argument(f"--{name}", type=float, default=None, help="overrides the config's")
    p.add_argument("--min-observations", type=int, default=None, help="overrides the config's")
    p.add_argument("--val-folders", type=int, default=None, help="how many of the last folders go to val/")
    p.add_argument("--voxel-size", type=float, default=None)
    add_debug(p)

    p = sub.add_parser("prepare", help="convert a raw data set into pcseg's cache")
    prepare = p.add_subparsers(dest="dataset", required=True)
    s3dis = prepare.add_parser("s3dis", help="Stanford3dDataset_v1.2_Aligned_Version -> Area_k/<room>.npz")
    s3dis.add_argument("raw_dir")
    s3dis.add_argument("out_dir")
    s3dis.add_argument("--overwrite", action="store_true")
    add_debug(s3dis)

    p = sub.add_parser("view", help="open a point cloud file in Open3D's viewer (coloured by label when labelled)")
    p.add_argument("input", help="any file pcseg reads (.ply .pcd .las .laz .e57 .bin .npy .npz .txt .mat)")
    p.add_argument("--input-format", default=None, help="the format when the suffix is ambiguous (e.g. nuscenes)")
    p.add_argument(
        "--color-by",
        choices=("label", "file"),
        default="label",
        help="colour a labelled cloud by label (default) or show the file's own colours",
    )
    add_debug(p)
    # built here rather than in pcseg.export, which imports torch: parsing stays torch-free (the
    # format is checked by pcseg.export.export_checkpoint)
    p = sub.add_parser("export", help="export a checkpoint's model as ONNX or TorchScript (README: Export)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", required=True, help="onnx or torchscript")
    p.add_argument("--out", required=True, help="the file to write (e.g. model.onnx, model.pt)")
    add_debug(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("PCSEG_DEBUG", "").strip() not in ("", "0")
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as error:
        # bad input: one clear line instead of a traceback
        if debug:
            traceback.print_exc()
        print(f"pcseg {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug: still one line, the traceback on request
        if debug:
            traceback.print_exc()
        print(
            f"pcseg {args.command}: internal error: {type(error).__name__}: {_one_line(error)} "
            "(run with --debug or PCSEG_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _check_fuse_args(args) -> None:
    """``pcseg fuse``'s input folder and output, checked before any frame is read."""
    from pcseg.utils.atomic import check_output_path

    if Path(args.out).suffix.lower() not in FUSE_SUFFIXES:
        raise ValueError(f"--out must end in .ply or .npz, got {args.out}")
    check_output_path(args.out, "--out")
    if not Path(args.input).is_dir():
        raise FileNotFoundError(f"input folder not found: {args.input}")


def _check_predict_args(args) -> None:
    """``pcseg predict``'s input, output and device, checked before the model is loaded."""
    from pcseg.io import INPUT_FORMATS, PREDICTION_SUFFIXES
    from pcseg.utils.atomic import check_output_folder, check_output_path
    from pcseg.utils.devices import check_device

    suffixes = " ".join(PREDICTION_SUFFIXES)
    if Path(args.input).is_dir():
        out_format = "." + (args.out_format or "ply").lower().lstrip(".")
        if out_format not in PREDICTION_SUFFIXES:
            raise ValueError(f"--out-format must be one of {suffixes} (without the dot), got {args.out_format}")
        check_output_folder(args.out, "--out")
    else:
        if args.out_format is not None:
            raise ValueError("--out-format is for a folder INPUT; for one file the suffix of --out picks the format")
        if Path(args.out).suffix.lower() not in PREDICTION_SUFFIXES:
            raise ValueError(f"--out must end in one of {suffixes}, got {args.out}")
        check_output_path(args.out, "--out")
        if not Path(args.input).is_file():
            raise FileNotFoundError(f"input point cloud not found: {args.input}")
    if args.input_format is not None and args.input_format not in INPUT_FORMATS:
        raise ValueError(f"--input-format must be one of {' '.join(INPUT_FORMATS)}, got {args.input_format}")
    check_device(args.device, "--device")
    if not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    if args.max_tile_points < 1:
        raise ValueError(f"--max-tile-points must be >= 1, got {args.max_tile_points}")
    if args.votes < 1:
        raise ValueError(f"--votes must be >= 1, got {args.votes}")


def _predict(args) -> int:
    """``pcseg predict`` on a file or a folder (each output is written atomically by ``pcseg.io``)."""
    import logging

    from pcseg.predict import predict_file, predict_folder

    _check_predict_args(args)
    # pcseg's notes (e.g. LiDAR intensity used as colour) as plain lines on stderr; other
    # libraries' loggers stay as they are
    log = logging.getLogger("pcseg")
    if not log.handlers:
        log.addHandler(logging.StreamHandler())
        log.setLevel(logging.INFO)
    if Path(args.input).is_dir():
        summaries = predict_folder(
            args.input,
            args.checkpoint,
            args.out,
            args.out_format or "ply",
            args.device,
            max_tile_points=args.max_tile_points,
            input_format=args.input_format,
            votes=args.votes,
        )
        points = sum(summary["points"] for summary in summaries)
        seconds = sum(summary["seconds"] for summary in summaries)
        print(
            f"wrote {len(summaries)} files under {args.out}: {points:,} points in {seconds:.1f} s "
            f"({points / max(seconds, 1e-9):,.0f} points/s)"
        )
        return 0
    summary = predict_file(
        args.input,
        args.checkpoint,
        args.out,
        args.device,
        max_tile_points=args.max_tile_points,
        input_format=args.input_format,
        votes=args.votes,
    )
    print(
        f"wrote {summary['out']}: {summary['points']:,} points in {summary['seconds']:.1f} s "
        f"({summary['points_per_s']:,.0f} points/s)"
    )
    return 0


def _run_pseudolabel(args) -> int:
    """``pcseg pseudolabel``: thresholds from --config and the flags, then the data set."""
    import dataclasses

    from pcseg.pseudolabel import PseudoLabelThresholds, load_thresholds, pseudolabel_folders
    from pcseg.utils.atomic import check_output_folder

    thresholds = load_thresholds(args.config) if args.config else PseudoLabelThresholds()
    flags = {
        "min_probability": args.min_probability,
        "min_agreement": args.min_agreement,
        "min_observations": args.min_observations,
    }
    thresholds = dataclasses.replace(thresholds, **{k: v for k, v in flags.items() if v is not None})
    check_output_folder(args.out, "--out")
    for folder in args.input:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"FRAMES folder not found: {folder}")
    summary = pseudolabel_folders(
        args.input, args.out, thresholds, val_folders=args.val_folders, voxel_size=args.voxel_size
    )
    for folder, report in summary["folders"].items():
        print(
            f"{folder}: {report['voxels']:,} voxels, {report['all']['coverage']:.1%} pseudo-labelled "
            f"({report['split']})"
        )
    print(f"wrote {summary['out_dir']} (train/, val/, classes.yaml, pseudolabel_report.json)")
    return 0


def _run(args) -> int:
    if args.command in ("predict", "fuse") and (args.bag or args.input is None):
        from pcseg.ros.cli import run_bag

        return run_bag(args)
    if args.command == "ros":
        from pcseg.ros.cli import run_ros

        return run_ros(args)
    if args.command == "demo" and args.from_2d:
        from pcseg.demo.from_2d import run_from_2d_demo

        run_from_2d_demo(args.out, args.overrides, seed=args.seed)
        return 0
    if args.command == "pseudolabel":
        return _run_pseudolabel(args)
    if args.command == "demo":
        if args.lidar:
            from pcseg.demo.lidar import run_lidar_demo

            run_lidar_demo(
                args.out if args.out != "demo_out" else "demo_lidar_out",
                args.overrides,
                seed=args.seed,
                real_scan=args.real_scan,
            )
            return 0
        if args.real_scan is not None:
            raise SystemExit("pcseg demo: --real-scan needs --lidar")
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
        evaluate_checkpoint(
            cfg,
            args.checkpoint,
            args.out,
            args.device,
            refine=None if args.refine == "none" else args.refine,
            votes=args.votes,
        )
        return 0
    if args.command == "calibrate":
        from pcseg.config import load_config
        from pcseg.evaluate import calibrate_checkpoint

        cfg = load_config(args.config, args.overrides)
        summary = calibrate_checkpoint(cfg, args.checkpoint, args.device)
        print(
            f"temperature {summary['temperature']:.4f} (was {summary['previous_temperature']:.4f}) fitted on "
            f"{summary['points']:,} validation points; validation NLL {summary['val_nll_before']:.4f} -> "
            f"{summary['val_nll_after']:.4f}, ECE {summary['val_ece_before']:.4f} -> {summary['val_ece_after']:.4f}; "
            f"stored in {args.checkpoint}"
        )
        return 0
    if args.command == "s3dis-protocol":
        from pcseg.config import load_config
        from pcseg.protocols import run_s3dis_protocol

        run_s3dis_protocol(load_config(args.config, args.overrides), args.protocol, args.out, args.device)
        return 0
    if args.command == "predict":
        return _predict(args)
    if args.command == "fuse":
        from pcseg.fuse_folder import fuse_folder

        _check_fuse_args(args)
        summary = fuse_folder(
            args.input, args.out, num_classes=args.num_classes, voxel_size=args.voxel_size, mode=args.mode
        )
        print(json.dumps(summary))
        return 0
    if args.command == "prepare":
        from pcseg.data import prepare_s3dis
        from pcseg.utils.atomic import check_output_folder

        check_output_folder(args.out_dir, "OUT_DIR")
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
    if args.command == "export":
        from pcseg.export import run_export

        return run_export(args)
    raise AssertionError(args.command)
