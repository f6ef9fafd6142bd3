"""Shared helpers of the RGB-D frame readers (SUN RGB-D, NYU Depth v2): image reading with
clear errors, and frame -> labelled point cloud through `pcseg.bridge.backproject_depth`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.bridge.camera import PinholeCamera
from pcseg.bridge.projection import backproject_depth


def read_image(path: str | Path, mode: str | None = None) -> np.ndarray:
    """Reads an image file into a numpy array (RGB (H, W, 3) uint8 with mode="RGB",
    otherwise the file's own dtype, e.g. (H, W) uint16 for depth PNGs)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image = image.convert(mode) if mode else image
            return np.array(image)
    except OSError as error:
        raise ValueError(f"cannot read image {path}: {error}") from error


def check_same_size(reference: np.ndarray, reference_path, other: np.ndarray, other_path) -> None:
    """ValueError naming both files unless the two images have the same height and width."""
    if reference.shape[:2] != other.shape[:2]:
        raise ValueError(
            f"{other_path} is {other.shape[1]}x{other.shape[0]} but {reference_path} is "
            f"{reference.shape[1]}x{reference.shape[0]}; they must have the same size"
        )


def check_label_range(label: np.ndarray, num_classes: int, path) -> None:
    """ValueError naming `path` unless labels lie in 0..num_classes (0 = unlabelled)."""
    if label.size and (label.min() < 0 or label.max() > num_classes):
        raise ValueError(
            f"{path}: labels must be in 0..{num_classes} (0 = unlabelled), got {label.min()}..{label.max()}"
        )


def frame_to_points(
    color: np.ndarray,
    depth_mm: np.ndarray,
    camera: PinholeCamera,
    T_world_from_camera: np.ndarray | None = None,
    label: np.ndarray | None = None,
    max_depth: float = 10.0,
) -> dict[str, np.ndarray]:
    """Back-projects an RGB-D frame (via `pcseg.bridge.backproject_depth`).

    color (H, W, 3) uint8; depth_mm (H, W) uint16 millimetres (0 = no reading);
    label (H, W) integer or None. Returns coord (N, 3) float32 (camera frame, or world
    frame with `T_world_from_camera`), color (N, 3) float32 in [0, 1], pixel (N, 2) int64
    (u, v), label (N,) int64 when given (0 = unlabelled, as in the data sets), valid (H, W)
    bool. Depths of `max_depth` metres or more are dropped.
    """
    result = backproject_depth(depth_mm, camera, 1000.0, max_depth, pose=T_world_from_camera)
    out = {
        "coord": np.asarray(result.points, dtype=np.float32),
        "color": color[result.valid].astype(np.float32) / 255.0,
        "pixel": np.asarray(result.pixels, dtype=np.int64),
        "valid": np.asarray(result.valid),
    }
    if label is not None:
        out["label"] = label[result.valid].astype(np.int64)
    return out
