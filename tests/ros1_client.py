"""Test helper run as a subprocess: publish a cloud on /points (ROS 1) until a labelled cloud
comes back on /points/labels, then write what came back to a JSON file.

    python ros1_client.py CLOUD.npy RESULT.json TIMEOUT_S
"""
import json
import sys
import threading
import time

import numpy as np

sys.path.append("/usr/lib/python3/dist-packages")  # Debian's rospy, after the environment's packages

import rospy  # noqa: E402
import sensor_msgs.msg  # noqa: E402
import std_msgs.msg  # noqa: E402

from pcseg.ros.messages import numpy_to_pointcloud2, pointcloud2_to_numpy, stamp_to_ns  # noqa: E402


def main(cloud_path: str, result_path: str, timeout_s: float) -> int:
    scan = np.load(cloud_path)
    rospy.init_node("pcseg_test_client", disable_signals=True)
    received = {}
    done = threading.Event()

    def on_labels(message):
        if not done.is_set():
            received["message"], received["at"] = message, time.perf_counter()
            done.set()

    rospy.Subscriber("/points/labels", sensor_msgs.msg.PointCloud2, on_labels, queue_size=1, buff_size=2 ** 26)
    publisher = rospy.Publisher("/points", sensor_msgs.msg.PointCloud2, queue_size=1)
    deadline = time.perf_counter() + timeout_s
    sent = {}
    # Publish until the node answers: the first messages may go out before it has connected.
    while not done.is_set() and time.perf_counter() < deadline:
        if publisher.get_num_connections() and not sent:
            header = std_msgs.msg.Header(stamp=rospy.Time(1_700_000_000, 123), frame_id="velodyne")
            fields = {"xyz": scan[:, :3], "intensity": scan[:, 3]}
            publisher.publish(numpy_to_pointcloud2(fields, header, types=sensor_msgs.msg))
            sent["at"] = time.perf_counter()
        done.wait(0.2)
    if not done.is_set():
        json.dump({"error": f"no labelled cloud within {timeout_s} s (sent: {bool(sent)})"}, open(result_path, "w"))
        return 1
    message = received["message"]
    fields = pointcloud2_to_numpy(message, remove_nans=False)
    json.dump({
        "points": int(message.height * message.width), "labels": fields["label"].tolist(),
        "field_names": [f.name for f in message.fields], "frame_id": message.header.frame_id,
        "stamp": stamp_to_ns(message.header.stamp), "seconds": received["at"] - sent["at"],
        "xyz_equal": bool(np.array_equal(fields["xyz"], scan[:, :3])),
    }, open(result_path, "w"))
    rospy.signal_shutdown("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
