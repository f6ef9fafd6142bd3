"""ROS message <-> numpy conversion that needs no ROS install.

Every function reads messages by attribute only (duck typing): `rosbags` message classes,
`rospy` (ROS 1) and `rclpy` (ROS 2) messages and any object with the same attributes all
work, and nothing of ROS is imported here. ROS 1 spells CameraInfo's matrices `K D R P`,
ROS 2 `k d r p`; stamps are `secs/nsecs` in rospy and `sec/nanosec` elsewhere: both are read.

    fields = pointcloud2_to_numpy(msg)             # {"xyz": (N, 3), "intensity": (N,), ...}
    labels, probabilities = segmenter.predict(fields["xyz"])
    out = labelled_pointcloud2(msg, labels, probabilities, palette, valid=fields["valid"])

Frames: clouds stay in their `header.frame_id`; `transform_to_matrix` returns
`T_parent_from_child` (the TransformStamped's `header.frame_id` from its `child_frame_id`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CameraInfoModel",
    "DISTORTION_MODELS",
    "POINTFIELD_DTYPES",
    "PointCloud2",
    "PointField",
    "UNLABELLED",
    "camera_from_camera_info",
    "image_to_numpy",
    "labelled_pointcloud2",
    "numpy_to_image",
    "numpy_to_pointcloud2",
    "pack_rgb",
    "pointcloud2_to_numpy",
    "rosbags_types",
    "stamp_to_ns",
    "transform_to_matrix",
]

# sensor_msgs/PointField datatype constants (identical in ROS 1 and ROS 2).
POINTFIELD_DTYPES = {
    1: np.dtype(np.int8),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int16),
    4: np.dtype(np.uint16),
    5: np.dtype(np.int32),
    6: np.dtype(np.uint32),
    7: np.dtype(np.float32),
    8: np.dtype(np.float64),
}
_DATATYPE_OF = {dtype: code for code, dtype in POINTFIELD_DTYPES.items()}

# The label of a point the model did not see (a NaN point of a non-dense cloud).
UNLABELLED = np.iinfo(np.uint32).max

# CameraInfo.distortion_model -> number of coefficients D must hold (None: any, all zero).
DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4, "": None}

# Fields whose float32 / uint32 bits hold packed 8-bit colours, PCL's layout (0xAARRGGBB).
_PACKED_COLOUR_CHANNELS = {"rgb": 3, "rgba": 4}
_RESERVED = ("xyz", "valid")


@dataclass
class PointField:
    """A stand-in for sensor_msgs/PointField (used when no message types are given)."""

    name: str
    offset: int
    datatype: int
    count: int = 1


@dataclass
class PointCloud2:
    """A stand-in for sensor_msgs/PointCloud2 with the same attributes."""

    header: Any
    height: int
    width: int
    fields: list
    is_bigendian: bool
    point_step: int
    row_step: int
    data: np.ndarray
    is_dense: bool


@dataclass
class _Image:
    """A stand-in for sensor_msgs/Image with the same attributes."""

    header: Any
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


# ----- PointCloud2 -> numpy ------------------------------------------------------------------
def _buffer(data) -> np.ndarray:
    """The message's `data` (bytes, array.array, list or uint8 ndarray) as a flat uint8 array."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)


def _record_dtype(fields, point_step: int, bigendian: bool) -> np.dtype:
    """A numpy structured dtype for one point, checked against `point_step`."""
    names, formats, offsets = [], [], []
    order = ">" if bigendian else "<"
    for f in fields:
        if f.datatype not in POINTFIELD_DTYPES:
            raise ValueError(
                f"PointCloud2 field {f.name!r} has datatype {f.datatype}; known PointField datatypes are "
                f"{sorted(POINTFIELD_DTYPES)} (INT8..FLOAT64)"
            )
        count = int(f.count) if f.count else 1  # count 0 appears in some drivers and means 1
        base = POINTFIELD_DTYPES[f.datatype].newbyteorder(order)
        if f.offset + base.itemsize * count > point_step:
            raise ValueError(
                f"PointCloud2 field {f.name!r} (offset {f.offset}, {count} x {base.itemsize} bytes) "
                f"runs past point_step {point_step}"
            )
        if f.name in names:
            raise ValueError(f"PointCloud2 field {f.name!r} appears twice")
        names.append(f.name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(int(f.offset))
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})


