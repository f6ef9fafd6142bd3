"""NYU Depth v2 labelled frames: colour, depth in millimetres, 13- or 40-class label maps.

The published colour-camera intrinsics (NYU toolbox `camera_params.m`, 1-based MATLAB
pixel centres) are built in; frames cropped as in the common benchmarks (rows 46:470,
columns 41:600, 1-based — `cropIt.m`) use `nyu_camera(cropped=True)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.bridge.camera import PinholeCamera
from pcseg.data.classes import NYU_13_CLASS_NAMES, NYU_40_CLASS_NAMES
from pcseg.data.rgbd import check_label_range, check_same_size, frame_to_points, read_image

# NYU Depth v2 colour camera (toolbox camera_params.m), 1-based principal point.
NYU_FX, NYU_FY = 5.1885790117450188e02, 5.1946961112127485e02
NYU_CX_ONE_BASED, NYU_CY_ONE_BASED = 3.2558244941119034e02, 2.5373616633400465e02
NYU_WIDTH, NYU_HEIGHT = 640, 480
# The benchmark crop: 1-based rows 46..470 and columns 41..600 -> 0-based offsets 45 / 40.
NYU_CROP_TOP, NYU_CROP_LEFT, NYU_CROP_HEIGHT, NYU_CROP_WIDTH = 45, 40, 425, 560


def nyu_camera(cropped: bool = False) -> PinholeCamera:
    """The NYU Depth v2 colour camera (0-based pixel centres).

    Args:
        cropped: the 560x425 crop instead of the full 640x480 image.

    Returns:
        camera: a `PinholeCamera`.
    """
    camera = PinholeCamera.from_one_based(NYU_FX, NYU_FY, NYU_CX_ONE_BASED, NYU_CY_ONE_BASED, NYU_WIDTH, NYU_HEIGHT)
    if cropped:
        camera = camera.cropped(NYU_CROP_LEFT, NYU_CROP_TOP, NYU_CROP_WIDTH, NYU_CROP_HEIGHT)
    return camera


def read_nyu_frame(
    color_path: str | Path,
    depth_path: str | Path,
    label_path: str | Path | None = None,
    num_classes: int = 13,
    camera: PinholeCamera | None = None,
    max_depth: float = 10.0,
) -> dict:
    """Reads a labelled NYU frame and back-projects it (camera frame: x right, y down, z forward).

    Args:
        color_path: the RGB image.
        depth_path: (H, W) uint16 PNG in millimetres (0 = no reading).
        label_path: (H, W) label PNG, 0 = unlabelled, 1..num_classes; None for no labels.
        num_classes: 13 or 40.
        camera: the camera; None picks the published one, full or cropped by the image size.
        max_depth: depths of this many metres or more are dropped.

    Returns:
        frame: a dict with coord (N, 3) float32 metres, color (N, 3) float32 in [0, 1], pixel
            (N, 2) int64, label (N,) int64 (when given), and image (H, W, 3) uint8, depth
            (H, W) float32 metres, label_image (H, W) int64 (when given), camera.

    Raises:
        ValueError: when `num_classes` is not 13 or 40; naming the file when the depth is not
            a uint16 (H, W) PNG, the images differ in size, a label map is not (H, W) or holds
            labels outside 0..num_classes, or the size is not NYU's and no camera is given.
    """
    if num_classes not in (13, 40):
        raise ValueError(f"num_classes must be 13 or 40, got {num_classes}")
    image = read_image(color_path, "RGB")
    depth = read_image(depth_path)
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise ValueError(
            f"{depth_path}: expected a single-channel uint16 depth PNG in millimetres, got {depth.dtype} {depth.shape}"
        )
    check_same_size(image, color_path, depth, depth_path)
    label = None
    if label_path is not None:
        label = read_image(label_path).astype(np.int64)
        if label.ndim != 2:
            raise ValueError(f"{label_path}: a label map must be (H, W), got shape {label.shape}")
        check_same_size(image, color_path, label, label_path)
        check_label_range(label, num_classes, label_path)
    if camera is None:
        size = image.shape[:2]
        if size == (NYU_HEIGHT, NYU_WIDTH):
            camera = nyu_camera(cropped=False)
        elif size == (NYU_CROP_HEIGHT, NYU_CROP_WIDTH):
            camera = nyu_camera(cropped=True)
        else:
            raise ValueError(
                f"{color_path} is {size[1]}x{size[0]}, neither NYU's 640x480 nor the 560x425 crop; pass camera="
            )
    points = frame_to_points(image, depth, camera, None, label, max_depth)
    points.update(image=image, depth=depth.astype(np.float32) / 1000.0, camera=camera)
    if label is not None:
        points["label_image"] = label
    return points


def class_names(num_classes: int = 13) -> tuple[str, ...]:
    """Names of labels 1..num_classes (label 0 is unlabelled).

    Args:
        num_classes: 13 or 40.

    Returns:
        names: num_classes class names.
    """
    return NYU_13_CLASS_NAMES if num_classes == 13 else NYU_40_CLASS_NAMES
