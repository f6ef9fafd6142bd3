"""The `pcseg fuse` folder format: posed frames and their 2D segmentations on disk.

`fuse_folder` (the `pcseg fuse` command) and `fuser_from_folder` read a folder into a
`pcseg.Fuser`; `write_frames_folder` writes posed RGB-D frames and label maps as one.

Folder layout: `input_dir/frames.json` (or the same keys in `frames.yaml`) lists the frames;
file paths in it are relative to `input_dir` (absolute paths are used as they are).
Example (every key not marked optional is required)::

    {
      "num_classes": 13,
      "voxel_size": 0.05,                # optional, default 0.05 (metres)
      "mode": "bayes",                   # optional: bayes | mean | vote
      "ignore_label": 0,                 # optional: label-map value meaning "no label"
      "class_names": ["ceiling", ...],   # optional, written into the summary
      "palette": [[0, 255, 0], ...],     # optional (C, 3) export colours (0..255 or [0, 1])
      "camera": {"fx": 120, "fy": 120, "cx": 79.5, "cy": 59.5},
                                         # default RGB-D camera (0-based pixel centres;
                                         # add "one_based": true for MATLAB intrinsics
                                         # such as SUN RGB-D / NYU); width and height
                                         # come from the depth image; optional lens
                                         # "distortion": [k1, k2, p1, p2, k3] and
                                         # "distortion_model" (ROS CameraInfo names)
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
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pcseg.bridge.camera import KittiCalibration, PinholeCamera
from pcseg.fuser import Fuser
from pcseg.io import normalize_palette
from pcseg.utils.atomic import atomic_write_file
from pcseg.utils.progress import progress as progress_over

__all__ = ["MANIFEST_NAME", "MANIFEST_NAMES", "fuse_folder", "fuser_from_folder", "write_frames_folder"]

MANIFEST_NAME = "frames.json"
MANIFEST_NAMES = (MANIFEST_NAME, "frames.yaml", "frames.yml")  # the same keys in YAML work too

_MANIFEST_KEYS = {
    "num_classes",
    "voxel_size",
    "mode",
    "ignore_label",
    "class_names",
    "palette",
    "camera",
    "depth_scale",
    "depth_trunc",
    "scores",
    "frames",
}
_RGBD_KEYS = {"type", "depth", "segmentation", "pose", "color", "camera", "depth_scale", "depth_trunc", "scores"}
_SUNRGBD_KEYS = {"type", "frame", "segmentation", "depth_trunc", "scores"}
_LIDAR_KEYS = {"type", "points", "calib", "segmentation", "camera_index", "pose", "scores"}


# ----- reading -----------------------------------------------------------------------------
def fuse_folder(
    input_dir: str | Path,
    out_path: str | Path,
    *,
    num_classes: int | None = None,
    voxel_size: float | None = None,
    mode: str | None = None,
    progress: bool = True,
) -> dict:
    """`pcseg fuse`: fuse a folder of frames into one labelled map and write it.

    Args:
        input_dir: the folder (layout in the module docstring).
        out_path: the map to write, .ply or .npz (see `Fuser.export`).
        num_classes: overrides the manifest's, when given.
        voxel_size: overrides the manifest's, when given (metres).
        mode: overrides the manifest's, when given ("bayes", "mean", "vote").
        progress: report progress over the frames.

    Returns:
        summary: dict of out_path, frames, points_integrated, voxels, label_counts (voxels
        per class), num_classes, voxel_size, mode, class_names (or None).

    Raises:
        FileNotFoundError: when the folder, its manifest or a file it names is missing.
        ValueError: on a bad manifest or frame; the message names the manifest and frame.
    """
    fuser, manifest = fuser_from_folder(
        input_dir, num_classes=num_classes, voxel_size=voxel_size, mode=mode, progress=progress
    )
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
    """Read a folder of frames (layout in the module docstring) into a new `Fuser`.

    Args:
        input_dir: the folder.
        num_classes: overrides the manifest's, when given.
        voxel_size: overrides the manifest's, when given (metres).
        mode: overrides the manifest's, when given ("bayes", "mean", "vote").
        progress: report progress over the frames.

    Returns:
        (fuser, manifest): the Fuser holding every frame, and the manifest as read.

    Raises:
        FileNotFoundError: when the folder, its manifest or a file it names is missing.
        ValueError: on a bad manifest or frame; the message names the manifest and frame.
    """
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
    for index, frame in enumerate(progress_over(frames, desc="fusing frames", unit="frame", enabled=progress)):
        where = f"{manifest_path} frames[{index}]"
        try:
            _add_frame(fuser, input_dir, manifest, frame)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{where}: {error}") from error
    return fuser, manifest


def _find_manifest(input_dir: Path) -> Path:
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {input_dir}")
    found = [input_dir / name for name in MANIFEST_NAMES if (input_dir / name).is_file()]
    if not found:
        raise FileNotFoundError(
            f"{input_dir / MANIFEST_NAME} not found: `pcseg fuse` needs a manifest listing the "
            f"frames, one of {list(MANIFEST_NAMES)} (see pcseg.fuse_folder)"
        )
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


def _add_frame(fuser: Fuser, root: Path, manifest: dict, frame) -> None:
    """Read one manifest entry and add it to `fuser` (errors say what, the caller says where)."""
    if not isinstance(frame, dict):
        raise ValueError(f"expected an object, got {type(frame).__name__}")
    kind = frame.get("type")
    if kind not in _FRAME_TYPES:
        raise ValueError(f"'type' must be 'rgbd', 'sunrgbd' or 'lidar', got {kind!r}")
    valid, required, add = _FRAME_TYPES[kind]
    unknown = set(frame) - valid
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; valid keys for a {kind} frame are {sorted(valid)}")
    missing = [key for key in required if key not in frame]
    if missing:
        raise ValueError(f"missing {missing}: a {kind} frame needs {list(required)}")
    add(fuser, root, manifest, frame)


def _option(manifest: dict, frame: dict, key: str, default):
    """A frame's own value of `key`, else the manifest's, else `default`."""
    return frame.get(key, manifest.get(key, default))


def _add_rgbd_frame(fuser: Fuser, root: Path, manifest: dict, frame: dict) -> None:
    depth = _read_array(root / frame["depth"], "depth")
    if depth.ndim != 2:
        raise ValueError(f"depth {frame['depth']} must be a single-channel (H, W) image, got shape {depth.shape}")
    camera_spec = _option(manifest, frame, "camera", None)
    if camera_spec is None:
        raise ValueError("no 'camera' in the frame nor at the top level of the manifest")
    camera = _camera_from_spec(camera_spec, depth.shape)
    color = _read_array(root / frame["color"], "color", mode="RGB") if "color" in frame else None
    segmentation = _read_array(root / frame["segmentation"], "segmentation")
    pose = _read_pose(root, frame["pose"], "pose")
    fuser.add_rgbd(
        color,
        depth,
        segmentation,
        camera,
        pose,
        depth_scale=_option(manifest, frame, "depth_scale", None),
        depth_trunc=float(_option(manifest, frame, "depth_trunc", 10.0)),
        scores=_option(manifest, frame, "scores", "probabilities"),
    )


def _add_sunrgbd_frame(fuser: Fuser, root: Path, manifest: dict, frame: dict) -> None:
    from pcseg.data.sunrgbd import read_sunrgbd_frame

    depth_trunc = float(_option(manifest, frame, "depth_trunc", 10.0))
    sun = read_sunrgbd_frame(root / frame["frame"], max_depth=depth_trunc)
    segmentation = _read_array(root / frame["segmentation"], "segmentation")
    fuser.add_rgbd(
        sun["image"],
        sun["depth"],
        segmentation,
        sun["camera"],
        sun["T_world_from_camera"],
        depth_scale=1.0,
        depth_trunc=depth_trunc,
        scores=_option(manifest, frame, "scores", "probabilities"),
    )


def _add_lidar_frame(fuser: Fuser, root: Path, manifest: dict, frame: dict) -> None:
    points = _read_lidar_points(root / frame["points"])
    calib_path = root / frame["calib"]
    if not calib_path.is_file():
        raise FileNotFoundError(f"calibration file not found: {calib_path}")
    calibration = KittiCalibration.from_file(calib_path)
    segmentation = _read_array(root / frame["segmentation"], "segmentation")
    pose = _read_pose(root, frame["pose"], "pose") if "pose" in frame else None
    fuser.add_lidar(
        points,
        segmentation,
        calibration,
        pose,
        camera_index=int(frame.get("camera_index", 2)),
        scores=_option(manifest, frame, "scores", "probabilities"),
    )


# type -> (valid keys, required keys, reader)
_FRAME_TYPES = {
    "rgbd": (_RGBD_KEYS, ("depth", "segmentation", "pose"), _add_rgbd_frame),
    "sunrgbd": (_SUNRGBD_KEYS, ("frame", "segmentation"), _add_sunrgbd_frame),
    "lidar": (_LIDAR_KEYS, ("points", "calib", "segmentation"), _add_lidar_frame),
}


def _read_array(path: Path, what: str, mode: str | None = None) -> np.ndarray:
    """An image file (PNG / JPEG ..., via PIL) or a .npy array."""
    if not path.is_file():
        raise FileNotFoundError(f"{what}: file not found: {path}")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    from pcseg.data.rgbd import read_image

    return read_image(path, mode)


def _read_lidar_points(path: Path) -> np.ndarray:
    """(N, 3+) float32 points from a KITTI .bin or an (N, 3+) .npy."""
    if path.suffix == ".bin":
        from pcseg.data.kitti import read_velodyne_bin

        return read_velodyne_bin(path)
    points = _read_array(path, "points")
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"points {path.name} must be (N, 3+), got shape {points.shape}")
    return points[:, :3].astype(np.float32)


def _read_pose(root: Path, spec, what: str) -> np.ndarray:
    """A (4, 4) float64 pose from a nested list or a text file of 16 (or 12, a 3x4) numbers."""
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
    return values.reshape(4, 4)  # the Fuser checks it is a rigid pose


def _camera_from_spec(spec, image_shape) -> PinholeCamera:
    if not isinstance(spec, dict):
        raise ValueError(f"'camera' must be an object with fx, fy, cx, cy, got {spec!r}")
    unknown = set(spec) - {"fx", "fy", "cx", "cy", "width", "height", "one_based", "distortion", "distortion_model"}
    missing = {"fx", "fy", "cx", "cy"} - set(spec)
    if unknown or missing:
        raise ValueError(
            f"camera keys must be fx, fy, cx, cy (+ optional width, height, one_based, distortion, "
            f"distortion_model); unknown {sorted(unknown)}, missing {sorted(missing)}"
        )
    height, width = image_shape
    if spec.get("width", width) != width or spec.get("height", height) != height:
        raise ValueError(f"camera is {spec.get('width')}x{spec.get('height')} but the depth image is {width}x{height}")
    shift = 1.0 if spec.get("one_based", False) else 0.0
    return PinholeCamera(
        float(spec["fx"]),
        float(spec["fy"]),
        float(spec["cx"]) - shift,
        float(spec["cy"]) - shift,
        width,
        height,
        tuple(spec.get("distortion", ())),
        spec.get("distortion_model", "plumb_bob"),
    )


# ----- writing -----------------------------------------------------------------------------
def write_frames_folder(
    folder: str | Path,
    frames: Sequence[dict],
    camera: PinholeCamera,
    *,
    num_classes: int,
    voxel_size: float = 0.05,
    mode: str = "bayes",
    class_names: Sequence[str] | None = None,
    palette=None,
    depth_trunc: float = 10.0,
) -> Path:
    """Write posed RGB-D frames and their 2D label maps as a `pcseg fuse` folder.

    The folder gets depth/ (uint16 millimetre PNGs), color/ (PNGs, for frames that have
    colour), segmentation/ (label PNGs: uint8 with 255 = no label, uint16 with 65535 when
    C >= 255), pose/ (4x4 text files) and frames.json, one key and one frame per line.

    Args:
        folder: the folder to write (created; existing files of the same names are replaced).
        frames: one dict per frame: "depth" (H, W) float metres (0 or non-finite = no
            depth), "segmentation" (H, W) int labels in [0, C) (negative = no label),
            "pose" (4, 4) T_world_from_camera, optional "color" (H, W, 3) uint8.
        camera: the frames' PinholeCamera, W x H.
        num_classes: C.
        voxel_size: the map's voxel edge in metres, written into the manifest.
        mode: the fusion mode written into the manifest.
        class_names: optional C names, written into the manifest.
        palette: optional (C, 3) export colours (uint8 or float in [0, 1]).
        depth_trunc: metres from which `pcseg fuse` drops depth pixels.

    Returns:
        folder: `folder` as a Path.

    Raises:
        ValueError: on a frame without one of the keys, shapes other than the camera's,
            labels >= C, or depth beyond what a uint16 millimetre PNG holds.
    """
    from PIL import Image

    folder = Path(folder)
    no_label = 255 if num_classes < 255 else 65535
    label_dtype = np.uint8 if no_label == 255 else np.uint16
    for sub in ("depth", "color", "segmentation", "pose"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    entries = []
    for index, frame in enumerate(frames):
        where = f"frames[{index}]"
        missing = {"depth", "segmentation", "pose"} - set(frame)
        if missing:
            raise ValueError(f"{where}: missing {sorted(missing)}")
        name = f"{index:06d}"
        depth = np.asarray(frame["depth"], dtype=np.float64)
        labels = np.asarray(frame["segmentation"])
        camera.check_image_shape(depth.shape, f"{where} depth")
        camera.check_image_shape(labels.shape, f"{where} segmentation")
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) or labels.max(initial=-1) >= num_classes:
            raise ValueError(f"{where}: segmentation must be (H, W) integer labels below num_classes={num_classes}")
        depth_mm = np.round(np.where(np.isfinite(depth) & (depth > 0), depth, 0.0) * 1000.0)
        if depth_mm.max(initial=0.0) > np.iinfo(np.uint16).max:
            raise ValueError(
                f"{where}: depth up to {depth_mm.max() / 1000.0:.3f} m does not fit a uint16 "
                "millimetre PNG (at most 65.535 m)"
            )
        Image.fromarray(depth_mm.astype(np.uint16)).save(folder / "depth" / f"{name}.png")
        Image.fromarray(np.where(labels < 0, no_label, labels).astype(label_dtype)).save(
            folder / "segmentation" / f"{name}.png"
        )
        np.savetxt(folder / "pose" / f"{name}.txt", np.asarray(frame["pose"], dtype=np.float64), fmt="%.9f")
        entry = {"type": "rgbd", "depth": f"depth/{name}.png"}
        if frame.get("color") is not None:
            Image.fromarray(np.asarray(frame["color"], dtype=np.uint8)).save(folder / "color" / f"{name}.png")
            entry["color"] = f"color/{name}.png"
        entries.append({**entry, "segmentation": f"segmentation/{name}.png", "pose": f"pose/{name}.txt"})
    manifest = {
        "num_classes": int(num_classes),
        "voxel_size": float(voxel_size),
        "mode": mode,
        "ignore_label": no_label,
    }
    if class_names is not None:
        manifest["class_names"] = list(class_names)
    if palette is not None:
        manifest["palette"] = normalize_palette(palette, num_classes).tolist()
    manifest.update(
        {
            "camera": {
                "fx": camera.fx,
                "fy": camera.fy,
                "cx": camera.cx,
                "cy": camera.cy,
                "width": camera.width,
                "height": camera.height,
                **(
                    {"distortion": list(camera.distortion), "distortion_model": camera.distortion_model}
                    if camera.is_distorted
                    else {}
                ),
            },
            "depth_scale": 1000,
            "depth_trunc": float(depth_trunc),
        }
    )
    # One key, and one frame, per line: readable and diffable.
    header = ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in manifest.items())
    frame_lines = ",\n".join(f"    {json.dumps(entry)}" for entry in entries)
    atomic_write_file(folder / MANIFEST_NAME, "{\n" + header + ',\n  "frames": [\n' + frame_lines + "\n  ]\n}\n")
    return folder
