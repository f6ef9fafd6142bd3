"""Test helper run as a subprocess against a live pcseg node (ROS 1): publish until the node
answers, then write what came back to a JSON file.

    python ros1_client.py segment CLOUD.npy RESULT.json TIMEOUT_S   # /points -> /points/labels
    python ros1_client.py fuse CLOUD.npy RESULT.json TIMEOUT_S      # /points/labels + /tf_static -> /pcseg/map
"""
import json
import sys
import threading
import time

import numpy as np

sys.path.append("/usr/lib/python3/dist-packages")  # Debian's rospy, after the environment's packages

import geometry_msgs.msg  # noqa: E402
import rospy  # noqa: E402
import sensor_msgs.msg  # noqa: E402
import std_msgs.msg  # noqa: E402
import tf2_msgs.msg  # noqa: E402

from pcseg.ros.messages import numpy_to_pointcloud2, pointcloud2_to_numpy, stamp_to_ns  # noqa: E402

STAMP = (1_700_000_000, 123)


def publish_static_transform():
    """map -> velodyne: 10 m along x (latched, as tf2's static broadcaster does)."""
    publisher = rospy.Publisher("/tf_static", tf2_msgs.msg.TFMessage, queue_size=1, latch=True)
    transform = geometry_msgs.msg.TransformStamped()
    transform.header = std_msgs.msg.Header(stamp=rospy.Time(*STAMP), frame_id="map")
    transform.child_frame_id = "velodyne"
    transform.transform.translation.x = 10.0
    transform.transform.rotation.w = 1.0
    publisher.publish(tf2_msgs.msg.TFMessage(transforms=[transform]))
    return publisher


def main(mode: str, cloud_path: str, result_path: str, timeout_s: float) -> int:
    scan = np.load(cloud_path)
    rospy.init_node("pcseg_test_client", disable_signals=True)
    received = {}
    done = threading.Event()

    def on_answer(message):
        if not done.is_set() and message.width * message.height:
            received["message"], received["at"] = message, time.perf_counter()
            done.set()

    fields = {"xyz": scan[:, :3], "intensity": scan[:, 3]}
    if mode == "segment":
        topics = ("/points", "/points/labels")
    else:
        topics = ("/points/labels", "/pcseg/map")
        fields["label"] = np.clip(np.floor(scan[:, 2] + 2.0), 0, 3).astype(np.uint32)
        keep = publish_static_transform()  # noqa: F841 (the latched publisher must stay alive)
    rospy.Subscriber(topics[1], sensor_msgs.msg.PointCloud2, on_answer, queue_size=1, buff_size=2 ** 26)
    publisher = rospy.Publisher(topics[0], sensor_msgs.msg.PointCloud2, queue_size=1)
    deadline = time.perf_counter() + timeout_s
    sent = {}
    # Publish once the node has connected (messages sent before would be lost).
    while not done.is_set() and time.perf_counter() < deadline:
        if publisher.get_num_connections() and not sent:
            header = std_msgs.msg.Header(stamp=rospy.Time(*STAMP), frame_id="velodyne")
            publisher.publish(numpy_to_pointcloud2(fields, header, types=sensor_msgs.msg))
            sent["at"] = time.perf_counter()
        done.wait(0.2)
    if not done.is_set():
        json.dump({"error": f"no answer on {topics[1]} within {timeout_s} s (sent: {bool(sent)})"},
                  open(result_path, "w"))
        return 1
    message = received["message"]
    answer = pointcloud2_to_numpy(message, remove_nans=False)
    json.dump({
        "points": int(message.height * message.width), "labels": answer["label"].tolist(),
        "xyz": answer["xyz"].tolist(), "field_names": [f.name for f in message.fields],
        "frame_id": message.header.frame_id, "stamp": stamp_to_ns(message.header.stamp),
        "seconds": received["at"] - sent["at"],
    }, open(result_path, "w"))
    rospy.signal_shutdown("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
