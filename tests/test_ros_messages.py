"""pcseg.ros.messages: PointCloud2 / Image / CameraInfo / Transform conversion without ROS."""

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcseg.ros.messages import (
    POINTFIELD_DTYPES,
    UNLABELLED,
    camera_from_camera_info,
    image_to_numpy,
    labelled_pointcloud2,
    numpy_to_image,
    numpy_to_pointcloud2,
    pack_rgb,
    pointcloud2_to_numpy,
    rosbags_types,
    stamp_to_ns,
    transform_to_matrix,
)

rosbags_typesys = pytest.importorskip("rosbags.typesys", reason="pip install rosbags")
STORES = {"ros1": rosbags_typesys.Stores.ROS1_NOETIC, "ros2": rosbags_typesys.Stores.ROS2_HUMBLE}


def typestore(kind):
    return rosbags_typesys.get_typestore(STORES[kind])


def duck_cloud(fields, data, height, width, point_step, row_step, bigendian=False, dense=True):
    """A plain object with PointCloud2's attributes (no ROS class at all); data as bytes like rospy."""
    return SimpleNamespace(
        header=SimpleNamespace(frame_id="velodyne", stamp=SimpleNamespace(secs=3, nsecs=5)),
        height=height,
        width=width,
        is_bigendian=bigendian,
        point_step=point_step,
        row_step=row_step,
        fields=[SimpleNamespace(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields],
        data=bytes(data),
        is_dense=dense,
    )


def test_import_loads_no_ros_and_no_torch():
    code = (
        "import sys, pcseg.ros; pcseg.ros.pointcloud2_to_numpy; "
        "bad = [m for m in ('torch', 'rospy', 'rclpy', 'rosbags') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("datatype", sorted(POINTFIELD_DTYPES))
def test_every_datatype_both_endiannesses_with_padding(datatype, bigendian):
    order = ">" if bigendian else "<"
    dtype = POINTFIELD_DTYPES[datatype].newbyteorder(order)
    n, point_step, width, height = 6, 40, 3, 2
    row_step = width * point_step + 7  # padded rows
    rng = np.random.default_rng(datatype)
    xyz = rng.normal(size=(n, 3)).astype(np.float32)
    values = (rng.integers(0, 100, size=(n, 2))).astype(dtype)
    data = np.zeros(row_step * height, np.uint8)
    for i in range(n):
        row, col = divmod(i, width)
        base = row * row_step + col * point_step
        data[base : base + 12] = np.frombuffer(
            xyz[i].astype(np.dtype(np.float32).newbyteorder(order)).tobytes(), np.uint8
        )
        data[base + 16 : base + 16 + 2 * dtype.itemsize] = np.frombuffer(values[i].tobytes(), np.uint8)
    fields = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("ring", 16, datatype, 2)]
    out = pointcloud2_to_numpy(duck_cloud(fields, data, height, width, point_step, row_step, bigendian))
    np.testing.assert_array_equal(out["xyz"], xyz)
    np.testing.assert_array_equal(out["ring"], values)
    assert out["ring"].dtype == POINTFIELD_DTYPES[datatype] and out["ring"].dtype.isnative
    assert out["valid"].all()


@pytest.mark.parametrize("kind", ["ros1", "ros2"])
def test_rosbags_classes_round_trip_organised_with_nans(kind):
    types = rosbags_types(typestore(kind))
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(4 * 5, 3))  # float64 coordinates
    xyz[[1, 7, 19]] = np.nan
    fields = {
        "xyz": xyz,
        "intensity": rng.random(20).astype(np.float32),
        "ring": np.arange(20, dtype=np.uint16),
        "rgb": rng.integers(0, 256, (20, 3)).astype(np.uint8),
        "t": rng.integers(0, 2**31, 20).astype(np.uint32),
    }
    msg = numpy_to_pointcloud2(fields, "header", height=4, bigendian=kind == "ros2", types=types)
    assert isinstance(msg, types.PointCloud2) and (msg.height, msg.width) == (4, 5) and not msg.is_dense
    assert msg.data.dtype == np.uint8
    out = pointcloud2_to_numpy(msg)
    keep = np.isfinite(xyz).all(1)
    np.testing.assert_array_equal(out["valid"], keep)
    np.testing.assert_array_equal(out["xyz"], xyz[keep])
    for name in ("intensity", "ring", "rgb", "t"):
        np.testing.assert_array_equal(out[name], fields[name][keep])
    kept_all = pointcloud2_to_numpy(msg, remove_nans=False)
    assert len(kept_all["xyz"]) == 20 and np.isnan(kept_all["xyz"][1]).all()