def _points(msg) -> tuple[np.ndarray, np.dtype]:
    """The (height * width,) structured array of the cloud's points, row padding removed."""
    height, width, point_step, row_step = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
    dtype = _record_dtype(msg.fields, point_step, bool(msg.is_bigendian))
    if row_step < width * point_step:
        raise ValueError(f"PointCloud2 row_step {row_step} is smaller than width * point_step = {width * point_step}")
    data = _buffer(msg.data)
    needed = row_step * (height - 1) + width * point_step if height else 0
    if data.size < needed:
        raise ValueError(
            f"PointCloud2 data holds {data.size} bytes, {height} rows of {width} points need {needed} "
            f"(row_step {row_step}, point_step {point_step})"
        )
    if height == 0 or width == 0:
        return np.zeros(0, dtype), dtype
    # Rows may be padded past width * point_step: view each row, keep its points.
    rows = np.lib.stride_tricks.as_strided(data, shape=(height, width * point_step), strides=(row_step, 1))
    packed = np.ascontiguousarray(rows).reshape(-1)
    return packed.view(dtype), dtype


def _native(array: np.ndarray) -> np.ndarray:
    """`array` in the machine's byte order (torch and most of numpy expect it)."""
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def _unpack_colour(values: np.ndarray, channels: int) -> np.ndarray:
    """Packed 0xAARRGGBB float32 / uint32 values -> (N, 3) RGB or (N, 4) RGBA uint8."""
    bits = np.ascontiguousarray(_native(values)).view(np.uint32)
    shifts = (16, 8, 0) if channels == 3 else (16, 8, 0, 24)
    return np.stack([(bits >> shift) & 0xFF for shift in shifts], axis=1).astype(np.uint8)


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """Pack colours the PCL way (0xAARRGGBB read as float32), as ROS `rgb` / `rgba` fields hold them.

    Args:
        colors: (N, 3) RGB or (N, 4) RGBA uint8 (alpha 0 for RGB).

    Returns:
        packed: (N,) float32 whose bits are the packed colour.
    """
    colors = np.asarray(colors)
    if colors.ndim != 2 or colors.shape[1] not in (3, 4) or colors.dtype != np.uint8:
        raise ValueError(f"colors must be (N, 3) or (N, 4) uint8, got {colors.shape} {colors.dtype}")
    c = colors.astype(np.uint32)
    bits = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    if colors.shape[1] == 4:
        bits |= c[:, 3] << 24
    return bits.view(np.float32)


def pointcloud2_to_numpy(msg, *, remove_nans: bool = True) -> dict[str, np.ndarray]:
    """Read a sensor_msgs/PointCloud2 into numpy arrays, one per field.

    Every PointField datatype, `count` > 1, big- and little-endian data, `point_step` and
    `row_step` padding and organised (`height` > 1) clouds are read. Points whose x, y or
    z is NaN or infinite (the holes of organised, non-dense clouds) are dropped when
    `remove_nans` is set, with every other field of the same points; `valid` says which
    points were kept, in the cloud's row-major order.

    Args:
        msg: a PointCloud2 (rosbags, rospy, rclpy or any object with its attributes).
        remove_nans: drop points without finite coordinates (default True).

    Returns:
        fields: dict with `xyz` (N, 3) in the x field's dtype (float32 or float64), every
        other field by name as (N,) or (N, count) in its own dtype (native byte order),
        packed `rgb` / `rgba` float32 or uint32 fields unpacked to (N, 3) / (N, 4) uint8,
        and `valid` (height * width,) bool. N is the number of valid points when
        `remove_nans`, else height * width.

    Raises:
        ValueError: when the cloud has no x, y or z field, a field named `xyz` or `valid`,
        an unknown datatype, or fewer data bytes than its size says.
    """
    names = [f.name for f in msg.fields]
    missing = [axis for axis in "xyz" if axis not in names]
    if missing:
        raise ValueError(f"PointCloud2 has no {'/'.join(missing)} field(s); its fields are {names}")
    clash = [name for name in names if name in _RESERVED]
    if clash:
        raise ValueError(f"PointCloud2 fields {clash} clash with the names pointcloud2_to_numpy returns ({_RESERVED})")
    points, _ = _points(msg)
    xyz = np.stack([_native(points[axis]) for axis in "xyz"], axis=1)
    if not np.issubdtype(xyz.dtype, np.floating):
        xyz = xyz.astype(np.float32)
    valid = np.isfinite(xyz).all(axis=1)
    keep = remove_nans and not valid.all()
    out = {"xyz": xyz[valid] if keep else xyz}
    for f in msg.fields:
        if f.name in ("x", "y", "z"):
            continue
        values = points[f.name]
        if f.name in _PACKED_COLOUR_CHANNELS and f.datatype in (6, 7) and values.ndim == 1:
            values = _unpack_colour(values, _PACKED_COLOUR_CHANNELS[f.name])
        else:
            values = _native(values)
        out[f.name] = values[valid] if keep else np.ascontiguousarray(values)
    out["valid"] = valid
    return out


