"""Fusing paired ROS messages into a `pcseg.Fuser`: shared by `pcseg fuse --bag` and the
live `pcseg ros fuse` node.

Frames: the map is built in `fixed_frame`; every pose is looked up in a `TransformBuffer`
at the stamp of the message it belongs to (the segmentation's for the camera, the cloud's
for the LiDAR), so a moving robot's camera and LiDAR taken at different instants still
line up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pcseg.ros.messages import image_to_numpy, pointcloud2_to_numpy, stamp_to_ns
from pcseg.ros.transforms import TransformBuffer, TransformError

__all__ = ["FrameFuser", "FuseTopics"]


@dataclass
class FuseTopics:
    """The topics a fusion reads (`fuse_bag`, `run_fuse_node`), one of three modes.

    RGB-D: segmentation + camera_info + depth (+ image for colour). LiDAR + camera:
    segmentation + camera_info + cloud. Labelled clouds (`pcseg predict --bag`'s output):
    labels alone. Segmentations are label images (class ids); camera_info is the
    segmented camera's, for rectified images.
    """

    segmentation: str | None = None
    camera_info: str | None = None
    depth: str | None = None
    image: str | None = None
    cloud: str | None = None
    labels: str | None = None

    def mode(self) -> str:
        """ "rgbd", "lidar" or "labels"; ValueError naming the options when the topics fit none."""
        if self.labels:
            return "labels"
        if not (self.segmentation and self.camera_info):
            raise ValueError(
                "fuse needs --labels-topic, or --segmentation-topic and --camera-info-topic "
                "with --depth-topic (RGB-D) or --cloud-topic (LiDAR + camera)"
            )
        if bool(self.depth) == bool(self.cloud):
            raise ValueError("fuse needs exactly one of --depth-topic (RGB-D) and --cloud-topic (LiDAR + camera)")
        return "rgbd" if self.depth else "lidar"

    def partners(self) -> list[str]:
        """The topics paired with each driving message (the segmentation)."""
        return [topic for topic in (self.depth, self.image, self.cloud) if topic]


@dataclass
class FrameFuser:
    """Fuses one paired frame (segmentation + depth / image / cloud, or a labelled cloud)
    into a `pcseg.Fuser`, with poses from a `TransformBuffer`; bags and live nodes share it.

    A pair whose transform is missing is counted in `no_transform` (the first reason kept
    in `first_error`), never dropped silently.

    Attributes:
        fuser: the `pcseg.Fuser` the frames go into.
        tf: the transforms; poses are `T_fixed_from_sensor` at each message's stamp.
        camera: the `CameraInfoModel` of the segmented camera (None for labelled clouds).
        fixed_frame: the map's frame.
        kind: "rgbd", "lidar" or "labels" (`FuseTopics.mode`).
        depth_scale, depth_trunc: as in `Fuser.add_rgbd`.
        scores: what float segmentations (`32FC<C>` images, C = num_classes) hold:
            "probabilities" or "logits".
        frames: pairs fused so far.
    """

    fuser: object
    tf: TransformBuffer
    camera: object
    fixed_frame: str
    kind: str
    depth_scale: float | None
    depth_trunc: float
    scores: str = "probabilities"
    frames: int = 0
    no_transform: int = 0
    first_error: str | None = None

    def pose(self, frame: str, stamp: int) -> np.ndarray:
        """(4, 4) float64 T_fixed_from_frame at `stamp` (ns); TransformError when unknown."""
        return self.tf.lookup(self.fixed_frame, frame, stamp)

    def fuse(self, messages: dict, driver: str, topics: FuseTopics, transform_wait_s: float = 0.0) -> str | None:
        """Fuse one pair (messages by topic); returns None, or why its transform is missing.

        A missing transform is retried for `transform_wait_s` seconds (a live node's /tf
        may lag its sensors, as tf2's lookup timeout allows), then counted in
        `no_transform` with the first reason kept in `first_error`.
        """
        deadline = time.monotonic() + transform_wait_s
        while True:
            try:
                if self.kind == "labels":
                    self._fuse_labels(messages[driver])
                elif self.kind == "rgbd":
                    self._fuse_rgbd(messages[driver], messages[topics.depth], messages.get(topics.image))
                else:
                    self._fuse_lidar(messages[driver], messages[topics.cloud])
                self.frames += 1
                return None
            except TransformError as error:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                self.no_transform += 1
                self.first_error = self.first_error or str(error)
                return str(error)

    def _camera_pose(self, segmentation) -> np.ndarray:
        """T_fixed_from_camera for the pinhole `camera` (P's baseline included)."""
        frame = segmentation.header.frame_id or self.camera.frame_id
        T_fixed_from_frame = self.pose(frame, stamp_to_ns(segmentation.header.stamp))
        return T_fixed_from_frame @ np.linalg.inv(self.camera.T_camera_from_frame)

    def _fuse_rgbd(self, segmentation, depth, image) -> None:
        pose = self._camera_pose(segmentation)
        color = None if image is None else image_to_numpy(image)
        self.fuser.add_rgbd(
            color,
            image_to_numpy(depth),
            _segmentation(segmentation),
            self.camera.camera,
            pose,
            depth_scale=self.depth_scale,
            depth_trunc=self.depth_trunc,
            scores=self.scores,
        )

    def _fuse_lidar(self, segmentation, cloud) -> None:
        T_fixed_from_camera = self._camera_pose(segmentation)
        T_fixed_from_lidar = self.pose(cloud.header.frame_id, stamp_to_ns(cloud.header.stamp))
        calibration = (self.camera.camera, np.linalg.inv(T_fixed_from_camera) @ T_fixed_from_lidar)
        points = pointcloud2_to_numpy(cloud)["xyz"]
        self.fuser.add_lidar(points, _segmentation(segmentation), calibration, T_fixed_from_lidar, scores=self.scores)

    def _fuse_labels(self, cloud) -> None:
        fields = pointcloud2_to_numpy(cloud)
        if "label" not in fields:
            raise ValueError(f"labelled cloud in frame {cloud.header.frame_id!r} has no 'label' field")
        pose = self.pose(cloud.header.frame_id, stamp_to_ns(cloud.header.stamp))
        points = fields["xyz"].astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]
        labels = fields["label"].astype(np.int64)
        labels[labels >= self.fuser.num_classes] = -1  # UNLABELLED and out-of-range: no label
        self.fuser.add_points(points, labels=labels)


def _segmentation(image) -> np.ndarray:
    """(H, W) class ids, or (C, H, W) scores from a multi-channel float image (H, W, C)."""
    array = image_to_numpy(image)
    return np.ascontiguousarray(array.transpose(2, 0, 1)) if array.ndim == 3 else array
