"""`Fuser`: multi-frame 2D -> 3D label fusion for robotics stacks.

A `Fuser` wraps one `pcseg.bridge.VoxelLabelMap` behind a numpy-in / numpy-out API: feed it
posed RGB-D frames or LiDAR scans with the 2D segmentation of a camera image, then ask for
the fused label of any 3D point or export the map as a coloured PLY.

    fuser = Fuser(num_classes=13, voxel_size=0.05, mode="bayes")
    for color, depth, scores, pose in frames:          # scores: (C, H, W) from a 2D network
        fuser.add_rgbd(color, depth, scores, camera, pose)
    labels = fuser.labels(points)                      # (N,) int64, -1 where never observed
    fuser.export("map.ply")

It is pcseg's one frame-level fusion API. Projection, occlusion and fusion are
`pcseg.bridge`'s (`backproject_depth`, `paint_points`, `VoxelLabelMap`, which integrates
world-frame points); this module adds the input conventions (depth units, ignored labels,
KITTI calibrations) and the folder reader behind `pcseg fuse` (`fuse_folder`, layout in its
docstring).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import torch

from pcseg.bridge.camera import KittiCalibration, PinholeCamera
from pcseg.bridge.checks import as_numpy, as_tensor, check_pose, check_segmentation
from pcseg.bridge.fusion import FUSION_MODES, VoxelLabelMap, VoxelQuery
from pcseg.bridge.projection import backproject_depth, paint_points
from pcseg.io import normalize_palette

__all__ = ["Fuser", "fuse_folder", "fuser_from_folder"]


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

    Raises:
        ValueError: on an unknown mode, a non-integer ignore_label or a bad palette.
    """

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
        self.num_frames = 0
        self.num_points_added = 0
        self._lock = threading.Lock()

    @property
    def num_voxels(self) -> int:
        """Number of occupied voxels in the map."""
        return self.map.num_voxels

    # ----- adding frames -------------------------------------------------------------------
    def add_rgbd(
        self,
        color,
        depth,
        segmentation,
        camera: PinholeCamera,
        pose=None,
        *,
        depth_scale: float | None = None,
        depth_trunc: float = 10.0,
        scores: str = "probabilities",
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
        if is_label_map:
            segmentation = self._label_map(segmentation, "segmentation")
        backprojected = backproject_depth(depth, camera, depth_scale, depth_trunc, pose)
        colors = None if color is None else backprojected.take(color)
        points = backprojected.points
        if is_label_map:
            return self._integrate(points, labels=backprojected.take(segmentation), colors=colors)
        # A torch view keeps the (N, C) gather a transposed view: no contiguous copy.
        segmentation_t, _ = as_tensor(segmentation, "segmentation")
        probabilities = backprojected.take(segmentation_t, channels_first=True)
        if scores == "logits":
            probabilities = torch.softmax(probabilities.to(torch.float32), dim=1)
        return self._integrate(points, probabilities=probabilities, colors=colors)

    def add_lidar(
        self,
        points,
        segmentation,
        calibration,
        pose=None,
        *,
        camera_index: int = 2,
        scores: str = "probabilities",
        colors=None,
        occlusion: str = "zbuffer",
        zbuffer_radius: int = 1,
        sampling: str = "nearest",
        depth_image=None,
        occlusion_tolerance: float = 0.1,
        occlusion_tolerance_relative: float = 0.01,
    ) -> int:
        """Paint one LiDAR scan from a camera's 2D segmentation and integrate the points
        that camera sees (in the image, in front of it, not occluded).

        Any point cloud works the same way (e.g. a map painted from a camera: calibration
        (camera, T_camera_from_map)).

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

        Returns:
            added: the number of points integrated (visible and labelled).

        Raises:
            ValueError: on points that are not (N, 3) / (N, 4), a bad pose, or a bad
                segmentation or painting option.
            TypeError: on a calibration of another type.
        """
        points = as_numpy(points, "points")
        if points.ndim != 2 or points.shape[1] not in (3, 4):
            raise ValueError(f"points must be (N, 3) or (N, 4), got shape {points.shape}")
        if pose is not None:
            pose = check_pose(pose, "pose").numpy()
        if len(points) == 0:
            return self._integrate(points, labels=np.zeros(0, np.int64))
        points = np.ascontiguousarray(points[:, :3])
        segmentation = as_numpy(segmentation, "segmentation")
        camera, T_camera_from_lidar = _camera_from_calibration(calibration, segmentation.shape, camera_index)
        is_label_map = check_segmentation(segmentation, camera, scores=scores, num_classes=self.num_classes)
        if colors is not None:
            colors = as_numpy(colors, "colors")
            if colors.shape != (len(points), 3):
                raise ValueError(f"colors must be (N, 3) with N={len(points)}, got {colors.shape}")
        options = dict(occlusion=occlusion, zbuffer_radius=zbuffer_radius, sampling=sampling, depth_image=depth_image,
                       occlusion_tolerance=occlusion_tolerance,
                       occlusion_tolerance_relative=occlusion_tolerance_relative)
        if is_label_map:
            labels_image = self._label_map(segmentation, "segmentation")
            # paint_points wants labels in [0, C): "no label" pixels become an extra class C,
            # whose points are then dropped.
            unlabelled = labels_image < 0
            painted = paint_points(
                points, np.where(unlabelled, self.num_classes, labels_image), camera, T_camera_from_lidar,
                num_classes=self.num_classes + 1, **options,
            )
            keep = painted.visible & (painted.labels < self.num_classes)
            labels, probabilities = painted.labels[keep], None
        else:
            painted = paint_points(points, segmentation, camera, T_camera_from_lidar, scores=scores, **options)
            keep = painted.visible
            labels, probabilities = None, painted.probabilities[keep]
        world = points[keep]
        if pose is not None:
            world = (world @ pose[:3, :3].T + pose[:3, 3]).astype(world.dtype)
        return self._integrate(world, probabilities=probabilities, labels=labels,
                               colors=None if colors is None else colors[keep])

    def add_points(self, points, labels=None, probabilities=None, colors=None) -> int:
        """Integrate already-labelled world-frame points; give labels or probabilities.

        Args:
            points: (N, 3) float world-frame points.
            labels: (N,) int labels in [0, C) (negatives and `ignore_label` = no label).
            probabilities: (N, C) float class probabilities.
            colors: optional (N, 3) colours (uint8 or float in [0, 1]).

        Returns:
            added: the number of points integrated (those with a label).

        Raises:
            ValueError: on shapes that do not match, labels >= C, or both or neither of
                labels and probabilities.
        """
        points = as_numpy(points, "points")
        if labels is not None:
            labels = self._label_map(as_numpy(labels, "labels"), "labels")
        return self._integrate(points, labels=labels, probabilities=probabilities, colors=colors)

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

    def _integrate(self, points, labels=None, probabilities=None, colors=None) -> int:
        if labels is not None:
            count = int(np.count_nonzero(labels >= 0))
        else:
            count = len(points)
        with self._lock:
            self.num_frames += 1
            if count == 0:
                return 0  # an empty frame (no valid depth, nothing in view) is not an error
            self.map.integrate(points, probabilities=probabilities, labels=labels, colors=colors)
            self.num_points_added += count
        return count

    # ----- queries -------------------------------------------------------------------------
    def labels(self, points) -> np.ndarray:
        """Fused labels at world points.

        Args:
            points: (N, 3) world-frame points.

        Returns:
            labels: (N,) int64 fused label of each point's voxel, -1 where never observed.
        """
        return self.query(points).labels

    def probabilities(self, points) -> np.ndarray:
        """Fused class distributions at world points.

        Args:
            points: (N, 3) world-frame points.

        Returns:
            probabilities: (N, C) float32, rows of zeros where never observed.
        """
        return self.query(points).probabilities

    def query(self, points) -> VoxelQuery:
        """Fused labels, distributions and whether each point's voxel was observed.

        Args:
            points: (N, 3) world-frame points (integers are read as metres).

        Returns:
            query: `pcseg.bridge.VoxelQuery` of numpy arrays: labels (N,) int64,
            probabilities (N, C) float32, known (N,) bool.

        Raises:
            ValueError: when `points` is not (N, 3).
        """
        points = as_numpy(points, "points")
        if not np.issubdtype(points.dtype, np.floating):
            points = points.astype(np.float64)
        # Torch in -> torch out on the input's (CPU) device, whatever device the map is on.
        points_t, _ = as_tensor(points, "points")
        with self._lock:
            result = self.map.query(points_t)
        return VoxelQuery(*(tensor.numpy() for tensor in result))

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

    def voxel_colors(self) -> np.ndarray:
        """(V, 3) float32 mean RGB in [0, 1] per voxel, NaN where no colour was given."""
        with self._lock:
            return self.map.voxel_colors()

    # ----- export --------------------------------------------------------------------------
    def export(self, path: str | Path) -> Path:
        """Write the map to a .ply or .npz file.

        `.ply`: binary PLY, one vertex per voxel at its mean point position, coloured by
        fused label through `palette`, with `label` (int) and `observations` (float)
        properties (open3d reads points and colours). `.npz`: arrays points (V, 3) float64,
        labels (V,) int64, probabilities (V, C) float32, observations (V,) float32.

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
                np.savez_compressed(
                    path, points=self.map.voxel_points(), labels=self.map.voxel_labels(),
                    probabilities=self.map.voxel_probabilities(), observations=self.map.voxel_observations(),
                )
        return path


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


# ----- pcseg fuse: a folder of frames -> a fused labelled map ---------------------------------
MANIFEST_NAME = "frames.json"
MANIFEST_NAMES = (MANIFEST_NAME, "frames.yaml", "frames.yml")  # the same keys in YAML work too


def fuse_folder(
    input_dir: str | Path,
    out_path: str | Path,
    *,
    num_classes: int | None = None,
    voxel_size: float | None = None,
    mode: str | None = None,
    progress: bool = True,
) -> dict:
    """`pcseg fuse`: fuse a folder of posed RGB-D and/or LiDAR + camera frames and their 2D
    segmentations into one labelled map, written to `out_path` (.ply or .npz, see
    `Fuser.export`). The folder layout is `fuser_from_folder`'s.

    Returns a summary dict: out_path, frames, points_integrated, voxels, label_counts
    (voxels per class), num_classes, voxel_size, mode, class_names (or None).
    """
    fuser, manifest = fuser_from_folder(input_dir, num_classes=num_classes, voxel_size=voxel_size,
                                        mode=mode, progress=progress)
    out_path = fuser.export(out_path)
    return {
        "out_path": str(out_path),
        "frames": fuser.num_frames,
        "points_integrated": fuser.num_points_added,
        "voxels": fuser.num_voxels,
        "label_counts": np.bincount(fuser.voxel_labels(), minlength=fuser.num_classes).tolist(),
        "num_classes": fuser.num_classes,
        "voxel_size": fuser.voxel_size,
        "mode": fuser.mode,
        "class_names": manifest.get("class_names"),
    }


def fuser_from_folder(
    input_dir: str | Path,
    *,
    num_classes: int | None = None,
    voxel_size: float | None = None,
    mode: str | None = None,
    progress: bool = False,
) -> tuple[Fuser, dict]:
    """Read a folder of frames (layout below) into a new `Fuser`; returns (fuser, manifest).

    Folder layout: `input_dir/frames.json` (or the same keys in `frames.yaml`) lists the
    frames; file paths in it are relative to `input_dir` (absolute paths are used as they
    are). Example (every key not marked optional is required)::

        {
          "num_classes": 13,
          "voxel_size": 0.05,                # optional, default 0.05 (metres)
          "mode": "bayes",                   # optional: bayes | mean | vote
          "ignore_label": 0,                 # optional: label-map value meaning "no label"
          "class_names": ["ceiling", ...],   # optional, written into the summary
          "palette": [[0, 255, 0], ...],     # optional (C, 3) uint8 export colours
          "camera": {"fx": 120, "fy": 120, "cx": 79.5, "cy": 59.5},
                                             # default RGB-D camera (0-based pixel centres;
                                             # add "one_based": true for MATLAB intrinsics
                                             # such as SUN RGB-D / NYU); width and height
                                             # come from the depth image
          "depth_scale": 1000,               # optional; default 1000 for integer depth
                                             # images, 1 for float (.npy metres)
          "depth_trunc": 10.0,               # optional, metres
          "scores": "probabilities",         # optional: probabilities | logits (float .npy)
          "frames": [
            {"type": "rgbd",
             "depth": "depth/000000.png",    # uint16 PNG (millimetres) or (H, W) .npy
             "segmentation": "seg/000000.png",   # (H, W) label PNG / .npy, or (C, H, W) float .npy
             "pose": "pose/000000.txt",      # 4x4 T_world_from_camera: text file or nested list
             "color": "color/000000.png",    # optional
             "camera": {...}},               # optional, overrides the default camera
            {"type": "sunrgbd",              # a SUN RGB-D frame in the released layout
             "frame": "sunrgbd/<frame folder>",  # image/, depth/ (bit-rotated mm), intrinsics.txt,
                                             # extrinsics/ (read by pcseg.data.sunrgbd); the
                                             # world frame is its upright frame (z up)
             "segmentation": "seg/frame.png"},   # e.g. 37-class labels with "ignore_label": 0
            {"type": "lidar",
             "points": "velodyne/000000.bin",    # KITTI float32 (N, 4) .bin, or (N, 3+) .npy
             "calib": "calib/000000.txt",    # KITTI calib file (P0..P3, R0_rect, Tr_velo_to_cam)
             "segmentation": "seg/000000.npy",   # of camera `camera_index`'s image
             "camera_index": 2,              # optional, default 2 (image_2)
             "pose": "pose/000000.txt"}      # optional 4x4 T_world_from_lidar, default identity
          ]
        }

    Per-frame "depth_scale", "depth_trunc" and "scores" override the top-level ones.
    num_classes / voxel_size / mode arguments, when given, override the manifest.
    progress: show a tqdm bar over the frames.
    """
    from tqdm import tqdm

    input_dir = Path(input_dir)
    manifest_path = _find_manifest(input_dir)
    manifest = _read_manifest(manifest_path)
    unknown = set(manifest) - _MANIFEST_KEYS
    if unknown:
        raise ValueError(f"{manifest_path}: unknown keys {sorted(unknown)}; valid keys are {sorted(_MANIFEST_KEYS)}")
    num_classes = num_classes if num_classes is not None else manifest.get("num_classes")
    if num_classes is None:
        raise ValueError(f"{manifest_path}: missing 'num_classes' (or pass num_classes=)")
    frames = manifest.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{manifest_path}: 'frames' must be a non-empty list")
    fuser = Fuser(
        int(num_classes),
        float(voxel_size if voxel_size is not None else manifest.get("voxel_size", 0.05)),
        mode if mode is not None else manifest.get("mode", "bayes"),
        ignore_label=manifest.get("ignore_label"),
        palette=manifest.get("palette"),
    )
    for index, frame in enumerate(tqdm(frames, desc="fusing frames", unit="frame", disable=not progress)):
        where = f"{manifest_path} frames[{index}]"
        if not isinstance(frame, dict):
            raise ValueError(f"{where}: expected an object, got {type(frame).__name__}")
        kind = frame.get("type")
        if kind == "rgbd":
            _add_rgbd_frame(fuser, input_dir, manifest, frame, where)
        elif kind == "lidar":
            _add_lidar_frame(fuser, input_dir, manifest, frame, where)
        elif kind == "sunrgbd":
            _add_sunrgbd_frame(fuser, input_dir, manifest, frame, where)
        else:
            raise ValueError(f"{where}: 'type' must be 'rgbd', 'sunrgbd' or 'lidar', got {kind!r}")
    return fuser, manifest


def _find_manifest(input_dir: Path) -> Path:
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {input_dir}")
    found = [input_dir / name for name in MANIFEST_NAMES if (input_dir / name).is_file()]
    if not found:
        raise FileNotFoundError(f"{input_dir / MANIFEST_NAME} not found: `pcseg fuse` needs a manifest listing the "
                                f"frames, one of {list(MANIFEST_NAMES)} (see pcseg.fuser.fuser_from_folder)")
    if len(found) > 1:
        raise ValueError(f"{input_dir} holds both {found[0].name} and {found[1].name}: keep one manifest")
    return found[0]


def _read_manifest(path: Path) -> dict:
    text = path.read_text()
    if path.suffix == ".json":
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON: {error}") from error
    else:
        import yaml

        try:
            manifest = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a mapping of keys at the top level, got {type(manifest).__name__}")
    return manifest


_MANIFEST_KEYS = {
    "num_classes", "voxel_size", "mode", "ignore_label", "class_names", "palette", "camera",
    "depth_scale", "depth_trunc", "scores", "frames",
}
_RGBD_KEYS = {"type", "depth", "segmentation", "pose", "color", "camera", "depth_scale", "depth_trunc", "scores"}
_SUNRGBD_KEYS = {"type", "frame", "segmentation", "depth_trunc", "scores"}
_LIDAR_KEYS = {"type", "points", "calib", "segmentation", "camera_index", "pose", "scores"}


def _check_frame_keys(frame: dict, valid: set, where: str) -> None:
    unknown = set(frame) - valid
    if unknown:
        raise ValueError(
            f"{where}: unknown keys {sorted(unknown)}; valid keys for a {frame['type']} frame are {sorted(valid)}"
        )
    if "segmentation" not in frame:
        raise ValueError(f"{where}: missing 'segmentation'")


def _add_rgbd_frame(fuser: Fuser, root: Path, manifest: dict, frame: dict, where: str) -> None:
    _check_frame_keys(frame, _RGBD_KEYS, where)
    for key in ("depth", "pose"):
        if key not in frame:
            raise ValueError(f"{where}: an rgbd frame needs '{key}'")
    depth = _read_array(root / frame["depth"], f"{where} depth")
    if depth.ndim != 2:
        raise ValueError(
            f"{where}: depth {frame['depth']} must be a single-channel (H, W) image, got shape {depth.shape}"
        )
    camera_spec = frame.get("camera", manifest.get("camera"))
    if camera_spec is None:
        raise ValueError(f"{where}: no 'camera' in the frame nor at the top level of the manifest")
    camera = _camera_from_spec(camera_spec, depth.shape, where)
    color = None
    if "color" in frame:
        color = _read_array(root / frame["color"], f"{where} color", mode="RGB")
    segmentation = _read_array(root / frame["segmentation"], f"{where} segmentation")
    pose = _read_pose(root, frame["pose"], f"{where} pose")
    try:
        fuser.add_rgbd(
            color, depth, segmentation, camera, pose,
            depth_scale=frame.get("depth_scale", manifest.get("depth_scale")),
            depth_trunc=float(frame.get("depth_trunc", manifest.get("depth_trunc", 10.0))),
            scores=frame.get("scores", manifest.get("scores", "probabilities")),
        )
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error


def _add_sunrgbd_frame(fuser: Fuser, root: Path, manifest: dict, frame: dict, where: str) -> None:
    from pcseg.data.sunrgbd import read_sunrgbd_frame

    _check_frame_keys(frame, _SUNRGBD_KEYS, where)
    if "frame" not in frame:
        raise ValueError(f"{where}: a sunrgbd frame needs 'frame' (the frame's folder)")
    depth_trunc = float(frame.get("depth_trunc", manifest.get("depth_trunc", 10.0)))
    sun = read_sunrgbd_frame(root / frame["frame"], max_depth=depth_trunc)
    segmentation = _read_array(root / frame["segmentation"], f"{where} segmentation")
    try:
        fuser.add_rgbd(
            sun["image"], sun["depth"], segmentation, sun["camera"], sun["T_world_from_camera"],
            depth_scale=1.0, depth_trunc=depth_trunc,
            scores=frame.get("scores", manifest.get("scores", "probabilities")),
        )
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error


def _add_lidar_frame(fuser: Fuser, root: Path, manifest: dict, frame: dict, where: str) -> None:
    _check_frame_keys(frame, _LIDAR_KEYS, where)
    for key in ("points", "calib"):
        if key not in frame:
            raise ValueError(f"{where}: a lidar frame needs '{key}'")
    points_path = root / frame["points"]
    if points_path.suffix == ".bin":
        from pcseg.data.kitti import read_velodyne_bin

        points = read_velodyne_bin(points_path)
    else:
        points = _read_array(points_path, f"{where} points")
        if points.ndim != 2 or points.shape[1] < 3:
            raise ValueError(f"{where}: points {frame['points']} must be (N, 3+), got shape {points.shape}")
        points = points[:, :3].astype(np.float32)
    calib_path = root / frame["calib"]
    if not calib_path.is_file():
        raise FileNotFoundError(f"{where}: calibration file not found: {calib_path}")
    calibration = KittiCalibration.from_file(calib_path)
    segmentation = _read_array(root / frame["segmentation"], f"{where} segmentation")
    pose = _read_pose(root, frame["pose"], f"{where} pose") if "pose" in frame else None
    try:
        fuser.add_lidar(
            points, segmentation, calibration, pose,
            camera_index=int(frame.get("camera_index", 2)),
            scores=frame.get("scores", manifest.get("scores", "probabilities")),
        )
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error


def _read_array(path: Path, what: str, mode: str | None = None) -> np.ndarray:
    """An image file (PNG / JPEG ..., via PIL) or a .npy array."""
    if not path.is_file():
        raise FileNotFoundError(f"{what}: file not found: {path}")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    from pcseg.data.rgbd import read_image

    return read_image(path, mode)


def _read_pose(root: Path, spec, what: str) -> np.ndarray:
    """A 4x4 pose from a nested list or a text file of 16 (or 12, a 3x4) numbers."""
    if isinstance(spec, str):
        path = root / spec
        if not path.is_file():
            raise FileNotFoundError(f"{what}: file not found: {path}")
        try:
            values = np.loadtxt(path, dtype=np.float64).ravel()
        except ValueError as error:
            raise ValueError(f"{what}: cannot read {path}: {error}") from error
    else:
        values = np.asarray(spec, dtype=np.float64).ravel()
    if values.size == 12:
        values = np.concatenate([values, [0.0, 0.0, 0.0, 1.0]])
    if values.size != 16:
        raise ValueError(f"{what}: expected a 4x4 (or 3x4) matrix, got {values.size} numbers")
    pose = values.reshape(4, 4)
    if not np.isfinite(pose).all():
        raise ValueError(f"{what}: non-finite entries in {pose.tolist()}")
    return pose


def _camera_from_spec(spec, image_shape, where: str) -> PinholeCamera:
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: 'camera' must be an object with fx, fy, cx, cy, got {spec!r}")
    unknown = set(spec) - {"fx", "fy", "cx", "cy", "width", "height", "one_based"}
    missing = {"fx", "fy", "cx", "cy"} - set(spec)
    if unknown or missing:
        raise ValueError(f"{where}: camera keys must be fx, fy, cx, cy (+ optional width, height, one_based); "
                         f"unknown {sorted(unknown)}, missing {sorted(missing)}")
    height, width = image_shape
    if spec.get("width", width) != width or spec.get("height", height) != height:
        raise ValueError(
            f"{where}: camera is {spec.get('width')}x{spec.get('height')} but the depth image is {width}x{height}"
        )
    constructor = PinholeCamera.from_one_based if spec.get("one_based", False) else PinholeCamera
    return constructor(float(spec["fx"]), float(spec["fy"]), float(spec["cx"]), float(spec["cy"]), width, height)
