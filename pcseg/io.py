"""Reading point clouds from disk, writing labelled PLY files, and the colours of labels.

``read_point_cloud(path)`` -> {"coord": (N, 3) float32, "color": (N, 3) float32 in [0, 1] or
None, "label": (N,) int64 or None}, by extension:

- ``.ply`` / ``.pcd``: through Open3D (colours when the file has them);
- ``.npy``: an (N, 3) array (xyz), (N, 4) (xyz + intensity) or (N, >= 6) (xyz + rgb, 0..1 or
  0..255);
- ``.bin``: a KITTI / SemanticKITTI velodyne scan (float32 x y z remission);
- ``.txt``: an S3DIS room or annotation file (``x y z r g b`` per line);
- ``.mat``: a SUN RGB-D toolbox / VoteNet point file (``instance`` (N, 6): xyz + rgb 0..1).

``write_labelled_ply`` is pcseg's one PLY writer (segmentations and fused voxel maps);
``normalize_palette`` is its one rule for label colours, ``default_palette`` the colours used
when none are given.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.utils.open3d import import_open3d

__all__ = ["SUPPORTED_SUFFIXES", "default_palette", "normalize_palette", "read_point_cloud", "write_labelled_ply"]

SUPPORTED_SUFFIXES = (".ply", ".pcd", ".npy", ".bin", ".txt", ".mat")


def _rgb01(rgb: np.ndarray, path: Path) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.size and rgb.max() > 1.0 + 1e-6:
        if rgb.max() > 255.0 + 1e-3:
            raise ValueError(f"{path}: colour values up to {rgb.max()} are neither 0..1 nor 0..255")
        rgb = rgb / 255.0
    return np.clip(rgb, 0.0, 1.0)


def read_point_cloud(path: str | Path) -> dict:
    """Read a point cloud file (the formats are listed in the module docstring).

    Args:
        path: a .ply, .pcd, .npy, .bin, .txt or .mat file.

    Returns:
        cloud: {"coord": (N, 3) float32, "color": (N, 3) float32 in [0, 1] or None,
        "label": None}.

    Raises:
        FileNotFoundError: when `path` does not exist.
        ValueError: on an unsupported suffix, an empty file, or bad contents.
    """
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


def default_palette(num_classes: int) -> np.ndarray:
    """Distinct label colours, the same in every run (golden-ratio hues).

    Args:
        num_classes: C, the number of colours.

    Returns:
        palette: (C, 3) uint8 RGB colours.
    """
    import colorsys

    hues = (np.arange(num_classes) * 0.618033988749895) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.75, 0.95) for h in hues]).__mul__(255).round().astype(np.uint8)


def normalize_palette(palette, num_classes: int | None = None, name: str = "palette") -> np.ndarray:
    """Label colours as uint8, from integers in 0..255 or from floats in [0, 1].

    Args:
        palette: (C, 3) RGB colours, integers (uint8, int64, a nested list ...) in 0..255
            or floats in [0, 1]; None for `default_palette(num_classes)`.
        num_classes: C when the caller knows it: the palette must then have C rows.
        name: the argument's name, for the error message.

    Returns:
        palette: (C, 3) uint8 RGB colours.

    Raises:
        ValueError: when the palette is not (C, 3), or holds values outside those ranges.
    """
    if palette is None:
        if num_classes is None:
            raise ValueError(f"{name} is None and no num_classes was given to pick default colours")
        return default_palette(num_classes)
    palette = np.asarray(palette)
    expected = "(C, 3)" if num_classes is None else f"(C, 3) = ({num_classes}, 3)"
    if palette.ndim != 2 or palette.shape[1] != 3 or len(palette) == 0 or (
        num_classes is not None and len(palette) != num_classes
    ):
        raise ValueError(f"{name} must be {expected} colours, got shape {palette.shape}")
    if np.issubdtype(palette.dtype, np.floating):
        if not np.isfinite(palette).all() or palette.min() < 0.0 or palette.max() > 1.0:
            raise ValueError(
                f"{name} must hold floats in [0, 1] or integers in 0..255, got floats in "
                f"[{palette.min()}, {palette.max()}]"
            )
        return np.round(palette * 255.0).astype(np.uint8)
    if not np.issubdtype(palette.dtype, np.integer):
        raise ValueError(f"{name} must hold floats in [0, 1] or integers in 0..255, got dtype {palette.dtype}")
    if palette.min() < 0 or palette.max() > 255:
        raise ValueError(
            f"{name} must hold floats in [0, 1] or integers in 0..255, got integers in "
            f"[{palette.min()}, {palette.max()}]"
        )
    return palette.astype(np.uint8)


def write_labelled_ply(
    path: str | Path,
    points: np.ndarray,
    labels: np.ndarray,
    palette,
    confidence: np.ndarray | None = None,
    *,
    properties: dict | None = None,
    comment: str = "pcseg segmentation",
) -> None:
    """Write labelled points as a binary little-endian PLY coloured by label.

    Per vertex: x y z (float32), red green blue (uint8, ``palette[label]``), label (int32),
    then confidence and every entry of `properties` (float32 each). Open3D reads the
    points and colours; the label is a plain vertex property for other tools.

    Args:
        path: the .ply file to write.
        points: (N, 3) float coordinates.
        labels: (N,) int labels in [0, C).
        palette: (C, 3) colours, uint8 0..255 or float in [0, 1] (see `normalize_palette`).
        confidence: optional (N,) float, written as the property ``confidence``.
        properties: optional more (N,) float properties, property name -> values.
        comment: the header's comment line.

    Raises:
        ValueError: on shapes that do not match, or labels outside the palette.
    """
    points = np.asarray(points)
    labels = np.asarray(labels)
    palette = normalize_palette(palette)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {points.shape}")
    if labels.shape != (len(points),):
        raise ValueError(f"labels must be ({len(points)},), got {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(palette)):
        raise ValueError(f"labels must lie in [0, {len(palette)}) to be coloured by the palette")
    scalars = {} if confidence is None else {"confidence": confidence}
    scalars.update(properties or {})
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
              ("label", "<i4")]
    for name, values in scalars.items():
        if not name.isidentifier() or name in dict(fields):
            raise ValueError(f"property name {name!r} must be one word and not one of {list(dict(fields))}")
        if np.shape(values) != (len(points),):
            raise ValueError(f"property {name!r} must be ({len(points)},) values, got shape {np.shape(values)}")
    fields += [(name, "<f4") for name in scalars]
    vertex = np.empty(len(points), dtype=fields)
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    colors = palette[labels.astype(np.int64)]
    vertex["red"], vertex["green"], vertex["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    vertex["label"] = labels
    for name, values in scalars.items():
        vertex[name] = values
    ply_types = {"<f4": "float", "u1": "uchar", "<i4": "int"}
    header = ["ply", "format binary_little_endian 1.0", f"comment {comment}", f"element vertex {len(points)}"]
    header += [f"property {ply_types[dtype]} {name}" for name, dtype in fields]
    header.append("end_header")
    with open(path, "wb") as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        handle.write(vertex.tobytes())
