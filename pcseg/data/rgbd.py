"""Shared helpers of the RGB-D frame readers (SUN RGB-D, NYU Depth v2): image reading with
clear errors, and frame -> labelled point cloud through `pcseg.bridge.backproject_depth`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.bridge.camera import PinholeCamera
from pcseg.bridge.projection import backproject_depth


def read_image(path: str | Path, mode: str | None = None) -> np.ndarray:
    """Reads an image file into a numpy array.

    Args:
        path: the image file.
        mode: a PIL mode to convert to ("RGB"), or None for the file's own.

    Returns:
        image: (H, W, 3) uint8 with mode="RGB", otherwise the file's own dtype and shape,
            e.g. (H, W) uint16 for depth PNGs.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: naming the file when it cannot be decoded.
    """
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
    """Checks that two images have the same height and width.

    Args:
        reference: (H, W, ...) the first image.
        reference_path: its file, named in the error.
        other: (H', W', ...) the second image.
        other_path: its file, named in the error.

    Raises:
        ValueError: naming both files when the sizes differ.
    """
    if reference.shape[:2] != other.shape[:2]:
        raise ValueError(
            f"{other_path} is {other.shape[1]}x{other.shape[0]} but {reference_path} is "
            f"{reference.shape[1]}x{reference.shape[0]}; they must have the same size"
        )


def check_label_range(label: np.ndarray, num_classes: int, path) -> None:
    """Checks that labels lie in 0..num_classes (0 = unlabelled).

    Args:
        label: (H, W) integer label map.
        num_classes: the largest valid label.
        path: the label file, named in the error.

    Raises:
        ValueError: naming `path` when a label lies outside the range.
    """
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

    Args:
        color: (H, W, 3) uint8 image.
        depth_mm: (H, W) uint16 depth in millimetres (0 = no reading).
        camera: the `PinholeCamera` of both images.
        T_world_from_camera: (4, 4) pose of the camera, or None to stay in the camera frame.
        label: (H, W) integer label map, or None.
        max_depth: depths of this many metres or more are dropped.

    Returns:
        points: a dict with coord (N, 3) float32 (camera frame, or world frame with
            `T_world_from_camera`), color (N, 3) float32 in [0, 1], pixel (N, 2) int64 (u, v),
            label (N,) int64 when given (0 = unlabelled, as in the data sets) and valid
            (H, W) bool.
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
