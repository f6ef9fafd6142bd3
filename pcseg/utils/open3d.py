"""Open3D interoperability: importing it without the libusb trap, converting clouds, viewing.

pcseg reads and writes files without Open3D (`pcseg.io`); Open3D serves its users through
`to_open3d` / `from_open3d` (legacy and tensor point clouds) and `view_point_cloud`
(``pcseg view FILE``).

The open3d wheels link libusb-1.0 (for RealSense) and fail with "libusb-1.0.so.0: cannot open
shared object file" on machines without the system package. When that happens and the
`libusb-package` wheel is installed, its bundled library is preloaded and the import retried,
so users never see the error; otherwise the message says how to fix it.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import sys

import numpy as np

__all__ = ["from_open3d", "has_display", "import_open3d", "to_open3d", "view_point_cloud"]


def import_open3d():
    """Import open3d lazily (pcseg never needs it at import time), working around a missing libusb.

    Returns:
        open3d: the open3d module.

    Raises:
        ImportError: when libusb-1.0 is missing and the libusb-package wheel is not
            installed; the message says how to install either.
    """
    try:
        return importlib.import_module("open3d")
    except OSError as err:
        if "libusb" not in str(err):
            raise
        try:
            import libusb_package
        except ImportError:
            raise ImportError(
                "open3d needs libusb-1.0: install the system package (Debian/Ubuntu: "
                "`apt-get install libusb-1.0-0`) or `pip install libusb-package`"
            ) from err
        path = libusb_package.get_library_path()
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        return importlib.import_module("open3d")


def to_open3d(cloud: dict, *, tensor: bool = False, palette=None):
    """An Open3D point cloud from a pcseg cloud dict (as `pcseg.io.read_point_cloud` returns).

    Args:
        cloud: {"coord": (N, 3) float, "color": (N, 3) float in [0, 1] or None, optional
            "label" (N,) int, "confidence" (N,) float, "intensity" (N,) float}.
        tensor: False for a legacy ``open3d.geometry.PointCloud`` (points and colours only),
            True for an ``open3d.t.geometry.PointCloud`` that also carries ``label`` (int32),
            ``confidence`` and ``intensity`` (float32) as (N, 1) point attributes.
        palette: optional (C, 3) label colours (see `pcseg.io.normalize_palette`): when given
            and the cloud has labels, points are coloured by label instead of by ``color``.

    Returns:
        point_cloud: the legacy or tensor Open3D point cloud (coordinates as float64 /
        float32 as in `cloud`, colours float32 in [0, 1]).

    Raises:
        ValueError: when ``coord`` is not (N, 3) or a per-point field has another length.
    """
    from pcseg.io import normalize_palette

    open3d = import_open3d()
    coord = np.asarray(cloud["coord"])
    if coord.ndim != 2 or coord.shape[1] != 3:
        raise ValueError(f"cloud['coord'] must be (N, 3), got {coord.shape}")
    color = cloud.get("color")
    if palette is not None and cloud.get("label") is not None:
        color = normalize_palette(palette)[np.asarray(cloud["label"])].astype(np.float32) / 255.0
    attributes = {name: cloud.get(name) for name in ("label", "confidence", "intensity")}
    for name, values in {"color": color, **attributes}.items():
        if values is not None and len(values) != len(coord):
            raise ValueError(f"cloud[{name!r}] has {len(values)} rows but coord has {len(coord)}")
    if not tensor:
        legacy = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(coord.astype(np.float64)))
        if color is not None:
            legacy.colors = open3d.utility.Vector3dVector(np.asarray(color, dtype=np.float64))
        return legacy
    core = open3d.core
    points = open3d.t.geometry.PointCloud(core.Tensor(np.ascontiguousarray(coord)))
    if color is not None:
        points.point.colors = core.Tensor(np.ascontiguousarray(color, dtype=np.float32))
    for name, values in attributes.items():
        if values is not None:
            dtype = np.int32 if name == "label" else np.float32
            points.point[name] = core.Tensor(np.ascontiguousarray(np.asarray(values, dtype=dtype).reshape(-1, 1)))
    return points


def from_open3d(point_cloud) -> dict:
    """A pcseg cloud dict from a legacy or tensor Open3D point cloud.

    Args:
        point_cloud: ``open3d.geometry.PointCloud`` or ``open3d.t.geometry.PointCloud``.

    Returns:
        cloud: {"coord": (N, 3) float64 (legacy) or the tensor's dtype, "color": (N, 3)
        float32 in [0, 1] or None, "intensity": (N,) float32 or None, "label": (N,) int64 or
        None}, then every other tensor point attribute by name ((N, 1) attributes as (N,)).
    """
    if hasattr(point_cloud, "point"):  # tensor point cloud
        attributes = {name: point_cloud.point[name].numpy() for name in point_cloud.point}
        coord = attributes.pop("positions")
        color = attributes.pop("colors", None)
        fields = {
            name: values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values
            for name, values in attributes.items()
        }
    else:
        coord = np.asarray(point_cloud.points)
        color = np.asarray(point_cloud.colors) if point_cloud.has_colors() else None
        fields = {}
    intensity = fields.pop("intensity", None)
    label = fields.pop("label", None)
    return {
        "coord": coord,
        "color": None if color is None else np.asarray(color, dtype=np.float32),
        "intensity": None if intensity is None else np.asarray(intensity, dtype=np.float32),
        "label": None if label is None else np.asarray(label, dtype=np.int64),
        **fields,
    }


def has_display() -> bool:
    """True when a window can open: always on Windows and macOS, on Linux with an X11 or
    Wayland display."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def view_point_cloud(path, input_format: str | None = None, color_by: str = "label", palette=None) -> None:
    """Open a point cloud file in Open3D's viewer.

    Args:
        path: any file `pcseg.io.read_point_cloud` reads.
        input_format: see `pcseg.io.read_point_cloud`.
        color_by: "label" colours a labelled cloud by `palette`; "file" shows the file's own
            colours (a cloud without labels always shows those).
        palette: optional (C, 3) label colours; None for `pcseg.io.default_palette`.

    Raises:
        ValueError: on a `color_by` other than "label" or "file".
        RuntimeError: when no display is available (the message says how to view the file
            elsewhere).
    """
    from pcseg.io import default_palette, read_point_cloud

    if color_by not in ("label", "file"):
        raise ValueError(f"color_by must be 'label' or 'file', got {color_by!r}")
    if not has_display():
        raise RuntimeError(
            f"cannot open a viewer for {path}: no display (DISPLAY / WAYLAND_DISPLAY is unset); "
            "copy the file to a machine with a screen, or open it in CloudCompare"
        )
    cloud = read_point_cloud(path, input_format)
    if color_by == "file":
        palette = None
    elif cloud["label"] is not None and palette is None:
        palette = default_palette(int(cloud["label"].max(initial=0)) + 1)
    open3d = import_open3d()
    open3d.visualization.draw_geometries([to_open3d(cloud, palette=palette)], window_name=str(path))