def test_rosbags_serialisation_round_trip():
    store = typestore("ros1")
    types = rosbags_types(store)
    header = store.types["std_msgs/msg/Header"](
        seq=1, stamp=store.types["builtin_interfaces/msg/Time"](sec=4, nanosec=9), frame_id="lidar"
    )
    xyz = np.arange(30, dtype=np.float32).reshape(10, 3)
    msg = numpy_to_pointcloud2({"xyz": xyz, "intensity": np.ones(10, np.float32)}, header, types=types)
    raw = store.serialize_ros1(msg, "sensor_msgs/msg/PointCloud2")
    back = store.deserialize_ros1(raw, "sensor_msgs/msg/PointCloud2")
    np.testing.assert_array_equal(pointcloud2_to_numpy(back)["xyz"], xyz)
    assert stamp_to_ns(back.header.stamp) == 4_000_000_009


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 30),
    height_divisor=st.sampled_from([1, 2]),
    bigendian=st.booleans(),
    extra=st.sampled_from(sorted(POINTFIELD_DTYPES)),
    count=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(n, height_divisor, bigendian, extra, count, seed):
    n -= n % height_divisor
    rng = np.random.default_rng(seed)
    dtype = POINTFIELD_DTYPES[extra]
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    values = rng.uniform(max(info.min, -1e6), min(info.max, 1e6), size=(n, count)).astype(dtype)
    fields = {"xyz": rng.normal(size=(n, 3)).astype(np.float32), "f": values if count > 1 else values[:, 0]}
    msg = numpy_to_pointcloud2(fields, None, height=height_divisor if n else 1, bigendian=bigendian)
    out = pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(out["xyz"], fields["xyz"])
    np.testing.assert_array_equal(out["f"], fields["f"])


def test_packed_rgba_and_uint32_rgb():
    colors = np.array([[255, 0, 10, 128], [1, 2, 3, 4]], np.uint8)
    fields = {"xyz": np.zeros((2, 3), np.float32), "rgba": colors}
    np.testing.assert_array_equal(pointcloud2_to_numpy(numpy_to_pointcloud2(fields))["rgba"], colors)
    as_uint = {"xyz": np.zeros((2, 3), np.float32), "rgb": pack_rgb(colors[:, :3]).view(np.uint32)}
    np.testing.assert_array_equal(pointcloud2_to_numpy(numpy_to_pointcloud2(as_uint))["rgb"], colors[:, :3])


def test_labelled_cloud_keeps_every_input_byte():
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(6, 3)).astype(np.float32)
    xyz[2] = np.nan
    msg = numpy_to_pointcloud2(
        {"xyz": xyz, "intensity": np.arange(6, dtype=np.float32), "rgb": np.full((6, 3), 7, np.uint8)}, "hdr", height=2
    )
    cloud = pointcloud2_to_numpy(msg)
    labels = np.array([0, 1, 2, 1, 0])
    probabilities = np.eye(3, dtype=np.float32)[labels] * 0.5
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    out = labelled_pointcloud2(msg, labels, probabilities, palette, valid=cloud["valid"])
    assert out.header == "hdr" and (out.height, out.width) == (2, 3) and out.point_step == msg.point_step + 12
    assert [f.name for f in out.fields] == ["x", "y", "z", "intensity", "input_rgb", "label", "confidence", "rgb"]
    read = pointcloud2_to_numpy(out, remove_nans=False)
    expected = np.full(6, UNLABELLED, np.uint32)
    expected[cloud["valid"]] = labels
    np.testing.assert_array_equal(read["label"], expected)
    np.testing.assert_array_equal(read["confidence"][cloud["valid"]], 0.5)
    assert np.isnan(read["confidence"][2])
    np.testing.assert_array_equal(read["rgb"][cloud["valid"]], palette[labels])
    np.testing.assert_array_equal(
        read["input_rgb"].view(np.uint32), pack_rgb(np.full((6, 3), 7, np.uint8)).view(np.uint32)
    )
    np.testing.assert_array_equal(read["intensity"], np.arange(6))


