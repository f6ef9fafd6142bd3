"""Reading and writing point clouds, and the colours of labels.

``read_point_cloud(path, input_format=None)`` reads every per-point field of a file into one
dict (see its docstring), by format:

=============  ==============================================  ================================
input_format   files                                           through
=============  ==============================================  ================================
``ply``        ``.ply``, ascii or binary                       plyfile
``pcd``        ``.pcd``, ascii / binary / binary_compressed    pypcd4
``las``        ``.las`` / ``.laz``                             laspy (+ lazrs for LAZ)
``e57``        ``.e57``                                        pye57 (optional extra)
``kitti``      ``.bin``: float32 x y z remission               numpy
``nuscenes``   ``.pcd.bin``: float32 x y z intensity ring      numpy
``npy``        ``.npy``: structured, or an (N, K) table        numpy
``npz``        ``.npz``: ``coord`` (N, 3) and named arrays     numpy
``txt``        ``.txt``: a table, optional line of names       numpy
``mat``        ``.mat``: SUN RGB-D ``instance`` (N, 6)         scipy
=============  ==============================================  ================================

A suffix that is ambiguous (a nuScenes sweep saved as ``.bin``) is read by passing
`input_format`. Table layouts are listed in `pcseg.formats.arrays`.

Writers, each atomic (a failed write leaves the previous file and no temporary file):
``write_predictions`` picks one from the suffix (``.ply``, ``.pcd``, ``.las`` / ``.laz``,
``.label``, ``.npy``); ``write_labelled_ply`` is pcseg's one labelled-PLY writer (segmentations
and fused voxel maps); ``normalize_palette`` is its one rule for label colours,
``default_palette`` the colours used when none are given. PLY and PCD store float32
coordinates (what viewers expect); LAS keeps georeferenced coordinates to its scale (1 mm).

LAS class map: pcseg label i is written as LAS ``classification`` i unless ``las_class_map``
gives each class its ASPRS code (1 unclassified, 2 ground, 3-5 low / medium / high
vegetation, 6 building, 7 low point, 9 water, 17 bridge deck ...); `read_point_cloud`
returns the codes under ``classification``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pcseg import formats

_log = logging.getLogger(__name__)

__all__ = [
    "INPUT_FORMATS",
    "PREDICTION_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "cloud_from_fields",
    "default_palette",
    "list_point_clouds",
    "model_colors",
    "normalize_palette",
    "read_point_cloud",
    "suffix_format",
    "write_labelled_ply",
    "write_predictions",
]

_READERS = {
    "ply": formats.read_ply,
    "pcd": formats.read_pcd,
    "las": formats.read_las,
    "e57": formats.read_e57,
    "kitti": formats.read_kitti_bin,
    "nuscenes": formats.read_nuscenes_bin,
    "npy": formats.read_npy,
    "npz": formats.read_npz,
    "txt": formats.read_txt,
    "mat": formats.read_mat,
}
INPUT_FORMATS = tuple(_READERS)
# ".pcd.bin" is matched on the whole name before the last suffix is looked at
_SUFFIX_FORMATS = {
    ".pcd.bin": "nuscenes",
    ".ply": "ply",
    ".pcd": "pcd",
    ".las": "las",
    ".laz": "las",
    ".e57": "e57",
    ".bin": "kitti",
    ".npy": "npy",
    ".npz": "npz",
    ".txt": "txt",
    ".mat": "mat",
}
SUPPORTED_SUFFIXES = tuple(_SUFFIX_FORMATS)
PREDICTION_SUFFIXES = (".ply", ".pcd", ".las", ".laz", ".label", ".npy")

# field names (lower-cased) read as the cloud's colour and intensity, first match wins
_COLOR_NAMES = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))
_INTENSITY_NAMES = ("intensity", "remission", "reflectance", "scalar_intensity")
_RESERVED = ("coord", "color", "intensity", "label")


def suffix_format(path: str | Path) -> str | None:
    """The `INPUT_FORMATS` entry a file's suffix names (``.pcd.bin`` is nuScenes), or None.

    Args:
        path: a file name.

    Returns:
        input_format: one of `INPUT_FORMATS`, or None for a suffix pcseg does not read.
    """
    name = Path(path).name.lower()
    return next((kind for suffix, kind in _SUFFIX_FORMATS.items() if name.endswith(suffix)), None)


def _input_format(path: Path, input_format: str | None) -> str:
    if input_format is not None:
        if input_format not in _READERS:
            raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")
        return input_format
    kind = suffix_format(path)
    if kind is not None:
        return kind
    raise ValueError(
        f"{path}: unsupported point cloud format {path.suffix!r}; supported suffixes: "
        f"{SUPPORTED_SUFFIXES} (or pass input_format, one of {INPUT_FORMATS})"
    )


def list_point_clouds(folder: str | Path, input_format: str | None = None) -> list[Path]:
    """The readable point-cloud files under a folder, recursively, sorted.

    Args:
        folder: the folder to search.
        input_format: keep only the suffixes of this `INPUT_FORMATS` entry (every
            ``.bin`` for ``nuscenes``); None keeps every suffix ``read_point_cloud`` reads.

    Returns:
        paths: the files, sorted by path.

    Raises:
        FileNotFoundError: when `folder` is not a folder or holds no such file.
        ValueError: when `input_format` is not one of `INPUT_FORMATS`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder not found: {folder}")
    if input_format is not None and input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")

    def wanted(path: Path) -> bool:
        kind = suffix_format(path)
        if input_format is None:
            return kind is not None
        return kind == input_format or (input_format == "nuscenes" and path.suffix.lower() == ".bin")

    paths = sorted(
        path for path in folder.rglob("*") if path.is_file() and not path.name.startswith(".") and wanted(path)
    )
    if not paths:
        what = f"{input_format} files" if input_format else f"point clouds ({' '.join(SUPPORTED_SUFFIXES)})"
        raise FileNotFoundError(f"input folder {folder} holds no {what}")
    return paths


