"""Array formats: KITTI and nuScenes LiDAR scans, SemanticKITTI labels, .npy / .npz / .txt, .mat.

Plain (N, K) tables (a .npy without field names, a .txt without a header line) follow one
documented set of column layouts (`TABLE_LAYOUTS`):

- 3 columns: x y z;
- 4 columns: x y z intensity;
- 6 columns: x y z red green blue (S3DIS rooms; colours 0..255 or 0..1);
- 7 columns: x y z intensity red green blue (Semantic3D, the PTS export of scanners).

A .txt whose first line holds names (``x y z red green blue label``, or CloudCompare's
``//X,Y,Z,R,G,B``) takes its columns by those names (lower-cased) instead; any other column
count is an error. A plain .npy keeps pcseg's older reading, where K >= 6 columns always
started with x y z red green blue: 3 and 4 columns as above, otherwise x y z, then red green
blue when K >= 6, then ``column_<k>`` for the rest (an (N, 7) x y z r g b label table gives
``column_6``); a structured .npy or an .npz names its fields itself.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np

from pcseg.utils.atomic import atomic_write

__all__ = [
    "TABLE_LAYOUTS",
    "read_kitti_bin",
    "read_mat",
    "read_npy",
    "read_npz",
    "read_nuscenes_bin",
    "read_txt",
    "write_npy",
    "write_semantickitti_label",
]

TABLE_LAYOUTS = {
    3: ("x", "y", "z"),
    4: ("x", "y", "z", "intensity"),
    6: ("x", "y", "z", "red", "green", "blue"),
    7: ("x", "y", "z", "intensity", "red", "green", "blue"),
}


def read_float_records(path: str | Path, values_per_point: int, layout: str) -> np.ndarray:
    """Read a headerless file of little-endian float32 records (KITTI / nuScenes ``.bin``).

    Args:
        path: the file.
        values_per_point: floats in one record.
        layout: the records' fields in words, for the error message (``"x y z remission"``).

    Returns:
        records: (N, values_per_point) float32.

    Raises:
        ValueError: naming the file when its size is not a whole number of records.
    """
    path = Path(path)
    size = path.stat().st_size
    record = 4 * values_per_point
    if size % record:
        hint = ""
        if size % 20 == 0 and values_per_point == 4:
            hint = "; a nuScenes scan (5 floats a point) is read with input_format='nuscenes'"
        elif size % 16 == 0 and values_per_point == 5:
            hint = "; a KITTI scan (4 floats a point) is read with input_format='kitti'"
        raise ValueError(
            f"{path}: {size} bytes is not a whole number of points ({record} bytes each: "
            f"float32 {layout}); the file is truncated or not this format{hint}"
        )
    return np.fromfile(path, dtype="<f4").reshape(-1, values_per_point)


def read_kitti_bin(path: str | Path) -> dict[str, np.ndarray]:
    """Read a KITTI / SemanticKITTI velodyne scan.

    Args:
        path: a .bin file of float32 x y z remission records.

    Returns:
        fields: x, y, z, intensity (the remission, 0..1), each (N,) float32.

    Raises:
        ValueError: naming the file when its size is not a whole number of 16-byte points.
    """
    scan = read_float_records(path, 4, "x y z remission")
    return dict(zip(("x", "y", "z", "intensity"), scan.T))


def read_nuscenes_bin(path: str | Path) -> dict[str, np.ndarray]:
    """Read a nuScenes LiDAR sweep (``*.pcd.bin``).

    Args:
        path: a file of float32 x y z intensity ring records.

    Returns:
        fields: x, y, z, intensity (0..255), ring (the laser index, as stored), each (N,)
        float32.

    Raises:
        ValueError: naming the file when its size is not a whole number of 20-byte points.
    """
    scan = read_float_records(path, 5, "x y z intensity ring")
    return dict(zip(("x", "y", "z", "intensity", "ring"), scan.T))


def _table_fields(path: Path, table: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    if table.ndim != 2 or (kind == "npy" and table.shape[1] < 3):
        raise ValueError(f"{path}: expected an (N, K >= 3) table of points, got shape {table.shape}")
    columns = table.shape[1]
    if kind == "npy" and columns not in (3, 4):
        named = TABLE_LAYOUTS[6] if columns >= 6 else TABLE_LAYOUTS[3]
        names = named + tuple(f"column_{i}" for i in range(len(named), columns))
    elif columns in TABLE_LAYOUTS:
        names = TABLE_LAYOUTS[columns]
    else:
        layouts = "; ".join(f"{k}: {' '.join(v)}" for k, v in TABLE_LAYOUTS.items())
        raise ValueError(
            f"{path}: {columns} columns match no documented layout ({layouts}); "
            + (
                "name the columns in a first line, e.g. 'x y z red green blue label'"
                if kind == "txt"
                else "save a structured array or an .npz with named arrays"
            )
        )
    return dict(zip(names, table.T))


def read_npy(path: str | Path) -> dict[str, np.ndarray]:
    """Read a .npy point table: a structured array (fields by name) or a plain (N, K) table.

    Args:
        path: a .npy file (no pickles).

    Returns:
        fields: name -> (N,) array; a plain table's columns are named as the module
        docstring says.

    Raises:
        ValueError: naming the file when the array is not a table of 3 or more columns.
    """
    path = Path(path)
    array = np.load(path, allow_pickle=False)
    if array.dtype.names:
        if array.ndim != 1:
            raise ValueError(f"{path}: a structured point array must be (N,), got shape {array.shape}")
        return {name: np.asarray(array[name]) for name in array.dtype.names}
    return _table_fields(path, array, "npy")


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read an .npz of per-point arrays.

    Args:
        path: an .npz whose arrays all have N rows. The points are ``coord`` (pcseg's own
            key), ``points`` or ``xyz`` (N, 3); ``color`` / ``rgb`` (N, 3) become red, green,
            blue; every other array keeps its name.

    Returns:
        fields: x, y, z, then every array by name.

    Raises:
        ValueError: naming the file when no points array is found or the lengths differ.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    key = next((k for k in ("coord", "points", "xyz") if k in arrays), None)
    if key is None or arrays[key].ndim != 2 or arrays[key].shape[1] < 3:
        raise ValueError(f"{path}: no (N, 3) 'coord', 'points' or 'xyz' array (arrays: {sorted(arrays)})")
    points = arrays.pop(key)
    fields = dict(zip("xyz", points[:, :3].T))
    color_key = next((k for k in ("color", "rgb") if k in arrays and arrays[k].shape[1:] == (3,)), None)
    if color_key is not None:
        fields.update(zip(("red", "green", "blue"), arrays.pop(color_key).T))
    for name, values in arrays.items():
        if values.shape[:1] != (len(points),):
            raise ValueError(f"{path}: array {name!r} has shape {values.shape}, not {len(points)} rows like the points")
        fields[name] = values
    return fields


def _header_names(line: str) -> list[str] | None:
    text = line.strip().lstrip("/#").strip()
    names = [name for name in re.split(r"[\s,;]+", text) if name]
    try:
        [float(name) for name in names]
        return None
    except ValueError:
        return [name.lower() for name in names]


def read_txt(path: str | Path) -> dict[str, np.ndarray]:
    """Read a text point table (whitespace or comma separated).

    An S3DIS ``x y z r g b`` file goes through `pcseg.data.s3dis.read_points_txt`, which
    repairs the data set's known bad lines with a warning; other layouts are listed in the
    module docstring.

    Args:
        path: a .txt file (or any text table, read with ``input_format="txt"``), optionally
            with a first line of names.

    Returns:
        fields: name -> (N,) float64 column.

    Raises:
        ValueError: naming the file when it is empty, a value is not a number, or its column
            count matches no layout.
    """
    path = Path(path)
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = list(itertools.islice((line for line in handle if line.strip()), 2))
    if not lines:
        raise ValueError(f"{path}: the text file holds no points")
    names = _header_names(lines[0])
    data_line = lines[1] if names is not None and len(lines) > 1 else lines[0]
    delimiter = "," if "," in data_line else None
    if names is None and delimiter is None and len(data_line.split()) == 6:
        from pcseg.data.s3dis import read_points_txt

        return _table_fields(path, read_points_txt(path), "txt")
    try:
        table = np.loadtxt(path, dtype=np.float64, ndmin=2, delimiter=delimiter, skiprows=0 if names is None else 1)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    if names is None:
        return _table_fields(path, table, "txt")
    if len(names) != table.shape[1]:
        raise ValueError(f"{path}: the first line names {len(names)} columns but the rows have {table.shape[1]}")
    return dict(zip(names, table.T))


def read_mat(path: str | Path) -> dict[str, np.ndarray]:
    """Read a SUN RGB-D toolbox / VoteNet point file.

    Args:
        path: a .mat file with an ``instance`` (N, 3+) array: x y z [red green blue in 0..1].

    Returns:
        fields: x, y, z and, with 6 columns, red, green, blue, each (N,) float64.

    Raises:
        ValueError: naming the file when ``instance`` is missing or not (N, 3+).
    """
    import scipy.io

    path = Path(path)
    data = scipy.io.loadmat(path)
    if "instance" not in data:
        raise ValueError(f"{path}: no 'instance' array (expected the SUN RGB-D (N, 6) xyz rgb points)")
    points = np.asarray(data["instance"], dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"{path}: 'instance' must be (N, 3+), got {points.shape}")
    return dict(zip(("x", "y", "z", "red", "green", "blue"), points[:, :6].T))


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Save one array as a .npy file, atomically.

    Args:
        path: the .npy file to write.
        array: any array without Python objects.
    """
    with atomic_write(path) as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)


