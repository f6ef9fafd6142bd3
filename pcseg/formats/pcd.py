"""PCD files (ascii, binary, binary_compressed) through `pypcd4`: every field, by name.

A packed ``rgb`` / ``rgba`` field (PCL's float32 or uint32 holding 0x00RRGGBB) is unpacked
into ``red``, ``green``, ``blue`` (and ``alpha``) uint8 fields; a field with COUNT k > 1
becomes one (N, k) array; PCL's ``_`` padding fields are dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.utils.atomic import atomic_write

__all__ = ["ENCODINGS", "read_pcd", "write_pcd"]

ENCODINGS = ("ascii", "binary", "binary_compressed")
_TYPE_SIZES = {"F": (4, 8), "U": (1, 2, 4, 8), "I": (1, 2, 4, 8)}
_PCD_TYPES = {"f": "F", "u": "U", "i": "I"}


def _header(path: Path) -> tuple[dict[str, list[str]], int]:
    header, offset = {}, 0
    with open(path, "rb") as handle:
        for raw in handle:
            offset += len(raw)
            line = raw.decode("ascii", errors="replace").strip()
            if not line or line.startswith("#"):
                continue
            key, *values = line.split()
            header[key.upper()] = values
            if key.upper() == "DATA" or len(header) > 12:
                break
    return header, offset


def _check_binary_size(path: Path, header: dict[str, list[str]], offset: int) -> None:
    # pypcd4 reports a short binary body as a numpy reshape error; say which point it stops at
    if header["DATA"][:1] != ["binary"] or not header.get("POINTS", [""])[0].isdigit():
        return
    counts = [int(c) for c in header.get("COUNT", ["1"] * len(header["FIELDS"]))]
    row = sum(int(size) * count for size, count in zip(header["SIZE"], counts))
    points = int(header["POINTS"][0])
    available = path.stat().st_size - offset
    if row and available < points * row:
        raise ValueError(
            f"{path}: truncated PCD: the header says {points} points but the data stops "
            f"after {available // row} whole points ({available} of {points * row} data bytes)"
        )


def _check_header(path: Path, header: dict[str, list[str]]) -> None:
    if "FIELDS" not in header or "DATA" not in header:
        raise ValueError(f"{path}: not a PCD file (no FIELDS or DATA line in the header)")
    fields = header["FIELDS"]
    types = header.get("TYPE", [])
    sizes = header.get("SIZE", [])
    if len(types) != len(fields) or len(sizes) != len(fields):
        raise ValueError(f"{path}: the header has {len(fields)} FIELDS but {len(types)} TYPE and {len(sizes)} SIZE")
    for field, kind, size in zip(fields, types, sizes):
        if kind not in _TYPE_SIZES or not size.isdigit() or int(size) not in _TYPE_SIZES[kind]:
            raise ValueError(
                f"{path}: field {field!r} has an unknown type {kind}{size} (TYPE {kind}, SIZE "
                f"{size}); PCD types are F4 F8, U1 U2 U4 U8, I1 I2 I4 I8"
            )
    if header["DATA"][:1] and header["DATA"][0].lower() not in ENCODINGS:
        raise ValueError(f"{path}: unknown DATA encoding {header['DATA'][0]!r}; expected one of {ENCODINGS}")


def read_pcd(path: str | Path) -> dict[str, np.ndarray]:
    """Read every field of a PCD file.

    Args:
        path: a .pcd file, DATA ascii, binary or binary_compressed.

    Returns:
        fields: field name -> (N,) array in the file's dtype ((N, k) for a field with
        COUNT k > 1), in the file's order; ``rgb`` / ``rgba`` unpacked as described in the
        module docstring.

    Raises:
        ValueError: naming the file on a malformed header, a field of unknown type, or data
            that does not match the header.
    """
    from pypcd4 import PointCloud

    path = Path(path)
    header, offset = _header(path)
    _check_header(path, header)
    _check_binary_size(path, header, offset)
    try:
        cloud = PointCloud.from_path(path)
    except Exception as error:  # pypcd4 raises pydantic, numpy and lzf errors alike
        raise ValueError(f"{path}: not a readable PCD file: {type(error).__name__}: {error}") from error
    data = cloud.pc_data.reshape(-1)  # a one-point ascii file comes back 0-d
    fields: dict[str, np.ndarray] = {}
    for name, count in zip(header["FIELDS"], (int(c) for c in header.get("COUNT", ["1"] * len(header["FIELDS"])))):
        if name == "_":
            continue
        if count == 1:
            values = np.asarray(data[name])
        else:
            values = np.stack([data[f"{name}__{i:04d}"] for i in range(count)], axis=1)
        if name.lower() in ("rgb", "rgba") and count == 1 and values.itemsize == 4:
            packed = values.view(np.uint32)
            fields["red"] = ((packed >> 16) & 255).astype(np.uint8)
            fields["green"] = ((packed >> 8) & 255).astype(np.uint8)
            fields["blue"] = (packed & 255).astype(np.uint8)
            if name.lower() == "rgba":
                fields["alpha"] = ((packed >> 24) & 255).astype(np.uint8)
        else:
            fields[name] = values
    return fields


def write_pcd(path: str | Path, fields: dict[str, np.ndarray], encoding: str = "binary") -> None:
    """Write per-point fields as a PCD file, atomically.

    Fields ``red``, ``green``, ``blue`` (uint8) are packed into PCL's ``rgb`` (float32 in
    binary files; uint32 in ascii ones, whose decimal floats would lose the packed bits), which
    PCL, Open3D and CloudCompare read as colour. Ascii files hold 10 decimals a value.

    Args:
        path: the .pcd file to write.
        fields: field name -> (N,) or (N, k) array of a PCD dtype (float32 / float64,
            (u)int8..64); points are the fields x, y, z.
        encoding: "ascii", "binary" (default) or "binary_compressed".

    Raises:
        ValueError: on an unknown encoding, fields of different lengths, or a dtype PCD
            cannot store.
    """
    from pypcd4 import Encoding, MetaData, PointCloud

    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    fields = dict(fields)
    if {"red", "green", "blue"} <= fields.keys():
        red, green, blue = (np.asarray(fields.pop(c), dtype=np.uint32) for c in ("red", "green", "blue"))
        packed = (red << 16) | (green << 8) | blue
        fields["rgb"] = packed if encoding == "ascii" else packed.view(np.float32)
    lengths = {name: len(values) for name, values in fields.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"PCD fields must all have N rows, got lengths {lengths}")
    columns, header = [], {"fields": [], "size": [], "type": [], "count": []}
    for name, values in fields.items():
        values = np.asarray(values)
        if values.dtype.kind not in _PCD_TYPES or values.ndim not in (1, 2):
            raise ValueError(f"PCD field {name!r} must be (N,) or (N, k) numbers, got {values.dtype} {values.shape}")
        columns.extend([values] if values.ndim == 1 else list(values.T))
        header["fields"].append(name)
        header["size"].append(values.dtype.itemsize)
        header["type"].append(_PCD_TYPES[values.dtype.kind])
        header["count"].append(1 if values.ndim == 1 else values.shape[1])
    num_points = len(columns[0]) if columns else 0
    # PointCloud.from_points cannot build COUNT k > 1 fields: compose the metadata directly
    metadata = MetaData.model_validate({**header, "width": num_points, "points": num_points})
    cloud = PointCloud(metadata, np.rec.fromarrays(columns, dtype=metadata.build_dtype()))
    with atomic_write(path) as handle:
        cloud.save(handle, encoding=Encoding(encoding))