def read_point_cloud(path: str | Path, input_format: str | None = None, drop_non_finite: bool = False) -> dict:
    """Read a point cloud file with every per-point field it holds.

    Args:
        path: a file of one of the formats in the module docstring.
        input_format: one of `INPUT_FORMATS`; None picks it from the suffix.
        drop_non_finite: leave out points whose x, y or z is NaN or infinite (the "no return"
            points of an organised LiDAR PCD) from every field, instead of raising.

    Returns:
        cloud: {"coord": (N, 3) float64 when the file stores float64 (LAS, E57, double PLY /
        PCD fields, text) else float32, "color": (N, 3) float32 in [0, 1] or None,
        "intensity": (N,) float32 as stored (KITTI remission 0..1, LAS 0..65535, ...) or None,
        "label": (N,) int64 from a field named ``label`` or None}, then every other
        per-point field under its file name, in the file's dtype (see `cloud_from_fields`).

    Raises:
        FileNotFoundError: when `path` does not exist.
        ValueError: naming the file on an unsupported suffix, an empty file, or bad contents.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point cloud not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes)")
    fields = _READERS[_input_format(path, input_format)](path)
    if drop_non_finite:
        xyz = _find(fields, ("x", "y", "z"))
        if xyz is not None:
            keep = np.isfinite(np.stack([fields[name] for name in xyz], axis=1).astype(np.float64)).all(1)
            fields = {name: values[keep] for name, values in fields.items()}
    return cloud_from_fields(fields, path)


def model_colors(cloud: dict, source: str | Path = "point cloud") -> np.ndarray | None:
    """The (N, 3) colours a model that uses colour gets for a cloud.

    The cloud's own colours; for a LiDAR cloud without colour, its intensity repeated into the
    three channels (as SemanticKITTI models were trained: remission as grey), scaled to [0, 1]
    (values above 1 are taken as 8-bit, or 16-bit like LAS, and divided by 255 or 65535) and
    said in a log line; None (mid grey) when the cloud has neither.

    Args:
        cloud: a `read_point_cloud` dict.
        source: the file, for the log line.

    Returns:
        colors: (N, 3) float32 in [0, 1], or None.
    """
    if cloud.get("color") is not None:
        return cloud["color"]
    intensity = cloud.get("intensity")
    if intensity is None:
        return None
    intensity = np.asarray(intensity, dtype=np.float32)
    top = float(intensity.max(initial=0.0))
    if top > 1.0:
        intensity = intensity / (255.0 if top <= 255.0 else 65535.0)
    _log.info("%s: no colour; the model gets the intensity as grey colour", source)
    return np.repeat(np.clip(intensity, 0.0, 1.0)[:, None], 3, 1)


def _find(fields: dict, names: tuple[str, ...]) -> list[str] | None:
    lower = {name.lower(): name for name in fields}
    found = [lower.get(name) for name in names]
    return found if all(found) else None


def _color01(channels: list[np.ndarray], source) -> np.ndarray:
    rgb = np.stack(channels, axis=1)
    if rgb.dtype == np.uint8 or not len(rgb):
        return rgb.astype(np.float32) / (255.0 if rgb.dtype.kind in "ui" else 1.0)
    top = rgb.max()
    if rgb.dtype.kind in "ui":
        if rgb.min() < 0 or top > 65535:
            raise ValueError(f"{source}: colour values in [{rgb.min()}, {top}] are neither 0..255 nor 0..65535")
        # LAS stores 16-bit colour, yet many files hold 8-bit values in those fields
        return rgb.astype(np.float32) / (255.0 if top <= 255 else 65535.0)
    if not np.isfinite(rgb).all() or rgb.min() < 0 or top > 255.0 + 1e-3:
        raise ValueError(f"{source}: colour values in [{rgb.min()}, {top}] are neither 0..1 nor 0..255")
    rgb = rgb.astype(np.float32)
    return np.clip(rgb / 255.0 if top > 1.0 + 1e-6 else rgb, 0.0, 1.0)


def cloud_from_fields(fields: dict[str, np.ndarray], source: str | Path = "point cloud") -> dict:
    """pcseg's cloud dict from a format reader's fields.

    ``x y z`` become ``coord``; the first of ``red green blue``, ``r g b``, ``diffuse_red
    diffuse_green diffuse_blue`` becomes ``color`` (integers 0..255 or 0..65535, floats 0..1 or
    0..255, scaled to [0, 1]); the first of ``intensity``, ``remission``, ``reflectance``,
    ``scalar_intensity`` becomes ``intensity``; ``label`` becomes ``label`` (names matched
    without case). Every other field keeps its name (one named like a fixed key gets a
    ``_field`` suffix).

    Args:
        fields: name -> (N,) or (N, k) arrays, as `pcseg.formats` readers return them.
        source: the file, for error messages.

    Returns:
        cloud: see `read_point_cloud`.

    Raises:
        ValueError: naming `source` when x, y, z are missing, lengths differ, there are no
            points, coordinates are not finite, colours are out of range or labels are not
            integers.
    """
    xyz = _find(fields, ("x", "y", "z"))
    if xyz is None:
        raise ValueError(f"{source}: no x, y, z fields (fields: {list(fields)})")
    lengths = {name: len(values) for name, values in fields.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{source}: fields of different lengths {lengths}")
    n = lengths[xyz[0]]
    if n == 0:
        raise ValueError(f"{source}: the file holds no points")
    dtype = (
        np.float64
        if any(
            fields[name].dtype.itemsize > 4 or fields[name].dtype.kind in "iu" and fields[name].dtype.itemsize > 2
            for name in xyz
        )
        else np.float32
    )
    coord = np.stack([fields[name] for name in xyz], axis=1).astype(dtype)
    if not np.isfinite(coord).all():
        raise ValueError(
            f"{source}: {int((~np.isfinite(coord).all(1)).sum())} points have non-finite coordinates "
            "(read_point_cloud(..., drop_non_finite=True) leaves them out)"
        )
    used = set(xyz)
    color_names = next((found for names in _COLOR_NAMES if (found := _find(fields, names))), None)
    color = None
    if color_names is not None:
        color = _color01([fields[name] for name in color_names], source)
        used.update(color_names)
    intensity_name = next((found[0] for name in _INTENSITY_NAMES if (found := _find(fields, (name,)))), None)
    intensity = None
    if intensity_name is not None:
        intensity = np.asarray(fields[intensity_name], dtype=np.float32)
        used.add(intensity_name)
    label_name = _find(fields, ("label",))
    label = None
    if label_name is not None:
        values = fields[label_name[0]]
        label = values.astype(np.int64)
        if values.dtype.kind == "f" and not np.array_equal(label, values):
            raise ValueError(f"{source}: field {label_name[0]!r} holds non-integer values")
        used.add(label_name[0])
    cloud = {"coord": coord, "color": color, "intensity": intensity, "label": label}
    for name, values in fields.items():
        if name not in used:
            cloud[f"{name}_field" if name in _RESERVED else name] = values
    return cloud


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
    if (
        palette.ndim != 2
        or palette.shape[1] != 3
        or len(palette) == 0
        or (num_classes is not None and len(palette) != num_classes)
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


def _per_point(name: str, values, n: int, dtype) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (n,):
        raise ValueError(f"{name} must be ({n},) values, one a point, got shape {values.shape}")
    return values.astype(dtype)


def _checked_labels(points, labels, palette) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {points.shape}")
    labels = np.asarray(labels)
    if labels.shape != (len(points),) or (len(labels) and labels.dtype.kind not in "iu"):
        raise ValueError(f"labels must be ({len(points)},) integers, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(palette)):
        raise ValueError(
            f"labels must lie in [0, {len(palette)}) to be coloured by the palette, got "
            f"[{labels.min()}, {labels.max()}]"
        )
    return points, labels.astype(np.int64)


def _scalar_fields(n: int, confidence, uncertainty, properties) -> dict[str, np.ndarray]:
    scalars = {"confidence": confidence, "uncertainty": uncertainty}
    scalars = {name: values for name, values in scalars.items() if values is not None}
    for name, values in (properties or {}).items():
        if not name.isidentifier() or name in scalars or name in ("x", "y", "z", "red", "green", "blue", "label"):
            raise ValueError(
                f"property name {name!r} must be one word and not one of x y z red green blue label "
                f"confidence uncertainty"
            )
        scalars[name] = values
    return {
        name: _per_point(f"property {name!r}" if name in (properties or {}) else name, values, n, np.float32)
        for name, values in scalars.items()
    }


def write_labelled_ply(
    path: str | Path,
    points: np.ndarray,
    labels: np.ndarray,
    palette,
    confidence: np.ndarray | None = None,
    *,
    uncertainty: np.ndarray | None = None,
    properties: dict | None = None,
    comment: str = "pcseg segmentation",
) -> None:
    """Write labelled points as a binary little-endian PLY coloured by label, atomically.

    Per vertex: x y z (float32), red green blue (uint8, ``palette[label]``), label (int32),
    then confidence, uncertainty and every entry of `properties` (float32 each). Open3D reads
    the points and colours; the label is a plain vertex property for other tools, and
    `read_point_cloud` reads it back as ``label``.

    Args:
        path: the .ply file to write.
        points: (N, 3) float coordinates.
        labels: (N,) int labels in [0, C).
        palette: (C, 3) colours, uint8 0..255 or float in [0, 1] (see `normalize_palette`).
        confidence: optional (N,) float, written as the property ``confidence``.
        uncertainty: optional (N,) float (e.g. the predictive entropy), written as the property
            ``uncertainty``.
        properties: optional more (N,) float properties, property name -> values.
        comment: the header's comment line.

    Raises:
        ValueError: on shapes that do not match, or labels outside the palette.
    """
    palette = normalize_palette(palette)
    points, labels = _checked_labels(points, labels, palette)
    colors = palette[labels]
    fields = {
        "x": points[:, 0].astype(np.float32),
        "y": points[:, 1].astype(np.float32),
        "z": points[:, 2].astype(np.float32),
        "red": colors[:, 0],
        "green": colors[:, 1],
        "blue": colors[:, 2],
        "label": labels.astype(np.int32),
    }
    fields.update(_scalar_fields(len(points), confidence, uncertainty, properties))
    formats.write_ply(path, fields, comment=comment)


def write_predictions(
    path: str | Path,
    points: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray | None = None,
    palette=None,
    *,
    uncertainty: np.ndarray | None = None,
    num_classes: int | None = None,
    learning_map_inv: dict[int, int] | None = None,
    las_class_map=None,
    pcd_encoding: str = "binary",
) -> Path:
    """Write a segmentation in the format the suffix of `path` names, atomically.

    - ``.ply``: `write_labelled_ply` (colour by label, label, confidence, uncertainty);
    - ``.pcd``: x y z float32, rgb (colour by label), label int32, confidence, uncertainty;
    - ``.las`` / ``.laz``: LAS 1.4 point format 7: the label as ``classification``, through
      `las_class_map` (label -> ASPRS code; None writes label i as code i), colour by label,
      confidence and uncertainty as float32 extra bytes;
    - ``.label``: SemanticKITTI raw ids through `learning_map_inv` (instance 0);
    - ``.npy``: the (N,) int64 labels only.

    Args:
        path: the output file; its folder must exist.
        points: (N, 3) float coordinates in metres.
        labels: (N,) int predicted classes in [0, C).
        confidence: optional (N,) float, the winning probability.
        palette: (C, 3) label colours (see `normalize_palette`); None for `default_palette`.
        uncertainty: optional (N,) float, written where the format has room for it.
        num_classes: C, for the default palette (else the largest label + 1).
        learning_map_inv: training class -> raw id; required for ``.label``.
        las_class_map: optional (C,) ints in 0..255, the LAS classification code of each class.
        pcd_encoding: "binary", "binary_compressed" or "ascii" for ``.pcd``.

    Returns:
        path: the file written.

    Raises:
        ValueError: on an unsupported suffix, shapes that do not match, labels outside the
            palette or the class map, or ``.label`` without `learning_map_inv`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PREDICTION_SUFFIXES:
        raise ValueError(f"{path}: cannot write predictions as {suffix!r}; supported: {PREDICTION_SUFFIXES}")
    labels = np.asarray(labels)
    if palette is None:
        palette = default_palette(num_classes if num_classes is not None else int(labels.max(initial=0)) + 1)
    palette = normalize_palette(palette, num_classes)
    points, labels = _checked_labels(points, labels, palette)
    if suffix == ".ply":
        write_labelled_ply(path, points, labels, palette, confidence, uncertainty=uncertainty)
    elif suffix == ".npy":
        formats.write_npy(path, labels)
    elif suffix == ".label":
        if learning_map_inv is None:
            raise ValueError(
                f"{path}: a SemanticKITTI .label file needs learning_map_inv (training class -> raw "
                "id, from the config's semantic-kitti.yaml)"
            )
        formats.write_semantickitti_label(path, labels, learning_map_inv)
    else:
        colors = palette[labels]
        scalars = _scalar_fields(len(points), confidence, uncertainty, None)
        if suffix == ".pcd":
            fields = dict(zip("xyz", points.astype(np.float32).T))
            fields.update(red=colors[:, 0], green=colors[:, 1], blue=colors[:, 2], label=labels.astype(np.int32))
            formats.write_pcd(path, {**fields, **scalars}, encoding=pcd_encoding)
        else:
            codes = labels if las_class_map is None else _las_codes(labels, las_class_map)
            formats.write_las(path, points, codes, color=colors, extra=scalars)
    return path


def _las_codes(labels: np.ndarray, las_class_map) -> np.ndarray:
    table = np.asarray(las_class_map)
    if table.ndim != 1 or table.dtype.kind not in "iu" or (len(table) and (table.min() < 0 or table.max() > 255)):
        raise ValueError(f"las_class_map must be (C,) integer codes in 0..255, got {table.dtype} {table.shape}")
    if labels.max(initial=0) >= len(table):
        raise ValueError(f"las_class_map has {len(table)} codes but labels go up to {labels.max()}")
    return table[labels]
