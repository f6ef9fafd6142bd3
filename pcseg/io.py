"""Reading point clouds from disk and writing labelled PLY files.

``read_point_cloud(path)`` -> {"coord": (N, 3) float32, "color": (N, 3) float32 in [0, 1] or
None, "label": (N,) int64 or None}, by extension:

- ``.ply`` / ``.pcd``: through Open3D (colours when the file has them);
- ``.npy``: an (N, 3) array (xyz), (N, 4) (xyz + intensity) or (N, >= 6) (xyz + rgb, 0..1 or
  0..255);
- ``.bin``: a KITTI / SemanticKITTI velodyne scan (float32 x y z remission);
- ``.txt``: an S3DIS room or annotation file (``x y z r g b`` per line);
- ``.mat``: a SUN RGB-D toolbox / VoteNet point file (``instance`` (N, 6): xyz + rgb 0..1).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.utils.open3d import import_open3d

__all__ = ["read_point_cloud", "write_labelled_ply", "SUPPORTED_SUFFIXES"]

SUPPORTED_SUFFIXES = (".ply", ".pcd", ".npy", ".bin", ".txt", ".mat")


def _rgb01(rgb: np.ndarray, path: Path) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.size and rgb.max() > 1.0 + 1e-6:
        if rgb.max() > 255.0 + 1e-3:
            raise ValueError(f"{path}: colour values up to {rgb.max()} are neither 0..1 nor 0..255")
        rgb = rgb / 255.0
    return np.clip(rgb, 0.0, 1.0)


def read_point_cloud(path: str | Path) -> dict:
    """Reads a point cloud file (see the module docstring for the formats)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point cloud not found: {path}")
    suffix = path.suffix.lower()
    color = label = None
    if suffix in (".ply", ".pcd"):
        open3d = import_open3d()  # lazy: pcseg must import without open3d's native libraries

        cloud = open3d.io.read_point_cloud(str(path))
        coord = np.asarray(cloud.points, dtype=np.float32)
        if len(coord) == 0:
            raise ValueError(f"{path}: no points read (empty or unsupported {suffix} file)")
        if cloud.has_colors():
            color = np.asarray(cloud.colors, dtype=np.float32)
    elif suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.ndim != 2 or array.shape[1] < 3:
            raise ValueError(f"{path}: expected an (N, 3+) array of xyz [+ rgb], got shape {array.shape}")
        coord = array[:, :3].astype(np.float32)
        if array.shape[1] == 4:
            color = np.repeat(np.clip(array[:, 3:4], 0, 1).astype(np.float32), 3, 1)
        elif array.shape[1] >= 6:
            color = _rgb01(array[:, 3:6], path)
    elif suffix == ".bin":
        from pcseg.data.kitti import read_velodyne_bin

        scan = read_velodyne_bin(path)
        coord = scan[:, :3].copy()
        # no colour on a LiDAR: remission (0..1) in all three channels stands in for it
        color = np.repeat(np.clip(scan[:, 3:4], 0.0, 1.0), 3, 1)
    elif suffix == ".txt":
        from pcseg.data.s3dis import read_points_txt

        points = read_points_txt(path)
        coord = points[:, :3].astype(np.float32)
        color = _rgb01(points[:, 3:6], path)
    elif suffix == ".mat":
        import scipy.io

        data = scipy.io.loadmat(path)
        if "instance" not in data:
            raise ValueError(f"{path}: no 'instance' array (expected the SUN RGB-D (N, 6) xyz rgb points)")
        points = np.asarray(data["instance"], dtype=np.float64)
        if points.ndim != 2 or points.shape[1] < 3:
            raise ValueError(f"{path}: 'instance' must be (N, 3+), got {points.shape}")
        coord = points[:, :3].astype(np.float32)
        color = _rgb01(points[:, 3:6], path) if points.shape[1] >= 6 else None
    else:
        raise ValueError(f"{path}: unsupported point cloud format {suffix!r}; supported: {SUPPORTED_SUFFIXES}")
    if not np.isfinite(coord).all():
        keep = np.isfinite(coord).all(1)
        raise ValueError(f"{path}: {int((~keep).sum())} points have non-finite coordinates")
    return {"coord": coord, "color": color, "label": label}


def write_labelled_ply(path: str | Path, coord: np.ndarray, labels: np.ndarray, palette: np.ndarray,
                       confidence: np.ndarray | None = None) -> None:
    """Binary little-endian PLY: x y z (float32), red green blue (uint8, ``palette[label]``),
    label (int32) and, when given, confidence (float32) per vertex. Open3D reads the points
    and colours; the label is a plain vertex property for other tools.

    coord (N, 3), labels (N,) int in [0, len(palette)), palette (C, 3) uint8.
    """
    coord = np.asarray(coord, dtype=np.float32)
    labels = np.asarray(labels)
    palette = np.asarray(palette, dtype=np.uint8)
    if coord.ndim != 2 or coord.shape[1] != 3:
        raise ValueError(f"coord must be (N, 3), got {coord.shape}")
    if labels.shape != (len(coord),):
        raise ValueError(f"labels must be ({len(coord)},), got {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(palette)):
        raise ValueError(f"labels must lie in [0, {len(palette)}) to be coloured by the palette")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
              ("label", "<i4")]
    if confidence is not None:
        fields.append(("confidence", "<f4"))
    vertex = np.empty(len(coord), dtype=fields)
    vertex["x"], vertex["y"], vertex["z"] = coord[:, 0], coord[:, 1], coord[:, 2]
    colors = palette[labels.astype(np.int64)]
    vertex["red"], vertex["green"], vertex["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    vertex["label"] = labels
    header = ["ply", "format binary_little_endian 1.0", "comment pcseg segmentation", f"element vertex {len(coord)}",
              "property float x", "property float y", "property float z",
              "property uchar red", "property uchar green", "property uchar blue", "property int label"]
    if confidence is not None:
        vertex["confidence"] = np.asarray(confidence, dtype=np.float32)
        header.append("property float confidence")
    header.append("end_header")
    with open(path, "wb") as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        handle.write(vertex.tobytes())
