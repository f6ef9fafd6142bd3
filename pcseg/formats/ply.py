"""PLY files (ascii and binary) through `plyfile`: every vertex property, by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.utils.atomic import atomic_write

__all__ = ["read_ply", "write_ply"]


def read_ply(path: str | Path) -> dict[str, np.ndarray]:
    """Read every property of a PLY file's vertex element.

    Args:
        path: an ascii or binary (either byte order) .ply file.

    Returns:
        fields: property name -> (N,) array in the file's dtype, in the file's order; a list
        property becomes an (N,) object array of arrays.

    Raises:
        ValueError: naming the file when it is not a PLY file, has no vertex element, or
            is truncated or malformed (the message says the element, row and property
            where reading stopped).
    """
    import plyfile

    path = Path(path)
    try:
        # no memory map: a truncated binary file must fail here, not on a later access
        data = plyfile.PlyData.read(str(path), mmap=False)
    except plyfile.PlyElementParseError as error:
        raise ValueError(f"{path}: truncated or malformed PLY data: reading stopped at {error}") from error
    except plyfile.PlyParseError as error:
        raise ValueError(f"{path}: not a readable PLY file: {error}") from error
    names = [element.name for element in data.elements]
    if "vertex" not in names:
        raise ValueError(
            f"{path}: no 'vertex' element (the file has {names or 'no elements'}); "
            "a point cloud PLY stores its points as vertices"
        )
    vertex = data["vertex"].data
    return {name: np.asarray(vertex[name]) for name in vertex.dtype.names}


def write_ply(path: str | Path, fields: dict[str, np.ndarray], comment: str = "", binary: bool = True) -> None:
    """Write per-point fields as a PLY vertex element, atomically.

    Args:
        path: the .ply file to write.
        fields: property name -> (N,) array; each dtype must be one PLY has (int8..int32,
            uint8..uint32, float32, float64). Points are the properties x, y, z.
        comment: a header comment line ("" for none).
        binary: binary little-endian (default) or ascii.

    Raises:
        ValueError: when the fields do not all have the same (N,) shape.
    """
    import plyfile

    lengths = {name: np.shape(values) for name, values in fields.items()}
    if len({shape for shape in lengths.values()}) > 1 or any(len(shape) != 1 for shape in lengths.values()):
        raise ValueError(f"PLY fields must all be (N,) arrays of one length, got shapes {lengths}")
    vertex = np.empty(
        len(next(iter(fields.values()))) if fields else 0,
        dtype=[(name, np.asarray(values).dtype.newbyteorder("<")) for name, values in fields.items()],
    )
    for name, values in fields.items():
        vertex[name] = values
    element = plyfile.PlyElement.describe(vertex, "vertex")
    ply = plyfile.PlyData([element], text=not binary, byte_order="<", comments=[comment] if comment else [])
    with atomic_write(path) as handle:
        ply.write(handle)
