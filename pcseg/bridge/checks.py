"""Argument checks and numpy <-> torch plumbing shared by `pcseg.bridge` and `pcseg.Fuser`.

Each rule is written here once: what a point array, a pose and a 2D segmentation argument
must look like, and how numpy arrays become tensors and back. The bridge's functions take
numpy or torch and return the kind they were given; the `Fuser` works in numpy.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import numpy.typing as npt
import torch

__all__ = [
    "SCORE_KINDS",
    "Array",
    "ArrayLike",
    "as_numpy",
    "as_tensor",
    "check_points",
    "check_pose",
    "check_segmentation",
    "flat_nonzero",
    "from_tensor",
    "take_rows",
]

SCORE_KINDS = ("probabilities", "logits")

# What the bridge's results hold: numpy arrays for numpy input, tensors for tensor input.
Array = Union[np.ndarray, torch.Tensor]
# What `as_numpy` reads: a numpy array, a torch tensor or anything `np.asarray` reads as numbers.
ArrayLike = Union[npt.ArrayLike, torch.Tensor]


# ----- numpy <-> torch plumbing ------------------------------------------------------------
def as_tensor(array, name: str) -> tuple[torch.Tensor, bool]:
    """Wrap a numpy array as a tensor (without a copy where possible); tensors pass through.

    Args:
        array: numpy array or torch tensor.
        name: the argument's name, for the error message.

    Returns:
        (tensor, was_numpy): hand `was_numpy` to `from_tensor` to return the caller's kind.

    Raises:
        TypeError: when `array` is neither a numpy array nor a torch tensor.
    """
    if isinstance(array, torch.Tensor):
        return array, False
    if isinstance(array, np.ndarray):
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("="))  # torch reads native byte order only
        elif not array.flags.writeable:
            array = array.copy()  # torch.from_numpy refuses read-only memory
        return torch.from_numpy(np.ascontiguousarray(array)), True
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(array).__name__}")


def as_numpy(array, name: str) -> np.ndarray:
    """A numpy view of a numpy array, a torch tensor (copied to the CPU) or a nested list.

    Args:
        array: numpy array, torch tensor or anything `np.asarray` reads as numbers.
        name: the argument's name, for the error message.

    Returns:
        array: the numbers as a numpy array.

    Raises:
        TypeError: when the result would be an array of Python objects.
    """
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    elif not isinstance(array, np.ndarray):
        array = np.asarray(array)
    if array.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got dtype object")
    return array


def from_tensor(tensor: torch.Tensor, to_numpy: bool) -> Array:
    """`tensor` as the caller gave its input: numpy when `to_numpy`, else as is.

    A result computed on another device (a CUDA map queried with numpy points) comes back to
    the CPU first.
    """
    return tensor.cpu().numpy() if to_numpy else tensor


def flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """Flat indices of the True entries of a bool tensor.

    Args:
        mask: bool tensor of any shape.

    Returns:
        index: (M,) int64 flat indices, ascending.
    """
    if mask.device.type == "cpu":
        # numpy's flatnonzero beats torch.nonzero on the CPU (zero-copy views both ways).
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return torch.nonzero(mask.reshape(-1)).squeeze(1)


def take_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`table[index]` along dim 0.

    Args:
        table: (R, ...) tensor.
        index: (M,) int64 rows of `table`.

    Returns:
        rows: (M, ...) tensor of `table`'s dtype.
    """
    if table.device.type == "cpu" and table.dtype != torch.bfloat16 and not table.requires_grad:
        # numpy's take copies short rows faster than index_select on the CPU.
        return torch.from_numpy(np.take(table.numpy(), index.numpy(), axis=0))
    return table.index_select(0, index)


# ----- argument checks ---------------------------------------------------------------------
def check_points(points: torch.Tensor, name: str = "points") -> None:
    """Check a point array.

    Args:
        points: (N, 3) float tensor with N > 0.
        name: the argument's name, for the error message.

    Raises:
        ValueError: when `points` is not a non-empty (N, 3) float array.
    """
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must be (N, 3), got shape {tuple(points.shape)}")
    if points.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 points)")
    if not points.is_floating_point():
        raise ValueError(f"{name} must be a float array, got {points.dtype}")


# Poses from calibration files and float32 storage carry rounding noise in their rotation
# block; a scale or shear error is far larger than this.
RIGID_TOLERANCE = 1e-3


