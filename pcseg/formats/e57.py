"""E57 files through `pye57` (an optional extra: ``pip install pye57``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["read_e57"]

_NAMES = {
    "cartesianX": "x",
    "cartesianY": "y",
    "cartesianZ": "z",
    "colorRed": "red",
    "colorGreen": "green",
    "colorBlue": "blue",
    "intensity": "intensity",
    "rowIndex": "row_index",
    "columnIndex": "column_index",
}


def read_e57(path: str | Path) -> dict[str, np.ndarray]:
    """Read every scan of an E57 file, in the file's common frame.

    Points flagged invalid by the scanner are left out; spherical scans are converted to
    x y z. The fields are those pye57 decodes.

    Args:
        path: an .e57 file.

    Returns:
        fields: x, y, z (N,) float64 metres (each scan's pose applied), then, when the file
        has them, intensity (N,) float32, red / green / blue (N,) uint8, row_index /
        column_index (N,) int, and scan_index (N,) int64 when the file holds several scans.

    Raises:
        ImportError: when pye57 is not installed (the message says how to install it).
        ValueError: naming the file when it is not a readable E57 file or has no points.
    """
    try:
        import pye57
    except ImportError as error:
        raise ImportError(f"reading {path} needs the optional pye57 package: `pip install pye57`") from error
    path = Path(path)
    try:
        e57 = pye57.E57(str(path))
        scans = [
            e57.read_scan(i, intensity=True, colors=True, row_column=True, ignore_missing_fields=True)
            for i in range(e57.scan_count)
        ]
    except Exception as error:  # libE57 raises its own exception types
        raise ValueError(f"{path}: not a readable E57 file: {error}") from error
    scans = [scan for scan in scans if len(scan.get("cartesianX", ()))]
    if not scans:
        raise ValueError(f"{path}: the E57 file has no points")
    names = [name for name in _NAMES if all(name in scan for scan in scans)]
    fields = {_NAMES[name]: np.concatenate([scan[name] for scan in scans]) for name in names}
    if len(scans) > 1:
        fields["scan_index"] = np.repeat(np.arange(len(scans)), [len(scan["cartesianX"]) for scan in scans])
    return fields
