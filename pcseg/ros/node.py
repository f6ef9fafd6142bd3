"""Live nodes: `pcseg ros segment` (labelled clouds) and `pcseg ros fuse` (a fused map).

The nodes are written once against `RosAdapter`, a handful of calls (subscribe, publish,
a header, a timer, logging, shutdown) implemented for ROS 1 (`rospy`, tested here under
Debian's ROS 1) and ROS 2 (`rclpy`, written against the same adapter but not run here: no
ROS 2 is packaged for this machine). Whichever is importable is used, ROS 1 first.

Latest-message semantics: every subscription has queue size 1, and the callbacks only
drop the message into a one-slot mailbox (`LatestMessage`) that a worker empties; a slow
model therefore skips stale clouds instead of building a backlog. Each processed message
logs its latency (receipt to publication) and how many messages were skipped.

Debian installs rospy for its system python under /usr/lib/python3/dist-packages. pcseg's
virtual environment reaches it by appending that folder to `sys.path` (never prepending),
so the environment's own numpy and torch still win.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
import threading
import time

import numpy as np

from pcseg.ros.messages import labelled_pointcloud2, numpy_to_pointcloud2, pack_rgb, pointcloud2_to_numpy, stamp_to_ns

__all__ = ["LatestMessage", "RosAdapter", "import_ros", "run_fuse_node", "run_segment_node"]

DEBIAN_ROS_PATH = "/usr/lib/python3/dist-packages"
ROS_HOWTO = (
    "install ROS 1 (Debian: apt-get install ros-base python3-rospy python3-sensor-msgs python3-tf2-ros) "
    "or source a ROS 2 setup (rclpy)"
)


def import_ros() -> str:
    """ "ros1" when rospy imports (Debian's path appended when needed), else "ros2" for rclpy.

    Raises:
        ImportError: saying how to install either.
    """
    for attempt in range(2):
        try:
            import rospy  # noqa: F401
            import sensor_msgs.msg  # noqa: F401

            return "ros1"
        except ImportError:
            pass
        try:
            import rclpy  # noqa: F401

            return "ros2"
        except ImportError:
            pass
        if attempt == 0 and os.path.isdir(DEBIAN_ROS_PATH) and DEBIAN_ROS_PATH not in sys.path:
            sys.path.append(DEBIAN_ROS_PATH)  # appended: the environment's packages keep precedence
    raise ImportError(f"neither rospy nor rclpy can be imported: {ROS_HOWTO}")


class LatestMessage:
    """A one-slot mailbox: `put` replaces any message not yet taken (and counts it skipped)."""

    def __init__(self):
        self._condition = threading.Condition()
        self._message = None
        self._received = 0.0
        self.skipped = 0

    def put(self, message) -> None:
        with self._condition:
            if self._message is not None:
                self.skipped += 1
            self._message, self._received = message, time.perf_counter()
            self._condition.notify()

    def take(self, timeout: float):
        """(message, receipt time) or (None, 0.0) when nothing came within `timeout` seconds."""
        with self._condition:
            if self._message is None:
                self._condition.wait(timeout)
            if self._message is None:
                return None, 0.0
            message, received = self._message, self._received
            self._message = None
            return message, received


class RosAdapter:
    """What the nodes need of a ROS client library (see the ROS 1 / ROS 2 subclasses)."""

    types = None  # an object with PointCloud2, PointField, Image, CameraInfo classes

    def subscribe(self, topic: str, type_name: str, callback, queue_size: int = 1) -> None:
        """Call `callback(message)` for each message; queue 1 unless every message matters (/tf)."""
        raise NotImplementedError

    def publisher(self, topic: str, type_name: str):
        """A callable that publishes one message."""
        raise NotImplementedError

    def header(self, frame_id: str):
        raise NotImplementedError

    def timer(self, period_s: float, callback) -> None:
        raise NotImplementedError

    def log(self, text: str) -> None:
        raise NotImplementedError

    def ok(self) -> bool:
        raise NotImplementedError

    def shutdown(self) -> None:
        raise NotImplementedError


class Ros1Adapter(RosAdapter):
    """rospy. SIGINT / SIGTERM end the node cleanly (the nodes' loops see `ok()` turn False)."""

    def __init__(self, name: str):
        import rospy
        import sensor_msgs.msg
        import tf2_msgs.msg

        self.rospy = rospy
        self.types = sensor_msgs.msg
        self._extra = {"TFMessage": tf2_msgs.msg.TFMessage}
        rospy.init_node(name, anonymous=False, disable_signals=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: rospy.signal_shutdown("signal"))
        self._subscribers = []

    def _class(self, type_name):
        return self._extra.get(type_name) or getattr(self.types, type_name)

    def subscribe(self, topic, type_name, callback, queue_size=1):
        # buff_size: rospy drops messages larger than its receive buffer; LiDAR clouds are MBs.
        self._subscribers.append(
            self.rospy.Subscriber(topic, self._class(type_name), callback, queue_size=queue_size, buff_size=2**26)
        )

    def publisher(self, topic, type_name):
        return self.rospy.Publisher(topic, self._class(type_name), queue_size=1).publish

    def header(self, frame_id):
        import std_msgs.msg

        return std_msgs.msg.Header(stamp=self.rospy.Time.now(), frame_id=frame_id)

    def timer(self, period_s, callback):
        self.rospy.Timer(self.rospy.Duration(period_s), lambda _event: callback())

    def log(self, text):
        self.rospy.loginfo(text)

    def ok(self):
        return not self.rospy.is_shutdown()

    def shutdown(self):
        self.rospy.signal_shutdown("done")


class Ros2Adapter(RosAdapter):
    """rclpy (ROS 2). Written against the same interface as ROS 1; not run on this machine."""

    def __init__(self, name: str):
        import rclpy
        import sensor_msgs.msg
        import tf2_msgs.msg
        from rclpy.executors import MultiThreadedExecutor

        self.rclpy = rclpy
        rclpy.init()
        self.node = rclpy.create_node(name)
        self.types = sensor_msgs.msg
        self._extra = {"TFMessage": tf2_msgs.msg.TFMessage}
        self._executor = MultiThreadedExecutor()
        self._executor.add_node(self.node)
        self._stopped = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stopped.set())
        threading.Thread(target=self._executor.spin, daemon=True).start()

    def _class(self, type_name):
        return self._extra.get(type_name) or getattr(self.types, type_name)

    def subscribe(self, topic, type_name, callback, queue_size=1):
        from rclpy.qos import QoSDurabilityPolicy, QoSProfile

        qos = queue_size
        if topic == "/tf_static":  # tf2's static broadcaster latches: transient-local durability
            qos = QoSProfile(depth=100, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(self._class(type_name), topic, callback, qos)

    def publisher(self, topic, type_name):
        return self.node.create_publisher(self._class(type_name), topic, 1).publish

    def header(self, frame_id):
        import std_msgs.msg

        return std_msgs.msg.Header(stamp=self.node.get_clock().now().to_msg(), frame_id=frame_id)

    def timer(self, period_s, callback):
        self.node.create_timer(period_s, callback)

    def log(self, text):
        self.node.get_logger().info(text)

    def ok(self):
        return self.rclpy.ok() and not self._stopped.is_set()

    def shutdown(self):
        self._executor.shutdown()
        self.node.destroy_node()
        self.rclpy.shutdown()


def make_adapter(name: str) -> RosAdapter:
    """The adapter of whichever ROS is importable (ROS 1 first)."""
    return Ros1Adapter(name) if import_ros() == "ros1" else Ros2Adapter(name)


def run_segment_node(adapter: RosAdapter, segmenter, input_topic: str, output_topic: str, palette=None) -> int:
    """Segment each (latest) PointCloud2 of `input_topic`, publish it labelled on `output_topic`.

    Args:
        adapter: the ROS connection (`make_adapter`).
        segmenter: a `pcseg.Segmenter`.
        input_topic / output_topic: PointCloud2 topics.
        palette: (C, 3) uint8 class colours; `pcseg.bridge.default_palette(C)` when None.

    Returns:
        the number of clouds published, once the node is shut down (Ctrl-C).
    """
    if palette is None:
        from pcseg.bridge import default_palette

        palette = default_palette(segmenter.num_classes)
    publish = adapter.publisher(output_topic, "PointCloud2")
    mailbox = LatestMessage()
    adapter.subscribe(input_topic, "PointCloud2", mailbox.put)
    adapter.log(f"pcseg segment: {input_topic} -> {output_topic}, {segmenter.num_classes} classes")
    published = 0
    while adapter.ok():
        cloud, received = mailbox.take(timeout=0.2)
        if cloud is None:
            continue
        try:
            fields = pointcloud2_to_numpy(cloud)
        except ValueError as error:
            adapter.log(f"pcseg segment: skipped a cloud in frame {cloud.header.frame_id!r}: {error}")
            continue
        labels, probabilities = segmenter.predict(fields["xyz"])
        publish(labelled_pointcloud2(cloud, labels, probabilities, palette, fields["valid"], types=adapter.types))
        published += 1
        adapter.log(
            f"pcseg segment: {len(labels)} points labelled, latency {1e3 * (time.perf_counter() - received):.1f}"
            f" ms, skipped {mailbox.skipped} stale clouds so far"
        )
    adapter.log(f"pcseg segment: shut down after {published} clouds")
    return published


class _Recent:
    """The last few messages of a partner topic, for nearest-stamp pairing."""

    def __init__(self, size: int = 30):
        self.messages = collections.deque(maxlen=size)
        self.lock = threading.Lock()

    def put(self, message) -> None:
        with self.lock:
            self.messages.append((stamp_to_ns(message.header.stamp), message))

    def nearest(self, stamp: int, tolerance: int):
        with self.lock:
            best = min(self.messages, key=lambda item: abs(item[0] - stamp), default=None)
        return best[1] if best is not None and abs(best[0] - stamp) <= tolerance else None


def run_fuse_node(
    adapter: RosAdapter,
    fuser,
    topics,
    *,
    output_topic: str = "/pcseg/map",
    fixed_frame: str = "map",
    rate_hz: float = 1.0,
    tolerance_s: float = 0.05,
    depth_scale=None,
    depth_trunc: float = 10.0,
    transform_wait_s: float = 1.0,
    scores: str = "probabilities",
) -> int:
    """Fuse live 2D segmentations (RGB-D or LiDAR + camera) or labelled clouds into `fuser`
    and publish the map as a PointCloud2 (xyz, label, rgb) in `fixed_frame` at `rate_hz`.

    Args:
        adapter: the ROS connection.
        fuser: a `pcseg.Fuser`.
        topics: a `pcseg.ros.fusion.FuseTopics`.
        output_topic: where the map goes.
        fixed_frame: the frame of the map (poses from /tf and /tf_static).
        rate_hz: map publications per second.
        tolerance_s: the largest stamp difference of a pair (and transform extrapolation).
        depth_scale, depth_trunc: as in `Fuser.add_rgbd`.
        transform_wait_s: how long a frame waits for a transform that has not arrived yet.
        scores: what float segmentations hold (`32FC<C>` images): "probabilities" or "logits".

    Returns:
        the number of frames fused, once the node is shut down.
    """
    from pcseg.ros.fusion import FrameFuser
    from pcseg.ros.messages import camera_from_camera_info
    from pcseg.ros.transforms import TransformBuffer

    kind = topics.mode()
    tolerance = int(tolerance_s * 1e9)
    tf = TransformBuffer(tolerance, history_ns=60 * 10**9)  # a minute of /tf: bounded memory
    adapter.subscribe("/tf", "TFMessage", tf.add_message, queue_size=100)
    adapter.subscribe("/tf_static", "TFMessage", lambda message: tf.add_message(message, static=True), queue_size=100)
    partners = {topic: _Recent() for topic in topics.partners()}
    for topic, recent in partners.items():
        adapter.subscribe(topic, "PointCloud2" if topic == topics.cloud else "Image", recent.put, queue_size=5)
    camera = {}
    if topics.camera_info:
        adapter.subscribe(
            topics.camera_info,
            "CameraInfo",
            lambda message: camera.setdefault("model", camera_from_camera_info(message)),
        )
    mailbox = LatestMessage()
    driver = topics.labels or topics.segmentation
    adapter.subscribe(driver, "PointCloud2" if topics.labels else "Image", mailbox.put)
    publish = adapter.publisher(output_topic, "PointCloud2")
    state = FrameFuser(fuser, tf, None, fixed_frame, kind, depth_scale, depth_trunc, scores)

    def publish_map():
        if fuser.num_voxels:
            labels = fuser.voxel_labels()
            fields = {
                "xyz": fuser.voxel_points().astype(np.float32),
                "label": labels.astype(np.uint32),
                "rgb": pack_rgb(fuser.palette[labels]),
            }
            publish(numpy_to_pointcloud2(fields, adapter.header(fixed_frame), types=adapter.types))

    adapter.timer(1.0 / rate_hz, publish_map)
    adapter.log(f"pcseg fuse: {kind} from {driver} into {fixed_frame}, map on {output_topic} at {rate_hz} Hz")
    while adapter.ok():
        message, received = mailbox.take(timeout=0.2)
        if message is None:
            continue
        if topics.camera_info and "model" not in camera:
            adapter.log(f"pcseg fuse: skipped a frame: no CameraInfo on {topics.camera_info} yet")
            continue
        state.camera = camera.get("model")
        stamp = stamp_to_ns(message.header.stamp)
        paired = {driver: message}
        for topic, recent in partners.items():
            paired[topic] = recent.nearest(stamp, tolerance)
        if any(value is None for value in paired.values()):
            adapter.log(f"pcseg fuse: no partner within {tolerance_s} s for the message at {stamp / 1e9:.9f} s")
            continue
        error = state.fuse(paired, driver, topics, transform_wait_s=transform_wait_s)
        if error:
            adapter.log(f"pcseg fuse: skipped a frame ({state.no_transform} so far): {error}")
            continue
        adapter.log(
            f"pcseg fuse: frame {state.frames} fused, {fuser.num_voxels} voxels, latency "
            f"{1e3 * (time.perf_counter() - received):.1f} ms, skipped {mailbox.skipped} stale frames so far"
        )
    adapter.log(f"pcseg fuse: shut down after {state.frames} frames")
    return state.frames