def check_pose(
    pose,
    name: str,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Check a 4x4 rigid-body pose `T_<to>_from_<from>` and return it as a tensor.

    Args:
        pose: (4, 4) numpy array, torch tensor or nested list, finite, last row [0, 0, 0, 1].
        name: the argument's name, for the error message.
        dtype: the dtype of the returned tensor.
        device: the device of the returned tensor.

    Returns:
        pose: (4, 4) tensor of `dtype` on `device`.

    Raises:
        ValueError: when `pose` is not 4x4, has non-finite entries or another last row, or is
            not rigid: its rotation block must be orthonormal to within `RIGID_TOLERANCE`
            (max |R^T R - I|) with determinant +1 (no scale, no shear, no reflection).
    """
    matrix = pose if isinstance(pose, torch.Tensor) else torch.tensor(np.asarray(pose, dtype=np.float64))
    if matrix.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 matrix, got shape {tuple(matrix.shape)}")
    matrix = matrix.to(device=device, dtype=torch.float64)
    if not bool(torch.isfinite(matrix).all()):
        raise ValueError(f"{name} has non-finite entries: {matrix.tolist()}")
    # Inverted or composed poses carry rounding noise in their last row: compare loosely.
    expected_last_row = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=device)
    if not torch.allclose(matrix[3], expected_last_row, rtol=0.0, atol=1e-6):
        raise ValueError(f"{name} must have last row [0, 0, 0, 1], got {matrix[3].tolist()}")
    rotation = matrix[:3, :3]
    error = float((rotation.T @ rotation - torch.eye(3, dtype=torch.float64, device=matrix.device)).abs().max())
    if error > RIGID_TOLERANCE:
        raise ValueError(
            f"{name} must be a rigid transform: its rotation block is not orthonormal "
            f"(max |R^T R - I| = {error:.3g} > {RIGID_TOLERANCE}; a scale or shear?)"
        )
    if float(torch.linalg.det(rotation)) < 0:
        raise ValueError(f"{name} must be a rigid transform: its rotation block is a reflection (determinant -1)")
    return matrix.to(dtype)


def _check_scores(segmentation, scores: str, name: str) -> None:
    """Float scores must be finite, and probabilities must lie in [0, 1]."""
    values = segmentation if isinstance(segmentation, torch.Tensor) else torch.from_numpy(np.asarray(segmentation))
    if values.numel() == 0:
        return
    # one pass over the scores: NaN and inf both surface in the minimum or the maximum
    low, high = (float(v) for v in torch.aminmax(values))
    if not (np.isfinite(low) and np.isfinite(high)):
        bad = int((~torch.isfinite(values)).sum())
        raise ValueError(f"score {name} holds {bad} NaN or infinite values")
    if scores == "probabilities" and (low < -1e-6 or high > 1.0 + 1e-6):
        raise ValueError(
            f"score {name} was given as probabilities but holds values in [{low:.3g}, {high:.3g}]; "
            "pass scores='logits' for unnormalised network outputs"
        )


def check_segmentation(
    segmentation,
    camera,
    *,
    scores: str = "probabilities",
    num_classes: int | None = None,
    name: str = "segmentation",
) -> bool:
    """Check a 2D segmentation of a camera image: a label map or class scores.

    Args:
        segmentation: (H, W) integer label map, or (C, H, W) float class scores; numpy
            array or torch tensor.
        camera: the image's `PinholeCamera` (W x H).
        scores: what float scores hold, "probabilities" or "logits".
        num_classes: C, when the caller knows it: scores must then have C channels.
        name: the argument's name, for the error message.

    Returns:
        is_label_map: True for an integer label map, False for float scores.

    Raises:
        ValueError: on an unknown `scores`, a label map that is not (H, W), scores that are
            not (C, H, W) with C = num_classes, NaN or infinite scores, probabilities outside
            [0, 1], or an image size other than the camera's.
    """
    if scores not in SCORE_KINDS:
        raise ValueError(f"scores must be 'probabilities' or 'logits', got {scores!r}")
    if isinstance(segmentation, torch.Tensor):
        is_label_map = not segmentation.is_floating_point()
    else:
        is_label_map = not np.issubdtype(segmentation.dtype, np.floating)
    shape = tuple(segmentation.shape)
    if is_label_map and len(shape) != 2:
        raise ValueError(f"a label map {name} must be (H, W), got shape {shape}")
    if not is_label_map:
        if len(shape) != 3:
            raise ValueError(f"score {name} must be (C, H, W), got shape {shape}")
        if num_classes is not None and shape[0] != num_classes:
            raise ValueError(f"score {name} must be (C, H, W) with C = num_classes = {num_classes}, got shape {shape}")
        _check_scores(segmentation, scores, name)
    camera.check_image_shape(shape, name)
    return is_label_map
