"""The ROS parts of the `pcseg` command: `predict --bag`, `fuse --bag` and `pcseg ros ...`.

    pcseg predict --bag IN --topic /points --checkpoint K --out OUT
    pcseg fuse --bag IN --out MAP.ply --num-classes C --segmentation-topic T --camera-info-topic T
               (--depth-topic T [--image-topic T] | --cloud-topic T) [--fixed-frame map]
    pcseg fuse --bag IN --out MAP.ply --num-classes C --labels-topic /points/labels
    pcseg ros segment --checkpoint K --input /points --output /points/labels
    pcseg ros fuse --num-classes C --segmentation-topic T ... [--output /pcseg/map --rate 1]

`pcseg/cli.py` calls `add_bag_arguments`, `add_ros_parser`, `run_bag` and `run_ros`.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_bag_arguments", "add_ros_parser", "run_bag", "run_ros"]


def _add_fuse_topics(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("ROS topics (bags and nodes)")
    group.add_argument(
        "--segmentation-topic", help="sensor_msgs/Image label maps (mono8 / 16UC1 class ids) or class scores (32FC<C>)"
    )
    group.add_argument(
        "--scores",
        default="probabilities",
        choices=("probabilities", "logits"),
        help="what 32FC<C> segmentations hold (default probabilities)",
    )
    group.add_argument("--camera-info-topic", help="sensor_msgs/CameraInfo of the segmented camera (rectified)")
    group.add_argument("--depth-topic", help="sensor_msgs/Image depth registered to the camera (RGB-D)")
    group.add_argument("--image-topic", help="sensor_msgs/Image colour, optional (RGB-D)")
    group.add_argument("--cloud-topic", help="sensor_msgs/PointCloud2 LiDAR scans (LiDAR + camera)")
    group.add_argument("--labels-topic", help="labelled PointCloud2 (pcseg predict --bag's output): fused as they are")
    group.add_argument("--fixed-frame", default="map", help="frame of the map (default map)")
    group.add_argument(
        "--tolerance", type=float, default=0.05, help="largest stamp difference of a pair, seconds (default 0.05)"
    )
    group.add_argument("--ignore-label", type=int, default=None, help="label-map value meaning 'no label'")
    group.add_argument("--depth-scale", type=float, default=None, help="depth units per metre (default 1000 for 16UC1)")


def add_bag_arguments(predict_parser: argparse.ArgumentParser, fuse_parser: argparse.ArgumentParser) -> None:
    """`--bag` and its options on `pcseg predict` and `pcseg fuse`."""
    predict_parser.add_argument("--bag", default=None, help="a ROS 1 .bag or ROS 2 bag folder instead of INPUT")
    predict_parser.add_argument("--topic", default=None, help="with --bag: the PointCloud2 topic to segment")
    predict_parser.add_argument("--output-topic", default=None, help="with --bag: default <topic>/labels")
    fuse_parser.add_argument("--bag", default=None, help="a ROS 1 .bag or ROS 2 bag folder instead of INPUT")
    _add_fuse_topics(fuse_parser)


def add_ros_parser(subparsers) -> None:
    """`pcseg ros segment` and `pcseg ros fuse` (live nodes)."""
    parser = subparsers.add_parser("ros", help="live ROS nodes (ROS 1 rospy, or ROS 2 rclpy)")
    nodes = parser.add_subparsers(dest="node", required=True)
    segment = nodes.add_parser("segment", help="label each PointCloud2 of --input, publish on --output")
    segment.add_argument("--checkpoint", required=True)
    segment.add_argument("--input", default="/points", help="PointCloud2 topic (default /points)")
    segment.add_argument("--output", default=None, help="labelled PointCloud2 topic (default <input>/labels)")
    segment.add_argument("--device", default="cpu")
    segment.add_argument("--name", default="pcseg_segment", help="node name")
    fuse = nodes.add_parser("fuse", help="fuse live 2D segmentations into a map published as a PointCloud2")
    fuse.add_argument("--num-classes", type=int, required=True)
    fuse.add_argument("--voxel-size", type=float, default=0.05)
    fuse.add_argument("--mode", default="bayes")
    fuse.add_argument("--output", default="/pcseg/map", help="map PointCloud2 topic (default /pcseg/map)")
    fuse.add_argument("--rate", type=float, default=1.0, help="map publications per second (default 1)")
    fuse.add_argument("--name", default="pcseg_fuse", help="node name")
    _add_fuse_topics(fuse)


def _fuse_topics(args):
    from pcseg.ros.fusion import FuseTopics

    return FuseTopics(
        segmentation=args.segmentation_topic,
        camera_info=args.camera_info_topic,
        depth=args.depth_topic,
        image=args.image_topic,
        cloud=args.cloud_topic,
        labels=args.labels_topic,
    )


def run_bag(args) -> int:
    """`pcseg predict --bag` / `pcseg fuse --bag`."""
    if args.bag is None:
        raise ValueError(f"pcseg {args.command} needs INPUT or --bag")
    if args.input is not None:
        raise ValueError(f"give INPUT or --bag, not both (got {args.input!r} and --bag {args.bag!r})")
    try:
        if args.command == "predict":
            return _predict_bag(args)
        return _fuse_bag(args)
    except ImportError as error:  # rosbags missing: one clear line, as for other bad input
        raise ValueError(str(error)) from None


def _predict_bag(args) -> int:
    from pcseg.ros.bags import predict_bag
    from pcseg.segmenter import Segmenter

    if not args.topic:
        raise ValueError("predict --bag needs --topic (the PointCloud2 topic to segment)")
    if args.votes < 1:
        raise ValueError(f"--votes must be >= 1, got {args.votes}")
    segmenter = Segmenter.from_checkpoint(
        args.checkpoint, device=args.device, max_tile_points=args.max_tile_points, votes=args.votes
    )
    summary = predict_bag(args.bag, args.out, args.topic, segmenter, output_topic=args.output_topic)
    print(json.dumps(summary))
    return 1 if summary["stopped"] else 0


def _fuse_bag(args) -> int:
    from pcseg.ros.bags import fuse_bag

    if args.num_classes is None:
        raise ValueError("fuse --bag needs --num-classes")
    summary = fuse_bag(
        args.bag,
        args.out,
        _fuse_topics(args),
        num_classes=args.num_classes,
        fixed_frame=args.fixed_frame,
        tolerance_s=args.tolerance,
        voxel_size=args.voxel_size or 0.05,
        mode=args.mode or "bayes",
        ignore_label=args.ignore_label,
        depth_scale=args.depth_scale,
        scores=args.scores,
    )
    print(json.dumps(summary))
    return 1 if summary["stopped"] else 0


def run_ros(args) -> int:
    """`pcseg ros segment` / `pcseg ros fuse`: run a node until Ctrl-C (exit status 0)."""
    from pcseg.ros.node import make_adapter, run_fuse_node, run_segment_node

    try:
        adapter = make_adapter(args.name)
    except ImportError as error:
        raise ValueError(str(error)) from None
    try:
        if args.node == "segment":
            from pcseg.segmenter import Segmenter

            segmenter = Segmenter.from_checkpoint(args.checkpoint, device=args.device)
            run_segment_node(adapter, segmenter, args.input, args.output or f"{args.input.rstrip('/')}/labels")
        else:
            from pcseg.fuser import Fuser

            fuser = Fuser(args.num_classes, args.voxel_size, args.mode, ignore_label=args.ignore_label)
            run_fuse_node(
                adapter,
                fuser,
                _fuse_topics(args),
                output_topic=args.output,
                fixed_frame=args.fixed_frame,
                rate_hz=args.rate,
                tolerance_s=args.tolerance,
                depth_scale=args.depth_scale,
                scores=args.scores,
            )
    finally:
        adapter.shutdown()
    return 0
