"""`Fuser`: multi-frame 2D -> 3D label fusion for robotics stacks.

A `Fuser` wraps one `pcseg.bridge.VoxelLabelMap` behind a numpy-in / numpy-out API: feed it
posed RGB-D frames or LiDAR scans with the 2D segmentation of a camera image, then ask for
the fused label of any 3D point or export the map as a coloured PLY.

    fuser = Fuser(num_classes=13, voxel_size=0.05, mode="bayes")
    for color, depth, scores, pose in frames:          # scores: (C, H, W) from a 2D network
        fuser.add_rgbd(color, depth, scores, camera, pose)
    labels = fuser.labels(points)                      # (N,) int64, -1 where never observed
    fuser.export("map.ply")

On real robots: cameras may carry lens distortion (`PinholeCamera(..., distortion=...)`),
moving LiDAR sweeps are de-skewed (`add_lidar(..., timestamps=..., pose_end=...)`), a 3D
model's per-point probabilities join the painted 2D evidence with per-source weights
(`add_points(..., weight=...)`), `clear_free_space=True` removes what has left the scene,
`max_distance` / `max_age_frames` / `max_age_seconds` bound a local map, and
`save` / `load` resume mapping in another process:

    fuser = Fuser(20, 0.1, clear_free_space=True, max_distance=60.0)
    fuser.add_lidar(scan, scores, calibration, T_world_from_lidar)
    fuser.add_points(scan_world, probabilities=segmenter_probabilities, weight=0.5,
                     sensor_origin=T_world_from_lidar[:3, 3])
    fuser.save("map.pt"); fuser = Fuser.load("map.pt")

It is pcseg's one frame-level fusion API. Projection, occlusion and fusion are
`pcseg.bridge`'s (`backproject_depth`, `paint_points`, `VoxelLabelMap`, which integrates
world-frame points); this module adds the input conventions (depth units, ignored labels,
KITTI calibrations). `pcseg fuse` reads a folder of frames into a `Fuser`
(`pcseg.fuse_folder`).
"""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcseg.bridge.camera import KittiCalibration, PinholeCamera
from pcseg.bridge.checks import Array, ArrayLike, as_numpy, as_tensor, check_pose, check_segmentation
from pcseg.bridge.deskew import deskew_points, interpolate_pose
from pcseg.bridge.fusion import FUSION_MODES, VoxelLabelMap, VoxelQuery
from pcseg.bridge.projection import backproject_depth, paint_points, transform_points
from pcseg.io import normalize_palette
from pcseg.utils.atomic import atomic_write
from pcseg.utils.colors import check_color_values

__all__ = ["Fuser"]