def write_semantickitti_label(
    path: str | Path, labels: np.ndarray, learning_map_inv: dict[int, int], instance: np.ndarray | None = None
) -> None:
    """Write a SemanticKITTI ``.label`` file in raw ids (the benchmark server's format), atomically.

    Args:
        path: the .label file to write.
        labels: (N,) int training classes (keys of `learning_map_inv`).
        learning_map_inv: training class -> raw SemanticKITTI id (the config's
            ``learning_map_inv``, e.g. `pcseg.data.kitti.SemanticKittiConfig.learning_map_inv`).
        instance: optional (N,) int instance ids in 0..65535 (upper 16 bits); 0 when None.

    Raises:
        ValueError: when a label is not a key of `learning_map_inv`, or shapes differ.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be (N,), got {labels.shape}")
    unknown = np.setdiff1d(np.unique(labels), np.fromiter(learning_map_inv, dtype=np.int64))
    if len(unknown):
        raise ValueError(
            f"labels {unknown[:10].tolist()} are not in learning_map_inv (keys {sorted(learning_map_inv)})"
        )
    table = np.zeros(max(learning_map_inv) + 1, dtype=np.uint32)
    for train_id, raw_id in learning_map_inv.items():
        table[train_id] = raw_id
    raw = table[labels.astype(np.int64)]
    if instance is not None:
        instance = np.asarray(instance)
        if instance.shape != labels.shape or (len(instance) and (instance.min() < 0 or instance.max() > 0xFFFF)):
            raise ValueError(f"instance must be ({len(labels)},) ids in 0..65535, got shape {instance.shape}")
        raw |= instance.astype(np.uint32) << 16
    with atomic_write(path) as handle:
        handle.write(raw.astype("<u4").tobytes())
