"""LAS and LAZ files through `laspy` (LAZ with the `lazrs` backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.utils.atomic import atomic_write

__all__ = ["read_las", "write_las"]

# laspy's integer X Y Z (before scale and offset): the scaled x y z replace them
_RAW_COORDINATES = ("X", "Y", "Z")


def read_las(path: str | Path) -> dict[str, np.ndarray]:
    """Read every point dimension of a LAS or LAZ file.

    Args:
        path: a .las or .laz file (any LAS version and point format laspy reads).

    Returns:
        fields: x, y, z (N,) float64 metres with the header's scale and offset applied, then
        every other dimension by laspy's name (``intensity``, ``classification``,
        ``return_number``, ``red`` / ``green`` / ``blue`` uint16, extra bytes ...) as (N,)
        arrays of the file's dtype.

    Raises:
        ValueError: naming the file when it is not a readable LAS / LAZ file or has no points.
    """
    import laspy

    path = Path(path)
    try:
        las = laspy.read(path)
    except (laspy.LaspyException, ValueError, OSError) as error:
        raise ValueError(f"{path}: not a readable LAS / LAZ file: {error}") from error
    if len(las.points) == 0:
        raise ValueError(f"{path}: the LAS file has no points")
    fields = {
        "x": np.asarray(las.x, dtype=np.float64),
        "y": np.asarray(las.y, dtype=np.float64),
        "z": np.asarray(las.z, dtype=np.float64),
    }
    for name in las.point_format.dimension_names:
        if name not in _RAW_COORDINATES:
            fields[name] = np.asarray(las[name])
    return fields


def write_las(
    path: str | Path,
    points: np.ndarray,
    classification: np.ndarray,
    color: np.ndarray | None = None,
    intensity: np.ndarray | None = None,
    extra: dict[str, np.ndarray] | None = None,
    scale: float = 0.001,
) -> None:
    """Write points as a LAS 1.4 file (point format 7), LAZ-compressed for a .laz suffix, atomically.

    Coordinates are stored as integers of `scale` metres from an offset (the minimum corner,
    floored to a metre), so they round to the nearest `scale` / 2.

    Args:
        path: the .las or .laz file to write.
        points: (N, 3) float coordinates in metres.
        classification: (N,) integer classification codes in 0..255 (ASPRS codes: 2 ground,
            6 building, ...; mapping labels to codes is the caller's class map).
        color: optional (N, 3) uint8 RGB, stored scaled to LAS's 16 bits (x 257).
        intensity: optional (N,) values in 0..65535, stored as uint16.
        extra: optional more (N,) float fields, name -> values, stored as float32 extra bytes.
        scale: the coordinate resolution in metres.

    Raises:
        ValueError: on shapes that do not match, or codes outside 0..255.
    """
    import laspy

    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(
            f"points must be (N, 3) with N > 0 (a LAS file with no points is not valid), got {points.shape}"
        )
    classification = np.asarray(classification)
    if classification.shape != (len(points),):
        raise ValueError(f"classification must be ({len(points)},), got {classification.shape}")
    if classification.min() < 0 or classification.max() > 255:
        raise ValueError(
            f"classification codes must lie in 0..255, got [{classification.min()}, {classification.max()}]"
        )
    header = laspy.LasHeader(point_format=7, version="1.4")
    header.scales = np.full(3, scale)
    header.offsets = np.floor(points.min(0))
    for name in extra or {}:
        header.add_extra_dim(laspy.ExtraBytesParams(name=name, type=np.float32))
    las = laspy.LasData(header)
    las.x, las.y, las.z = points[:, 0], points[:, 1], points[:, 2]
    las.classification = classification.astype(np.uint8)
    if color is not None:
        color = np.asarray(color)
        if color.shape != points.shape or color.dtype != np.uint8:
            raise ValueError(f"color must be ({len(points)}, 3) uint8, got {color.dtype} {color.shape}")
        las.red, las.green, las.blue = (color[:, i].astype(np.uint16) * 257 for i in range(3))
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.shape != (len(points),):
            raise ValueError(f"intensity must be ({len(points)},), got {intensity.shape}")
        las.intensity = np.clip(np.round(intensity), 0, 65535).astype(np.uint16)
    for name, values in (extra or {}).items():
        if np.shape(values) != (len(points),):
            raise ValueError(f"extra field {name!r} must be ({len(points)},), got {np.shape(values)}")
        las[name] = np.asarray(values, dtype=np.float32)
    with atomic_write(path) as handle:
        las.write(handle, do_compress=Path(path).suffix.lower() == ".laz")
