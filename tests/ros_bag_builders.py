"""Builders of real bags (written with rosbags) from the shared samples, for the ROS tests."""

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from pcseg.ros.bags import typestore
from pcseg.ros.messages import numpy_to_image, numpy_to_pointcloud2, rosbags_types

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND


class BagBuilder:
    """Messages of the standard types for a ROS 1 (`kind="ros1"`) or ROS 2 typestore."""

    def __init__(self, kind: str):
        self.kind = kind
        self.store = typestore(kind)
        self.types = rosbags_types(self.store)
        self.messages = []  # (topic, msgtype, bag timestamp, message)

    def t(self, name):
        return self.store.types[name]

    def header(self, stamp_ns: int, frame_id: str):
        time = self.t("builtin_interfaces/msg/Time")(sec=stamp_ns // SECOND, nanosec=stamp_ns % SECOND)
        extra = {"seq": 0} if self.kind == "ros1" else {}
        return self.t("std_msgs/msg/Header")(stamp=time, frame_id=frame_id, **extra)

    def add(self, topic, msgtype, stamp_ns, message):
        self.messages.append((topic, msgtype, stamp_ns, message))

    def cloud(self, topic, stamp_ns, frame_id, fields):
        msg = numpy_to_pointcloud2(fields, self.header(stamp_ns, frame_id), types=self.types)
        self.add(topic, "sensor_msgs/msg/PointCloud2", stamp_ns, msg)
        return msg

    def image(self, topic, stamp_ns, frame_id, image, encoding):
        msg = numpy_to_image(image, encoding, self.header(stamp_ns, frame_id), types=self.types)
        self.add(topic, "sensor_msgs/msg/Image", stamp_ns, msg)

    def camera_info(self, topic, stamp_ns, frame_id, matrix, width, height, P=None):
        K = np.asarray(matrix, float).ravel()
        P = np.hstack([np.asarray(matrix, float), np.zeros((3, 1))]) if P is None else np.asarray(P, float)
        names = ("D", "K", "R", "P") if self.kind == "ros1" else ("d", "k", "r", "p")
        values = dict(zip(names, (np.zeros(5), K, np.eye(3).ravel(), P.ravel())))
        roi = self.t("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        msg = self.t("sensor_msgs/msg/CameraInfo")(
            header=self.header(stamp_ns, frame_id),
            height=height,
            width=width,
            distortion_model="plumb_bob",
            binning_x=0,
            binning_y=0,
            roi=roi,
            **values,
        )
        self.add(topic, "sensor_msgs/msg/CameraInfo", stamp_ns, msg)

    def transform(self, stamp_ns, parent, child, matrix, static=False):
        q = Rotation.from_matrix(matrix[:3, :3]).as_quat()
        vec = self.t("geometry_msgs/msg/Vector3")(x=matrix[0, 3], y=matrix[1, 3], z=matrix[2, 3])
        quat = self.t("geometry_msgs/msg/Quaternion")(x=q[0], y=q[1], z=q[2], w=q[3])
        stamped = self.t("geometry_msgs/msg/TransformStamped")(
            header=self.header(stamp_ns, parent),
            child_frame_id=child,
            transform=self.t("geometry_msgs/msg/Transform")(translation=vec, rotation=quat),
        )
        topic = "/tf_static" if static else "/tf"
        self.add(topic, "tf2_msgs/msg/TFMessage", stamp_ns, self.t("tf2_msgs/msg/TFMessage")(transforms=[stamped]))

    def string(self, topic, stamp_ns, text):
        self.add(topic, "std_msgs/msg/String", stamp_ns, self.t("std_msgs/msg/String")(data=text))

    def write(self, path: Path, storage: str = "sqlite3") -> Path:
        """Write the messages (sorted by bag time) as a ROS 1 .bag or a ROS 2 folder."""
        messages = sorted(self.messages, key=lambda item: item[2])
        if self.kind == "ros1":
            from rosbags.rosbag1 import Writer

            writer, serialize = Writer(path), self.store.serialize_ros1
        else:
            from rosbags.rosbag2 import StoragePlugin, Writer

            plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
            writer, serialize = Writer(path, version=9, storage_plugin=plugin), self.store.serialize_cdr
        connections = {}
        with writer:
            for topic, msgtype, stamp, message in messages:
                if topic not in connections:
                    connections[topic] = writer.add_connection(topic, msgtype, typestore=self.store)
                writer.write(connections[topic], stamp, serialize(message, msgtype))
        return path


def read_bag(path: Path, kind: str):
    """Every (topic, bag timestamp, message) of a bag, deserialised."""
    store = typestore(kind)
    if kind == "ros1":
        from rosbags.rosbag1 import Reader

        deserialize = store.deserialize_ros1
    else:
        from rosbags.rosbag2 import Reader

        deserialize = store.deserialize_cdr
    with Reader(path) as reader:
        return [(c.topic, t, deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()]


def rigid(yaw_deg: float, translation) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_euler("z", yaw_deg, degrees=True).as_matrix()
    matrix[:3, 3] = translation
    return matrix


class HeightSegmenter:
    """A stand-in model: label = height band (deterministic), 4 classes."""

    num_classes = 4

    def predict(self, points, colors=None):
        labels = np.clip(np.floor(points[:, 2] + 2.0), 0, 3).astype(np.int64)
        probabilities = np.full((len(points), 4), 0.1, np.float32)
        probabilities[np.arange(len(points)), labels] = 0.7
        return labels, probabilities