class Fuser:
    """Fuses per-frame 2D segmentations into a sparse voxel map of class distributions.

    All inputs are numpy arrays (torch tensors and nested lists are converted); all outputs
    are numpy. World frame: whatever frame the poses map into (identity poses: the first
    sensor's frame). Thread safety: adding frames, queries and export take an internal
    lock, so camera and LiDAR callbacks on different threads may share one Fuser.

    Args:
        num_classes: C, the classes of the 2D segmentations (label maps hold 0..C-1).
        voxel_size: voxel edge in metres (0.05 suits indoor RGB-D, 0.1-0.2 outdoor LiDAR).
        mode: "bayes" (product of per-frame probabilities, SemanticFusion /
            Kimera-Semantics), "mean" (average probability) or "vote" (majority of
            per-frame argmax labels).
        ignore_label: a label-map value meaning "no label" (e.g. 0 = unlabelled in NYU and
            SUN RGB-D label PNGs); such pixels add nothing. Negative values always mean
            "no label".
        palette: (C, 3) colours for `export`, uint8 0..255 or float in [0, 1];
            `pcseg.bridge.default_palette(C)` when None.
        min_probability: probability floor of "bayes" mode (see `VoxelLabelMap`).
        device: where the voxel map lives ("cpu", "cuda"); inputs and outputs stay numpy.
        clear_free_space: rays from the sensor to each return lower the occupancy evidence
            of the voxels they pass through (`pcseg.bridge.free_space`); a voxel whose
            evidence falls below zero is removed, so a car that drove away or a person who
            walked through leaves no voxels after a few frames. The sensor origin comes
            from the poses of `add_rgbd` / `add_lidar` and from `add_points(...,
            sensor_origin=...)`.
        clearing_resolution_degrees: the angular bin of the free-space test; coarser than
            the sensor's ray spacing (0.5 suits a 64-beam LiDAR and RGB-D cameras).
        max_distance: metres; when set, voxels farther than this from the latest sensor
            position are dropped after each frame (a bounded local map).
        max_age_frames: when set, voxels not hit by any of the last `max_age_frames`
            frames are dropped.
        max_age_seconds: when set, voxels not hit for longer than this (frame timestamps,
            see `add_rgbd`'s `timestamp`) are dropped.

    Raises:
        ValueError: on an unknown mode, a non-integer ignore_label, a bad palette or a
            bound that is not positive.
    """

    # Bumped whenever the layout of `save`'s file changes.
    FILE_VERSION = 1

    def __init__(
        self,
        num_classes: int,
        voxel_size: float = 0.05,
        mode: str = "bayes",
        *,
        ignore_label: int | None = None,
        palette=None,
        min_probability: float = 1e-3,
        device: str | torch.device = "cpu",
        clear_free_space: bool = False,
        clearing_resolution_degrees: float = 0.5,
        max_distance: float | None = None,
        max_age_frames: int | None = None,
        max_age_seconds: float | None = None,
    ):
        if mode not in FUSION_MODES:
            raise ValueError(f"mode must be one of {FUSION_MODES}, got {mode!r}")
        self.map = VoxelLabelMap(voxel_size, num_classes, mode, min_probability=min_probability, device=device)
        self.num_classes = int(num_classes)
        self.voxel_size = float(voxel_size)
        self.mode = mode
        if ignore_label is not None and int(ignore_label) != ignore_label:
            raise ValueError(f"ignore_label must be an integer or None, got {ignore_label!r}")
        self.ignore_label = None if ignore_label is None else int(ignore_label)
        self.palette = normalize_palette(palette, self.num_classes)
        for name, value in (
            ("clearing_resolution_degrees", clearing_resolution_degrees),
            ("max_distance", max_distance),
            ("max_age_frames", max_age_frames),
            ("max_age_seconds", max_age_seconds),
        ):
            if value is not None and (not value > 0 or not np.isfinite(value)):
                raise ValueError(f"{name} must be a positive number or None, got {value}")
        self.clear_free_space = bool(clear_free_space)
        self.clearing_resolution_degrees = float(clearing_resolution_degrees)
        self.max_distance = None if max_distance is None else float(max_distance)
        self.max_age_frames = None if max_age_frames is None else int(max_age_frames)
        self.max_age_seconds = None if max_age_seconds is None else float(max_age_seconds)
        self.num_frames = 0
        self.num_points_added = 0
        self.sensor_position: np.ndarray | None = None  # (3,) the latest frame's sensor origin
        self.latest_time: float | None = None
        self._lock = threading.Lock()

    @property
    def num_voxels(self) -> int:
        """Number of occupied voxels in the map."""
        return self.map.num_voxels

    # ----- adding frames -------------------------------------------------------------------
    def add_rgbd(
        self,
        color: ArrayLike | None,
        depth: ArrayLike,
        segmentation: ArrayLike,
        camera: PinholeCamera,
        pose: ArrayLike | None = None,
        *,
        depth_scale: float | None = None,
        depth_trunc: float = 10.0,
        scores: str = "probabilities",
        weight: float = 1.0,
        timestamp: float | None = None,
    ) -> int:
        """Integrate one posed RGB-D frame and its 2D segmentation.

        A frame without a valid depth pixel adds nothing and is not an error; a frame with
        a bad argument raises whether or not it has valid depth.

        Args:
            color: (H, W, 3) uint8 (or float in [0, 1]) image, or None; averaged per voxel
                (`voxel_colors`), not used for the label colours of `export`.
            depth: (H, W) depth image; 0, non-finite and >= depth_trunc pixels are dropped.
            segmentation: (H, W) integer label map (values in [0, C), negatives and
                `ignore_label` = no label) or (C, H, W) float class scores (`scores` says
                whether they are probabilities or logits).
            camera: the PinholeCamera of the frame (0-based pixel centres), size W x H.
            pose: (4, 4) T_world_from_camera (camera: x right, y down, z forward); None =
                identity.
            depth_scale: depth units per metre; None means 1000 for integer depth
                (millimetre PNGs) and 1 for float depth (metres).
            depth_trunc: depth in metres from which pixels are dropped.
            scores: "probabilities" or "logits", for float segmentations.
            weight: this source's weight, > 0 (see `add_points`).
            timestamp: the frame's time in seconds, for `max_age_seconds`; None = the
                wall clock (`time.time()`).

        Returns:
            added: the number of points integrated (valid depth and a label).

        Raises:
            ValueError: on shapes that do not match the camera, labels >= C, scores with
                other than C channels, an unknown `scores` or a bad pose.
        """
        depth = as_numpy(depth, "depth")
        if depth_scale is None:
            depth_scale = 1.0 if np.issubdtype(depth.dtype, np.floating) else 1000.0
        segmentation = as_numpy(segmentation, "segmentation")
        is_label_map = check_segmentation(segmentation, camera, scores=scores, num_classes=self.num_classes)
        if color is not None:
            color = as_numpy(color, "color")
            if color.shape != (camera.height, camera.width, 3):
                raise ValueError(f"color must be (H, W, 3) = ({camera.height}, {camera.width}, 3), got {color.shape}")
            color = check_color_values(color, "color")
        if is_label_map:
            segmentation = self._label_map(segmentation, "segmentation")
        T_world_from_camera = np.eye(4) if pose is None else check_pose(pose, "pose (T_world_from_camera)").numpy()
        backprojected = backproject_depth(depth, camera, depth_scale, depth_trunc)
        colors = None if color is None else backprojected.take(color)
        camera_points = backprojected.points
        points = camera_points if pose is None or not len(camera_points) else transform_points(camera_points, pose)
        frame: dict[str, Any] = {"weight": weight, "timestamp": timestamp, "T_world_from_sensor": T_world_from_camera}
        if self.clear_free_space:
            # The depth image is the frame's range image on the camera's own pixel grid.
            z = as_tensor(depth, "depth")[0].to(torch.float32) / depth_scale
            ranges = torch.where(torch.from_numpy(backprojected.valid), z * _ray_lengths(camera), float("inf"))
            frame["clear"] = lambda index: self.map.clear_free_space_image(
                ranges, camera, T_world_from_camera, index, self.clearing_resolution_degrees
            )
        if is_label_map:
            return self._integrate(points, labels=backprojected.take(segmentation), colors=colors, **frame)
        # A torch view keeps the (N, C) gather a transposed view: no contiguous copy.
        segmentation_t, _ = as_tensor(segmentation, "segmentation")
        probabilities = backprojected.take(segmentation_t, channels_first=True)
        if scores == "logits":
            probabilities = torch.softmax(probabilities.to(torch.float32), dim=1)
        return self._integrate(points, probabilities=probabilities, colors=colors, **frame)

    def add_lidar(
        self,
        points: ArrayLike,
        segmentation: ArrayLike,
        calibration: KittiCalibration | tuple[PinholeCamera, ArrayLike],
        pose: ArrayLike | None = None,
        *,
        camera_index: int = 2,
        scores: str = "probabilities",
        colors: ArrayLike | None = None,
        occlusion: str = "zbuffer",
        zbuffer_radius: int = 1,
        sampling: str = "nearest",
        depth_image: ArrayLike | None = None,
        occlusion_tolerance: float = 0.1,
        occlusion_tolerance_relative: float = 0.01,
        weight: float = 1.0,
        timestamp: float | None = None,
        timestamps: ArrayLike | None = None,
        pose_end: ArrayLike | None = None,
        scan_time: tuple[float, float] | None = None,
        image_time: float | None = None,
    ) -> int:
        """Paint one LiDAR scan from a camera's 2D segmentation and integrate the points
        that camera sees (in the image, in front of it, not occluded).

        Any point cloud works the same way (e.g. a map painted from a camera: calibration
        (camera, T_camera_from_map)).

        A scan taken while moving is de-skewed first when `timestamps` and `pose_end` are
        given: each point goes through the pose interpolated at its own timestamp between
        `pose` (scan start) and `pose_end` (scan end), and is painted from the camera as
        the LiDAR stood at `image_time` (`pcseg.bridge.deskew`).

        Args:
            points: (N, 3) or (N, 4) float LiDAR points (a KITTI `.bin`'s x y z remission;
                the 4th column is ignored), in the LiDAR frame.
            segmentation: (H, W) integer label map (negatives and `ignore_label` = no
                label) or (C, H, W) float scores of the camera image.
            calibration: a `pcseg.bridge.KittiCalibration` (camera `camera_index`; the
                image size is the segmentation's), or a pair (PinholeCamera,
                T_camera_from_lidar (4, 4)).
            pose: (4, 4) T_world_from_lidar; None = identity.
            camera_index: the KITTI camera of the segmentation (2 = left colour, image_2).
            scores: "probabilities" or "logits", for float segmentations.
            colors: optional (N, 3) per-point colours (uint8 or float in [0, 1]).
            occlusion: "zbuffer", "depth" (against `depth_image`) or "none", as in
                `pcseg.bridge.paint_points`.
            zbuffer_radius: pixels each point also occludes around its own; the default 1
                stops points seen through gaps of nearer sparse LiDAR returns from taking
                the nearer object's label.
            sampling: "nearest" or "bilinear", as in `paint_points`.
            depth_image: (H, W) float metres, for occlusion="depth".
            occlusion_tolerance: metres, as in `paint_points`.
            occlusion_tolerance_relative: fraction of the depth, as in `paint_points`.
            weight: this source's weight, > 0 (see `add_points`).
            timestamp: the frame's time in seconds, for `max_age_seconds`; None = the
                wall clock (`time.time()`).
            timestamps: (N,) float seconds, each point's capture time, for de-skewing.
            pose_end: (4, 4) T_world_from_lidar at the end of the scan (`pose` is then
                the pose at its start); required with `timestamps`.
            scan_time: (start, end) seconds of the scan; None = the timestamps' range.
            image_time: seconds, when the camera image was taken; None = the scan's end.

        Returns:
            added: the number of points integrated (visible and labelled).

        Raises:
            ValueError: on points that are not (N, 3) / (N, 4), a bad pose, timestamps
                that are not one per point, timestamps without pose_end (or the reverse),
                or a bad segmentation or painting option.
            TypeError: on a calibration of another type.
        """
        points = as_numpy(points, "points")
        if points.ndim != 2 or points.shape[1] not in (3, 4):
            raise ValueError(f"points must be (N, 3) or (N, 4), got shape {points.shape}")
        if pose is not None:
            pose = check_pose(pose, "pose").numpy()
        if (timestamps is None) != (pose_end is None):
            raise ValueError("de-skewing needs both timestamps (N,) and pose_end (4, 4); got only one")
        if len(points) == 0:
            return self._integrate(points, labels=np.zeros(0, np.int64), timestamp=timestamp)
        points = np.ascontiguousarray(points[:, :3])
        world_points = None
        if timestamps is not None:
            # The scan in the world frame point by point, then back into the LiDAR frame of
            # the moment the image was taken, where the calibration holds.
            timestamps = as_numpy(timestamps, "timestamps")
            if timestamps.shape != (len(points),):
                raise ValueError(f"timestamps must be (N,) with N={len(points)}, got shape {timestamps.shape}")
            start, end = scan_time if scan_time is not None else (float(timestamps.min()), float(timestamps.max()))
            pose_start = np.eye(4) if pose is None else pose
            world_points = deskew_points(points, timestamps, pose_start, pose_end, start, end)
            at_image = end if image_time is None else image_time
            pose = interpolate_pose(pose_start, pose_end, (at_image - start) / (end - start))
            points = np.asarray(transform_points(world_points, np.linalg.inv(pose)), dtype=points.dtype)
        segmentation = as_numpy(segmentation, "segmentation")
        camera, T_camera_from_lidar = _camera_from_calibration(calibration, segmentation.shape, camera_index)
        is_label_map = check_segmentation(segmentation, camera, scores=scores, num_classes=self.num_classes)
        colors_np = None if colors is None else as_numpy(colors, "colors")
        if colors_np is not None and colors_np.shape != (len(points), 3):
            raise ValueError(f"colors must be (N, 3) with N={len(points)}, got {colors_np.shape}")
        if colors_np is not None:
            colors_np = check_color_values(colors_np, "colors")
        # Values of several types, each checked by paint_points.
        options: dict[str, Any] = {
            "occlusion": occlusion,
            "zbuffer_radius": zbuffer_radius,
            "sampling": sampling,
            "depth_image": depth_image,
            "occlusion_tolerance": occlusion_tolerance,
            "occlusion_tolerance_relative": occlusion_tolerance_relative,
        }
        if is_label_map:
            labels_image = self._label_map(segmentation, "segmentation")
            # paint_points wants labels in [0, C): "no label" pixels become an extra class C,
            # whose points are then dropped.
            unlabelled = labels_image < 0
            painted = paint_points(
                points,
                np.where(unlabelled, self.num_classes, labels_image),
                camera,
                T_camera_from_lidar,
                num_classes=self.num_classes + 1,
                **options,
            )
            keep = painted.visible & (painted.labels < self.num_classes)
            labels, probabilities = painted.labels[keep], None
        else:
            painted = paint_points(points, segmentation, camera, T_camera_from_lidar, scores=scores, **options)
            keep = painted.visible
            labels, probabilities = None, painted.probabilities[keep]
        if world_points is None:
            # torch's transform, not numpy's matmul: a (N, 3) @ (3, 3) product wakes every
            # BLAS thread, which stalls on a busy machine.
            world_points = points if pose is None else transform_points(points, pose)
        return self._integrate(
            world_points[keep],
            probabilities=probabilities,
            labels=labels,
            colors=None if colors_np is None else colors_np[keep],
            weight=weight,
            timestamp=timestamp,
            returns=points,
            T_world_from_sensor=np.eye(4) if pose is None else pose,
        )

    def add_points(
        self,
        points: ArrayLike,
        labels: ArrayLike | None = None,
        probabilities: ArrayLike | None = None,
        colors: ArrayLike | None = None,
        *,
        weight: float = 1.0,
        sensor_origin: ArrayLike | None = None,
        timestamp: float | None = None,
    ) -> int:
        """Integrate already-labelled world-frame points; give labels or probabilities.

        This is how a 3D model's per-point predictions (`pcseg.Segmenter`'s
        probabilities) join the painted 2D evidence of `add_rgbd` / `add_lidar` in one
        map: in "bayes" mode each source adds weight * log p per voxel, the log-linear
        pooling of `pcseg.bridge.late_fusion` (weight_3d, weight_2d), accumulated over
        frames; "mean" and "vote" average with these weights.

        Args:
            points: (N, 3) float world-frame points.
            labels: (N,) int labels in [0, C) (negatives and `ignore_label` = no label).
            probabilities: (N, C) float class probabilities.
            colors: optional (N, 3) colours (uint8 or float in [0, 1]).
            weight: this source's weight, > 0.
            sensor_origin: (3,) world position of the sensor that measured the points;
                enables free-space clearing and the distance bound for this frame.
            timestamp: the frame's time in seconds, for `max_age_seconds`; None = the
                wall clock (`time.time()`).

        Returns:
            added: the number of points integrated (those with a label).

        Raises:
            ValueError: on shapes that do not match, labels >= C, both or neither of
                labels and probabilities, a weight that is not positive, or a
                sensor_origin that is not 3 finite numbers.
        """
        points = as_numpy(points, "points")
        if labels is not None:
            labels = self._label_map(as_numpy(labels, "labels"), "labels")
        if colors is not None:
            colors = check_color_values(as_numpy(colors, "colors"), "colors")
        T_world_from_sensor = returns = None
        if sensor_origin is not None:
            sensor_origin = as_numpy(sensor_origin, "sensor_origin").astype(np.float64)
            if sensor_origin.shape != (3,) or not np.all(np.isfinite(sensor_origin)):
                raise ValueError(f"sensor_origin must be 3 finite numbers (x, y, z), got {sensor_origin.tolist()}")
            T_world_from_sensor = np.eye(4)
            T_world_from_sensor[:3, 3] = sensor_origin
            returns = points - sensor_origin if len(points) else None
        return self._integrate(
            points,
            labels=labels,
            probabilities=probabilities,
            colors=colors,
            weight=weight,
            timestamp=timestamp,
            returns=returns,
            T_world_from_sensor=T_world_from_sensor,
        )

    def _label_map(self, labels: np.ndarray, name: str) -> np.ndarray:
        """Integer labels as int64 with every "no label" value (negative, ignore_label) -1."""
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{name} must hold integer labels, got {labels.dtype}")
        labels = labels.astype(np.int64)
        if self.ignore_label is not None:
            labels = np.where(labels == self.ignore_label, -1, labels)
        labels = np.where(labels < 0, -1, labels)
        if labels.size and labels.max() >= self.num_classes:
            raise ValueError(
                f"{name} labels must lie in [0, {self.num_classes}) (num_classes={self.num_classes}), "
                f"got a maximum of {labels.max()}"
            )
        return labels

    def _integrate(
        self,
        points,
        labels=None,
        probabilities=None,
        colors=None,
        *,
        weight=1.0,
        timestamp=None,
        returns=None,
        T_world_from_sensor=None,
        clear=None,
    ) -> int:
        """Fold one frame into the map, then clear free space and forget what the bounds drop.

        `returns` (M, 3) are all the frame's measurements (labelled or not) in the frame of
        the sensor (z up), `T_world_from_sensor` (4, 4) its pose, None when unknown; a
        camera frame gives `clear` instead of returns, a function of the frame's index that
        clears the free space its depth image saw.
        """
        if not weight > 0 or not np.isfinite(weight):
            raise ValueError(f"weight must be a positive finite number, got {weight}")
        if labels is not None:
            count = int(np.count_nonzero(labels >= 0))
        else:
            count = len(points)
        now = time.time() if timestamp is None else float(timestamp)
        with self._lock:
            frame = self.num_frames
            self.num_frames += 1
            self.latest_time = now if self.latest_time is None else max(self.latest_time, now)
            origin = None if T_world_from_sensor is None else np.asarray(T_world_from_sensor, np.float64)[:3, 3]
            if origin is not None:
                self.sensor_position = origin
            if count:
                self.map.integrate(
                    points,
                    probabilities=probabilities,
                    labels=labels,
                    colors=colors,
                    weight=weight,
                    frame=frame,
                    time=now,
                )
                self.num_points_added += count
            if self.clear_free_space and clear is not None:
                clear(frame)
            elif self.clear_free_space and origin is not None and returns is not None and len(returns):
                self.map.clear_free_space(returns, T_world_from_sensor, frame, self.clearing_resolution_degrees)
            if self.max_distance is not None or self.max_age_frames is not None or self.max_age_seconds is not None:
                self.map.forget(
                    origin=origin if self.max_distance is not None else None,
                    max_distance=self.max_distance,
                    min_frame=None if self.max_age_frames is None else self.num_frames - self.max_age_frames,
                    min_time=None if self.max_age_seconds is None else self.latest_time - self.max_age_seconds,
                )
        return count  # an empty frame (no valid depth, nothing in view) is not an error

    # ----- queries -------------------------------------------------------------------------
    def labels(self, points: ArrayLike) -> np.ndarray:
        """Fused labels at world points.

        Args:
            points: (N, 3) world-frame points.

        Returns:
            labels: (N,) int64 fused label of each point's voxel, -1 where never observed.
        """
        return self._query(points)[0]

    def probabilities(self, points: ArrayLike) -> np.ndarray:
        """Fused class distributions at world points.

        Args:
            points: (N, 3) world-frame points.

        Returns:
            probabilities: (N, C) float32, rows of zeros where never observed.
        """
        return self._query(points)[1]

    def query(self, points: ArrayLike) -> VoxelQuery:
        """Fused labels, distributions and whether each point's voxel was observed.

        Args:
            points: (N, 3) world-frame points (integers are read as metres).

        Returns:
            query: `pcseg.bridge.VoxelQuery` of numpy arrays: labels (N,) int64,
            probabilities (N, C) float32, known (N,) bool.

        Raises:
            ValueError: when `points` is not (N, 3).
        """
        return VoxelQuery(*self._query(points))

    def _query(self, points: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`query`'s labels, probabilities and known as numpy arrays."""
        points = as_numpy(points, "points")
        if not np.issubdtype(points.dtype, np.floating):
            points = points.astype(np.float64)
        # Torch in -> torch out on the input's (CPU) device, whatever device the map is on.
        points_t, _ = as_tensor(points, "points")
        with self._lock:
            labels, probabilities, known = self.map.query(points_t)
        return _cpu_numpy(labels), _cpu_numpy(probabilities), _cpu_numpy(known)

    def voxel_points(self) -> np.ndarray:
        """(V, 3) float64 mean position of the points in each occupied voxel."""
        with self._lock:
            return self.map.voxel_points()

    def voxel_labels(self) -> np.ndarray:
        """(V,) int64 fused label of each occupied voxel (rows of `voxel_points`)."""
        with self._lock:
            return self.map.voxel_labels()

    def voxel_probabilities(self) -> np.ndarray:
        """(V, C) float32 fused distribution of each occupied voxel."""
        with self._lock:
            return self.map.voxel_probabilities()

    def voxel_observations(self) -> np.ndarray:
        """(V,) float32 number of points integrated into each occupied voxel."""
        with self._lock:
            return self.map.voxel_observations()

    def voxel_counts(self) -> np.ndarray:
        """(V,) int32 number of frames that observed each occupied voxel (for planners)."""
        with self._lock:
            return self.map.voxel_counts()

    def voxel_entropy(self) -> np.ndarray:
        """(V,) float32 entropy in nats of each voxel's fused distribution (high: uncertain)."""
        with self._lock:
            return self.map.voxel_entropy()

    def voxel_colors(self) -> np.ndarray:
        """(V, 3) float32 mean RGB in [0, 1] per voxel, NaN where no colour was given."""
        with self._lock:
            return self.map.voxel_colors()

    # ----- saving --------------------------------------------------------------------------
    _SETTINGS = (
        "num_classes",
        "voxel_size",
        "mode",
        "ignore_label",
        "clear_free_space",
        "clearing_resolution_degrees",
        "max_distance",
        "max_age_frames",
        "max_age_seconds",
    )

    def save(self, path: str | Path) -> Path:
        """Save the whole Fuser (map, settings, frame counters) to resume mapping later.

        The write is atomic: a unique temporary file in the same folder, flushed and
        fsynced, then renamed over `path`; an interrupted save leaves the old file intact.

        Args:
            path: the file to write (any suffix; `.pt` by convention).

        Returns:
            path: `path` as a Path.
        """
        path = Path(path)
        with self._lock:
            state = {
                "format": "pcseg.Fuser",
                "version": self.FILE_VERSION,
                "settings": {name: getattr(self, name) for name in self._SETTINGS},
                "min_probability": self.map.min_probability,
                "palette": torch.from_numpy(np.ascontiguousarray(self.palette)),
                "num_frames": self.num_frames,
                "num_points_added": self.num_points_added,
                "sensor_position": None if self.sensor_position is None else torch.from_numpy(self.sensor_position),
                "latest_time": self.latest_time,
                "map": self.map.state_dict(),
            }
            with atomic_write(path) as handle:
                torch.save(state, handle)
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        num_classes: int | None = None,
        voxel_size: float | None = None,
        device: str | torch.device = "cpu",
    ) -> Fuser:
        """A Fuser saved by `save`, ready to add frames; queries answer exactly as before.

        Args:
            path: the file `save` wrote.
            num_classes: when given, the map must have this many classes.
            voxel_size: when given, the map must have this voxel size.
            device: where the loaded voxel map lives.

        Returns:
            fuser: the Fuser.

        Raises:
            ValueError: naming the file, when it is not a saved Fuser, was written by a
                pcseg with another file version, or has another class count or voxel size
                than asked for.
        """
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle / zip errors of a file that is no saved Fuser
            raise ValueError(f"{path} is not a saved pcseg Fuser: {error}") from error
        if not isinstance(state, dict) or state.get("format") != "pcseg.Fuser":
            raise ValueError(f"{path} is not a saved pcseg Fuser")
        if state.get("version") != cls.FILE_VERSION:
            raise ValueError(
                f"{path} is a Fuser file of version {state.get('version')!r}, written by another pcseg; "
                f"this pcseg reads version {cls.FILE_VERSION}"
            )
        settings = state["settings"]
        if num_classes is not None and settings["num_classes"] != num_classes:
            raise ValueError(f"{path} holds a map of {settings['num_classes']} classes, not num_classes={num_classes}")
        if voxel_size is not None and settings["voxel_size"] != voxel_size:
            raise ValueError(f"{path} holds a map of voxel_size={settings['voxel_size']}, not voxel_size={voxel_size}")
        fuser = cls(
            palette=state["palette"].numpy(), min_probability=state["min_probability"], device=device, **settings
        )
        try:
            fuser.map = VoxelLabelMap.from_state_dict(state["map"], device)
        except (KeyError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error
        fuser.num_frames = state["num_frames"]
        fuser.num_points_added = state["num_points_added"]
        position = state["sensor_position"]
        fuser.sensor_position = None if position is None else position.numpy()
        fuser.latest_time = state["latest_time"]
        return fuser

    # ----- export --------------------------------------------------------------------------
    def export(self, path: str | Path) -> Path:
        """Write the map to a .ply or .npz file.

        `.ply`: binary PLY, one vertex per voxel at its mean point position, coloured by
        fused label through `palette`, with `label` (int), `observations`, `count` and
        `entropy` (float) properties (open3d reads points and colours). `.npz`: arrays
        points (V, 3) float64, labels (V,) int64, probabilities (V, C) float32,
        observations (V,) float32, counts (V,) int32, entropy (V,) float32.

        Args:
            path: the file to write, ending in .ply or .npz.

        Returns:
            path: `path` as a Path.

        Raises:
            ValueError: when the map is empty or the suffix is neither .ply nor .npz.
        """
        path = Path(path)
        if self.num_voxels == 0:
            raise ValueError(f"nothing to export to {path}: no frame added any labelled point")
        suffix = path.suffix.lower()
        if suffix not in (".ply", ".npz"):
            raise ValueError(f"export path must end in .ply or .npz, got {path}")
        with self._lock:
            if suffix == ".ply":
                self.map.export_ply(path, self.palette)
            else:
                # a failed write (a full disk) keeps an earlier map file whole
                with atomic_write(path) as handle:
                    self._write_npz(handle)
        return path

    def _write_npz(self, handle) -> None:
        np.savez_compressed(
            handle,
            points=self.map.voxel_points(),
            labels=self.map.voxel_labels(),
            probabilities=self.map.voxel_probabilities(),
            observations=self.map.voxel_observations(),
            counts=self.map.voxel_counts(),
            entropy=self.map.voxel_entropy(),
        )


def _cpu_numpy(array: Array) -> np.ndarray:
    """A map query's result as numpy: the Fuser queries with CPU tensors, so it gets CPU tensors."""
    return array.numpy() if isinstance(array, torch.Tensor) else array


@functools.lru_cache(maxsize=4)
def _ray_lengths(camera: PinholeCamera) -> torch.Tensor:
    """(H, W) float32 distance from the camera centre to each pixel's ray at depth 1 (a
    pixel's range is its depth times this); 0 where a distorted camera's pixel has no ray."""
    rays = backproject_depth(np.ones((camera.height, camera.width), np.float32), camera, 1.0, 2.0)
    lengths = np.zeros((camera.height, camera.width), np.float32)
    lengths[rays.valid] = np.linalg.norm(rays.points, axis=1)
    return torch.from_numpy(lengths)


def _camera_from_calibration(calibration, segmentation_shape, camera_index: int) -> tuple[PinholeCamera, np.ndarray]:
    """(PinholeCamera, T_camera_from_lidar (4, 4)) for an image of `segmentation_shape` (..., H, W)."""
    height, width = segmentation_shape[-2:] if len(segmentation_shape) >= 2 else (0, 0)
    if isinstance(calibration, KittiCalibration):
        return calibration.camera(camera_index, width, height)
    if isinstance(calibration, (tuple, list)) and len(calibration) == 2 and isinstance(calibration[0], PinholeCamera):
        camera, T_camera_from_lidar = calibration
        return camera, check_pose(T_camera_from_lidar, "T_camera_from_lidar").numpy()
    raise TypeError(
        "calibration must be a pcseg.bridge.KittiCalibration or a pair (PinholeCamera, T_camera_from_lidar), "
        f"got {type(calibration).__name__}"
    )