# ----- numpy -> PointCloud2 ------------------------------------------------------------------
def _field_columns(fields: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(name, (N,) or (N, count) array) per PointField to write, checked and in order."""
    if "xyz" not in fields:
        raise ValueError(f"fields must hold 'xyz' (N, 3), got keys {sorted(fields)}")
    xyz = np.asarray(fields["xyz"])
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"fields['xyz'] must be (N, 3), got shape {xyz.shape}")
    if xyz.dtype not in (np.float32, np.float64):
        xyz = xyz.astype(np.float32)
    columns = [(axis, xyz[:, i]) for i, axis in enumerate("xyz")]
    for name, values in fields.items():
        if name in _RESERVED:
            continue
        values = np.asarray(values)
        if len(values) != len(xyz):
            raise ValueError(f"fields[{name!r}] has {len(values)} rows, xyz has {len(xyz)}")
        if name in _PACKED_COLOUR_CHANNELS and values.ndim == 2 and values.shape[1] == _PACKED_COLOUR_CHANNELS[name]:
            values = pack_rgb(values.astype(np.uint8) if values.dtype == np.uint8 else _colour_uint8(values, name))
        if values.dtype == bool:
            values = values.astype(np.uint8)
        if values.ndim not in (1, 2):
            raise ValueError(f"fields[{name!r}] must be (N,) or (N, count), got shape {values.shape}")
        if _datatype(values.dtype) is None:
            raise ValueError(
                f"fields[{name!r}] has dtype {values.dtype}, which no PointField datatype holds "
                "(int8..int32, uint8..uint32, float32, float64)"
            )
        columns.append((name, values))
    return columns


def _datatype(dtype: np.dtype) -> int | None:
    """The PointField datatype of a numpy dtype of either byte order, None when there is none."""
    return _DATATYPE_OF.get(np.dtype(dtype).newbyteorder("="))


def rosbags_types(typestore):
    """The sensor_msgs classes of a `rosbags` typestore as an object for the `types` arguments."""
    from types import SimpleNamespace

    return SimpleNamespace(
        **{
            name: typestore.types[f"sensor_msgs/msg/{name}"]
            for name in ("PointCloud2", "PointField", "Image", "CameraInfo")
        }
    )


def _colour_uint8(values: np.ndarray, name: str) -> np.ndarray:
    if not np.issubdtype(values.dtype, np.floating) or values.min(initial=0) < 0 or values.max(initial=0) > 1:
        raise ValueError(f"fields[{name!r}] colours must be uint8 or floats in [0, 1], got {values.dtype}")
    return np.round(values * 255).astype(np.uint8)


def _message_data(array: np.ndarray, message_class) -> Any:
    """Byte payload in the form `message_class` stores: a uint8 ndarray for rosbags and the
    stand-ins, array('B') for rclpy (whose setter checks any other sequence value by value),
    bytes for rospy."""
    if message_class is None or hasattr(message_class, "__msgtype__") or message_class in (PointCloud2, _Image):
        return array
    if hasattr(message_class, "get_fields_and_field_types"):  # rclpy's generated classes
        from array import array as byte_array

        return byte_array("B", array.tobytes())
    return array.tobytes()


def numpy_to_pointcloud2(
    fields: dict[str, np.ndarray], header=None, *, height: int = 1, bigendian: bool = False, types=None
):
    """Build a sensor_msgs/PointCloud2 from numpy arrays (the inverse of `pointcloud2_to_numpy`).

    Args:
        fields: `xyz` (N, 3) float32 / float64 plus any other field by name, (N,) or
            (N, count) of a PointField dtype (bool is written as uint8); `rgb` (N, 3) /
            `rgba` (N, 4) uint8 colours are packed into one float32 field. A `valid` key
            (from `pointcloud2_to_numpy`) is not a field and is skipped.
        header: the message header (stamp, frame_id), stored as given.
        height: rows of an organised cloud (N must be height * width); 1 = unorganised.
        bigendian: write big-endian data.
        types: where the message classes come from: an object with `PointCloud2` and
            `PointField` attributes (`sensor_msgs.msg` of rospy / rclpy, or the
            `rosbags_types(typestore)` namespace); None uses this module's stand-ins.

    Returns:
        msg: a PointCloud2 of `types`, dense when every coordinate is finite.

    Raises:
        ValueError: when xyz is missing or not (N, 3), a field's length differs from N,
        a dtype has no PointField datatype, or N is not a multiple of `height`.
    """
    columns = _field_columns(fields)
    n = len(columns[0][1])
    if height < 1 or n % height:
        raise ValueError(f"height must divide the {n} points, got {height}")
    order = ">" if bigendian else "<"
    point_fields, names, formats, offsets, offset = [], [], [], [], 0
    cloud_class = PointCloud2 if types is None else types.PointCloud2
    field_class = PointField if types is None else types.PointField
    for name, values in columns:
        base = values.dtype.newbyteorder(order)
        count = 1 if values.ndim == 1 else values.shape[1]
        point_fields.append(field_class(name=name, offset=offset, datatype=_datatype(base), count=count))
        names.append(name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(offset)
        offset += base.itemsize * count
    record = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})
    points = np.zeros(n, record)
    for name, values in columns:
        points[name] = values
    xyz = np.stack([columns[i][1] for i in range(3)], axis=1)
    width = n // height
    return cloud_class(
        header=header,
        height=height,
        width=width,
        fields=point_fields,
        is_bigendian=bigendian,
        point_step=offset,
        row_step=offset * width,
        data=_message_data(points.view(np.uint8).reshape(-1), cloud_class),
        is_dense=bool(np.isfinite(xyz).all()),
    )


def labelled_pointcloud2(
    msg,
    labels: np.ndarray,
    probabilities: np.ndarray | None,
    palette: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    types=None,
):
    """The input cloud with `label` (uint32), `confidence` (float32) and palette `rgb` appended.

    Every byte of every input point is kept (same header, height, width, order and
    endianness): each point record grows by 12 bytes. An input field already named
    `label`, `confidence` or `rgb` is kept as `input_<name>`. Points left out of the
    prediction (`valid` False: NaN coordinates) get label `UNLABELLED` (2**32 - 1),
    confidence NaN and colour black.

    Args:
        msg: the input PointCloud2.
        labels: (M,) int predicted labels of the valid points, in order.
        probabilities: (M, C) float class probabilities (confidence = the label's), or None
            (confidence NaN).
        palette: (C, 3) uint8 colour per class.
        valid: (height * width,) bool, the `valid` of `pointcloud2_to_numpy`; None = all.
        types: message classes as in `numpy_to_pointcloud2`.

    Returns:
        msg: a PointCloud2 of `types` with the input's header.

    Raises:
        ValueError: when labels, probabilities or valid do not match the cloud, or a label
        has no palette colour.
    """
    points, dtype = _points(msg)
    n = len(points)
    if valid is None:
        valid = np.ones(n, bool)
    valid = np.asarray(valid, bool)
    if valid.shape != (n,):
        raise ValueError(f"valid must be (height * width,) = ({n},), got {valid.shape}")
    labels = np.asarray(labels)
    m = int(valid.sum())
    if labels.shape != (m,):
        raise ValueError(f"labels must be ({m},), one per valid point, got {labels.shape}")
    palette = np.asarray(palette, np.uint8)
    if m and (labels.min() < 0 or labels.max() >= len(palette)):
        raise ValueError(f"labels must lie in [0, {len(palette)}) (palette size), got [{labels.min()}, {labels.max()}]")
    confidence = np.full(m, np.nan, np.float32)
    if probabilities is not None:
        probabilities = np.asarray(probabilities)
        if probabilities.shape[0] != m or probabilities.ndim != 2:
            raise ValueError(f"probabilities must be ({m}, C), got {probabilities.shape}")
        confidence = probabilities[np.arange(m), labels].astype(np.float32)
    order = ">" if msg.is_bigendian else "<"
    step = int(msg.point_step)
    extra = np.dtype(
        {
            "names": ["label", "confidence", "rgb"],
            "formats": [
                np.dtype(np.uint32).newbyteorder(order),
                np.dtype(np.float32).newbyteorder(order),
                np.dtype(np.float32).newbyteorder(order),
            ],
            "offsets": [step, step + 4, step + 8],
            "itemsize": step + 12,
        }
    )
    out = np.zeros(n, extra)
    out.view(np.uint8).reshape(n, step + 12)[:, :step] = points.view(np.uint8).reshape(n, step)
    out["label"] = UNLABELLED
    out["confidence"] = np.nan
    out["label"][valid] = labels
    out["confidence"][valid] = confidence
    out["rgb"][valid] = pack_rgb(palette[labels])
    cloud_class = type(msg) if types is None else types.PointCloud2
    field_class = (
        type(msg.fields[0]) if types is None and msg.fields else (PointField if types is None else types.PointField)
    )
    renamed = {"label", "confidence", "rgb"}
    out_fields = [
        field_class(
            name=f"input_{f.name}" if f.name in renamed else f.name,
            offset=int(f.offset),
            datatype=int(f.datatype),
            count=int(f.count),
        )
        for f in msg.fields
    ]
    out_fields += [
        field_class(name="label", offset=step, datatype=6, count=1),
        field_class(name="confidence", offset=step + 4, datatype=7, count=1),
        field_class(name="rgb", offset=step + 8, datatype=7, count=1),
    ]
    width = int(msg.width)
    return cloud_class(
        header=msg.header,
        height=int(msg.height),
        width=width,
        fields=out_fields,
        is_bigendian=msg.is_bigendian,
        point_step=step + 12,
        row_step=(step + 12) * width,
        data=_message_data(out.view(np.uint8).reshape(-1), cloud_class),
        is_dense=msg.is_dense,
    )


# ----- CameraInfo, Transform, Image, stamps --------------------------------------------------
@dataclass
class CameraInfoModel:
    """What a sensor_msgs/CameraInfo says about its camera.

    camera: the PinholeCamera of the images pcseg should use: from P (the rectified
    image's projection) when `rectified`, else from K. K (3, 3), D (n,), R (3, 3),
    P (3, 4) float64 as in the message; distortion_model as in the message; frame_id is
    the optical frame (x right, y down, z forward). T_camera_from_frame (4, 4): P's last
    column (a stereo camera's baseline, K^-1 P[:, 3]) as a translation, so that
    `camera` projects `T_camera_from_frame @ point` for a point in `frame_id` exactly as P
    does (identity when P[:, 3] is zero or the camera comes from K).
    """

    camera: Any  # pcseg.bridge.PinholeCamera (imported on use: it brings torch)
    K: np.ndarray
    D: np.ndarray
    R: np.ndarray
    P: np.ndarray
    distortion_model: str
    frame_id: str = ""
    rectified: bool = True
    T_camera_from_frame: np.ndarray = field(default_factory=lambda: np.eye(4))


def _attribute(msg, *names):
    for name in names:
        if hasattr(msg, name):
            return getattr(msg, name)
    raise ValueError(f"{type(msg).__name__} has none of the attributes {names}")


def camera_from_camera_info(msg, *, rectified: bool = True) -> CameraInfoModel:
    """Read a sensor_msgs/CameraInfo (ROS 1 `K D R P` or ROS 2 `k d r p`).

    Args:
        msg: the CameraInfo message.
        rectified: the images are rectified (`image_rect*` topics): the camera comes from
            P, and distortion is already removed. False: the camera comes from K, and the
            distortion coefficients must all be zero (pcseg's pinhole model has none).

    Returns:
        model: a `CameraInfoModel` (camera, K, D, R, P, distortion_model, frame_id).

    Raises:
        ValueError: on an unknown distortion model, a D of the wrong length, an all-zero K
        (an uncalibrated camera), a P with a stereo baseline in a raw image, or non-zero
        distortion with `rectified=False`.
    """
    model = str(msg.distortion_model)
    if model not in DISTORTION_MODELS:
        raise ValueError(
            f"CameraInfo distortion_model {model!r} is unknown; pcseg reads "
            f"{sorted(m for m in DISTORTION_MODELS if m)} (and '' for none)"
        )
    K = np.asarray(_attribute(msg, "K", "k"), np.float64).reshape(3, 3)
    D = np.asarray(_attribute(msg, "D", "d"), np.float64).reshape(-1)
    R = np.asarray(_attribute(msg, "R", "r"), np.float64).reshape(3, 3)
    P = np.asarray(_attribute(msg, "P", "p"), np.float64).reshape(3, 4)
    expected = DISTORTION_MODELS[model]
    if expected is not None and D.size not in (0, expected) and not (model == "rational_polynomial" and D.size >= 8):
        raise ValueError(f"CameraInfo distortion_model {model!r} takes {expected} coefficients in D, got {D.size}")
    if not K.any():
        raise ValueError("CameraInfo K is all zeros: the camera is not calibrated")
    width, height = int(msg.width), int(msg.height)
    if rectified:
        matrix = P if P.any() else K
    else:
        if D.any():
            raise ValueError(
                f"CameraInfo has distortion ({model}, D={D.tolist()}) and rectified=False: pcseg's pinhole "
                "model has no distortion; use the rectified image topic (image_rect) with rectified=True"
            )
        matrix = K
    frame_id = getattr(getattr(msg, "header", None), "frame_id", "")
    from pcseg.bridge.camera import PinholeCamera

    offset = np.eye(4)
    if matrix is P:
        offset[:3, 3] = np.linalg.solve(P[:, :3], P[:, 3])
    return CameraInfoModel(
        PinholeCamera.from_matrix(matrix, width, height), K, D, R, P, model, frame_id, rectified, offset
    )


def transform_to_matrix(transform) -> np.ndarray:
    """A geometry_msgs/TransformStamped or Transform as a (4, 4) float64 homogeneous matrix.

    Args:
        transform: a TransformStamped (its `transform` is read) or a Transform
            (`translation` x y z, `rotation` quaternion x y z w).

    Returns:
        T: (4, 4) float64 `T_parent_from_child` (header.frame_id from child_frame_id).

    Raises:
        ValueError: when the quaternion is zero or not finite.
    """
    from scipy.spatial.transform import Rotation

    inner = getattr(transform, "transform", transform)
    t, q = inner.translation, inner.rotation
    quaternion = np.array([q.x, q.y, q.z, q.w], np.float64)
    norm = np.linalg.norm(quaternion)
    if not np.isfinite(quaternion).all() or norm < 1e-9:
        raise ValueError(f"transform rotation must be a non-zero finite quaternion, got {quaternion.tolist()}")
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_quat(quaternion / norm).as_matrix()
    matrix[:3, 3] = [t.x, t.y, t.z]
    return matrix


def stamp_to_ns(stamp) -> int:
    """A ROS time (`sec`/`nanosec`, rospy's `secs`/`nsecs`) as integer nanoseconds."""
    if hasattr(stamp, "nanosec"):
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return int(stamp.secs) * 1_000_000_000 + int(stamp.nsecs)


# sensor_msgs/Image encodings pcseg reads -> (dtype, channels).
_ENCODINGS = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    "8UC1": (np.uint8, 1),
    "8UC3": (np.uint8, 3),
    "mono16": (np.uint16, 1),
    "16UC1": (np.uint16, 1),
    "16SC1": (np.int16, 1),
    "32SC1": (np.int32, 1),
    "32FC1": (np.float32, 1),
    "64FC1": (np.float64, 1),
}


_GENERIC_ENCODING = re.compile(r"^(8U|8S|16U|16S|32S|32F|64F)C(\d+)$")
_GENERIC_DTYPES = {
    "8U": np.uint8,
    "8S": np.int8,
    "16U": np.uint16,
    "16S": np.int16,
    "32S": np.int32,
    "32F": np.float32,
    "64F": np.float64,
}
_COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")


def _encoding(encoding: str, verb: str) -> tuple[np.dtype, int]:
    """(dtype, channels) of an Image encoding: the named ones and OpenCV's generic `32FC14` kind."""
    if encoding in _ENCODINGS:
        return _ENCODINGS[encoding]
    match = _GENERIC_ENCODING.match(encoding)
    if match and int(match.group(2)) > 0:
        return _GENERIC_DTYPES[match.group(1)], int(match.group(2))
    raise ValueError(
        f"Image encoding {encoding!r} is not supported; pcseg {verb} {sorted(_ENCODINGS)} and "
        "OpenCV's generic <depth>C<channels> ones (e.g. 32FC14 class scores)"
    )


def image_to_numpy(msg) -> np.ndarray:
    """A sensor_msgs/Image as (H, W) or (H, W, C) numpy, colour as RGB.

    Args:
        msg: an Image with one of the encodings rgb8 bgr8 rgba8 bgra8 mono8 mono16 or
            OpenCV's generic ones (8UC1, 16UC1, 32FC1, 32FC14 ...); `step` padding and
            `is_bigendian` honoured.

    Returns:
        image: (H, W) for one channel, (H, W, 3) RGB uint8 for colour encodings (alpha
        dropped, BGR reordered), else (H, W, C) in the encoding's dtype.

    Raises:
        ValueError: on an unknown encoding or too few data bytes.
    """
    dtype, channels = _encoding(msg.encoding, "reads")
    dtype = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row = width * channels * dtype.itemsize
    data = _buffer(msg.data)
    if step < row or data.size < step * (height - 1) + row:
        raise ValueError(
            f"Image data ({data.size} bytes, step {step}) is too small for {height}x{width} {msg.encoding}"
        )
    rows = np.lib.stride_tricks.as_strided(data, shape=(height, row), strides=(step, 1))
    image = _native(np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels))
    if msg.encoding.startswith("bgr"):
        image = image[..., [2, 1, 0]]
    if msg.encoding in _COLOUR_ENCODINGS:
        return np.ascontiguousarray(image[..., :3])
    return image[..., 0] if channels == 1 else image


def numpy_to_image(image: np.ndarray, encoding: str, header=None, *, types=None):
    """Build a sensor_msgs/Image (little-endian, no padding) from an (H, W) or (H, W, C) array.

    Args:
        image: pixels in `encoding`'s dtype and channel order (RGB for rgb8).
        encoding: one of the encodings `image_to_numpy` reads.
        header: the message header, stored as given.
        types: an object with an `Image` class attribute (see `numpy_to_pointcloud2`).

    Returns:
        msg: an Image of `types` (this module's stand-in when None).
    """
    dtype, channels = _encoding(encoding, "writes")
    image = np.asarray(image)
    if image.shape[2:] not in ((), (channels,)) or (channels > 1 and image.ndim != 3):
        raise ValueError(f"image of shape {image.shape} does not fit encoding {encoding} ({channels} channels)")
    data = np.ascontiguousarray(image.astype(np.dtype(dtype).newbyteorder("<")))
    image_class = _Image if types is None else types.Image
    height, width = image.shape[:2]
    return image_class(
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels * data.dtype.itemsize,
        data=_message_data(data.view(np.uint8).reshape(-1), image_class),
    )