def test_clear_errors():
    no_z = numpy_to_pointcloud2({"xyz": np.zeros((2, 3), np.float32)})
    no_z.fields = no_z.fields[:2]
    with pytest.raises(ValueError, match=r"no z field.*\['x', 'y'\]"):
        pointcloud2_to_numpy(no_z)
    bad_type = duck_cloud([("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("w", 12, 42, 1)], bytes(16), 1, 1, 16, 16)
    with pytest.raises(ValueError, match="'w' has datatype 42"):
        pointcloud2_to_numpy(bad_type)
    short = duck_cloud([("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)], bytes(20), 1, 2, 12, 24)
    with pytest.raises(ValueError, match="holds 20 bytes"):
        pointcloud2_to_numpy(short)
    past = duck_cloud([("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 8, 1)], bytes(12), 1, 1, 12, 12)
    with pytest.raises(ValueError, match="runs past point_step"):
        pointcloud2_to_numpy(past)
    with pytest.raises(ValueError, match="no PointField datatype"):
        numpy_to_pointcloud2({"xyz": np.zeros((2, 3)), "id": np.zeros(2, np.int64)})
    with pytest.raises(ValueError, match=r"fields\['i'\] has 3 rows"):
        numpy_to_pointcloud2({"xyz": np.zeros((2, 3)), "i": np.zeros(3, np.int32)})


def camera_info(kind, model="plumb_bob", D=(0.1, 0.0, 0.0, 0.0, 0.0)):
    store = typestore(kind)
    K = np.array([500.0, 0, 320, 0, 510, 240, 0, 0, 1])
    P = np.array([480.0, 0, 321, 0, 0, 490, 241, 0, 0, 0, 1, 0])
    names = ("D", "K", "R", "P") if kind == "ros1" else ("d", "k", "r", "p")
    values = dict(zip(names, (np.array(D, float), K, np.eye(3).ravel(), P)))
    header_kw = {"seq": 0} if kind == "ros1" else {}
    header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="camera_optical", **header_kw
    )
    roi = store.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return store.types["sensor_msgs/msg/CameraInfo"](
        header=header, height=480, width=640, distortion_model=model, binning_x=0, binning_y=0, roi=roi, **values
    )


@pytest.mark.parametrize("kind", ["ros1", "ros2"])
def test_camera_from_camera_info(kind):
    model = camera_from_camera_info(camera_info(kind))
    assert (model.camera.fx, model.camera.cx, model.camera.fy, model.camera.cy) == (480, 321, 490, 241)
    assert model.frame_id == "camera_optical" and model.distortion_model == "plumb_bob" and model.D[0] == 0.1
    raw = camera_from_camera_info(camera_info(kind, D=(0, 0, 0, 0, 0)), rectified=False)
    assert (raw.camera.fx, raw.camera.cy) == (500, 240)
    with pytest.raises(ValueError, match="rectified=False"):
        camera_from_camera_info(camera_info(kind), rectified=False)
    with pytest.raises(ValueError, match="'fisheye62' is unknown"):
        camera_from_camera_info(camera_info(kind, model="fisheye62"))
    with pytest.raises(ValueError, match="takes 4 coefficients"):
        camera_from_camera_info(camera_info(kind, model="equidistant"))


def test_transform_to_matrix_stamped_and_plain():
    from scipy.spatial.transform import Rotation

    rotation = Rotation.from_euler("zyx", [30, 10, -5], degrees=True)
    x, y, z, w = rotation.as_quat()
    transform = SimpleNamespace(
        translation=SimpleNamespace(x=1.0, y=2.0, z=3.0), rotation=SimpleNamespace(x=2 * x, y=2 * y, z=2 * z, w=2 * w)
    )  # not normalised
    matrix = transform_to_matrix(SimpleNamespace(transform=transform, child_frame_id="base_link"))
    np.testing.assert_allclose(matrix[:3, :3], rotation.as_matrix(), atol=1e-12)
    np.testing.assert_allclose(matrix[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(transform_to_matrix(transform), matrix)
    with pytest.raises(ValueError, match="non-zero finite quaternion"):
        transform_to_matrix(
            SimpleNamespace(translation=transform.translation, rotation=SimpleNamespace(x=0, y=0, z=0, w=0))
        )


@pytest.mark.parametrize(
    "encoding,dtype,channels",
    [
        ("rgb8", np.uint8, 3),
        ("bgr8", np.uint8, 3),
        ("16UC1", np.uint16, 1),
        ("32FC1", np.float32, 1),
        ("mono8", np.uint8, 1),
        ("32FC5", np.float32, 5),
        ("16UC2", np.uint16, 2),
    ],
)
def test_image_round_trip(encoding, dtype, channels):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 200, size=(4, 5, channels) if channels > 1 else (4, 5)).astype(dtype)
    msg = numpy_to_image(image, encoding, types=rosbags_types(typestore("ros2")))
    back = image_to_numpy(msg)
    np.testing.assert_array_equal(back, image[..., ::-1] if encoding == "bgr8" else image)
    with pytest.raises(ValueError, match="'yuv422' is not supported.*32FC14 class scores"):
        image_to_numpy(SimpleNamespace(encoding="yuv422"))


class _Message:
    """A message class built from keyword arguments, as rospy's and rclpy's are."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


class _RclpyLike(_Message):
    @classmethod
    def get_fields_and_field_types(cls):
        return {}


@pytest.mark.parametrize("flavour,data_type", [("rospy", bytes), ("rclpy", "array")])
def test_message_classes_of_rospy_and_rclpy_get_their_byte_types(flavour, data_type):
    import array

    base = _RclpyLike if flavour == "rclpy" else _Message
    types = SimpleNamespace(
        PointCloud2=type("PointCloud2", (base,), {}), PointField=type("PointField", (_Message,), {})
    )
    xyz = np.arange(12, dtype=np.float32).reshape(4, 3)
    msg = numpy_to_pointcloud2({"xyz": xyz}, SimpleNamespace(frame_id="f"), types=types)
    assert isinstance(msg.data, array.array if data_type == "array" else bytes)
    np.testing.assert_array_equal(pointcloud2_to_numpy(msg)["xyz"], xyz)
    out = labelled_pointcloud2(msg, np.zeros(4, np.int64), None, np.zeros((1, 3), np.uint8))
    assert type(out) is types.PointCloud2 and type(out.fields[-1]) is types.PointField
    assert pointcloud2_to_numpy(out)["label"].tolist() == [0, 0, 0, 0]
