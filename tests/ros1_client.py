"""Test helper run as a subprocess against a live pcseg node (ROS 1): publish until the node
answers, then write what came back to a JSON file.

    python ros1_client.py segment CLOUD.npy RESULT.json TIMEOUT_S   # /points -> /points/labels
    python ros1_client.py fuse CLOUD.npy RESULT.json TIMEOUT_S      # /points/labels + /tf_static -> /pcseg/map
    python ros1_client.py fuse-lidar KITTI_DIR RESULT.json TIMEOUT_S  # cloud + label image + camera info + tf -> map
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


def _transform(parent, child, matrix):
    from scipy.spatial.transform import Rotation

    transform = geometry_msgs.msg.TransformStamped()
    transform.header = std_msgs.msg.Header(stamp=rospy.Time(*STAMP), frame_id=parent)
    transform.child_frame_id = child
    t, q = transform.transform.translation, transform.transform.rotation
    t.x, t.y, t.z = matrix[:3, 3]
    q.x, q.y, q.z, q.w = Rotation.from_matrix(matrix[:3, :3]).as_quat()
    return transform


def publish_static_transforms(*transforms):
    """Latched, as tf2's static broadcaster does; the default: map -> velodyne, 10 m along x."""
    if not transforms:
        offset = np.eye(4)
        offset[0, 3] = 10.0
        transforms = [_transform("map", "velodyne", offset)]
    publisher = rospy.Publisher("/tf_static", tf2_msgs.msg.TFMessage, queue_size=1, latch=True)
    publisher.publish(tf2_msgs.msg.TFMessage(transforms=list(transforms)))
    return publisher


def lidar_camera_messages(kitti_dir: str):
    """(cloud, label image, camera info) messages of the KITTI sample, and the static transforms."""
    from pathlib import Path

    from pcseg.bridge import KittiCalibration
    from pcseg.data.kitti import read_velodyne_bin
    from pcseg.data.rgbd import read_image
    from pcseg.ros.messages import numpy_to_image

    folder = Path(kitti_dir)
    scan = read_velodyne_bin(folder / "velodyne.bin")
    image = read_image(folder / "image_2.png", "RGB")
    height, width = image.shape[:2]
    camera, T_cam_from_velo = KittiCalibration.from_file(folder / "calib.txt").camera(2, width, height)
    header = std_msgs.msg.Header(stamp=rospy.Time(*STAMP), frame_id="velodyne")
    cloud = numpy_to_pointcloud2({"xyz": scan[:, :3], "intensity": scan[:, 3]}, header, types=sensor_msgs.msg)
    camera_header = std_msgs.msg.Header(stamp=rospy.Time(*STAMP), frame_id="camera2_optical")
    labels = numpy_to_image((image[..., 1] // 64).astype(np.uint8), "mono8", camera_header, types=sensor_msgs.msg)
    info = sensor_msgs.msg.CameraInfo(
        header=camera_header,
        width=width,
        height=height,
        distortion_model="plumb_bob",
        D=[0.0] * 5,
        K=camera.matrix.ravel().tolist(),
        R=np.eye(3).ravel().tolist(),
        P=np.hstack([camera.matrix, np.zeros((3, 1))]).ravel().tolist(),
    )
    offset = np.eye(4)
    offset[0, 3] = 10.0
    transforms = [
        _transform("map", "velodyne", offset),
        _transform("velodyne", "camera2_optical", np.linalg.inv(T_cam_from_velo)),
    ]
    return cloud, labels, info, transforms


def fuse_lidar(result_path: str, kitti_dir: str, timeout_s: float) -> int:
    """Publish the KITTI scan, its label image and camera info until the node's map comes back."""
    cloud, labels, info, transforms = lidar_camera_messages(kitti_dir)
    keep = publish_static_transforms(*transforms)  # noqa: F841 (the latched publisher must stay alive)
    info_publisher = rospy.Publisher("/camera_info", sensor_msgs.msg.CameraInfo, queue_size=1, latch=True)
    info_publisher.publish(info)
    received = {}
    done = threading.Event()
    rospy.Subscriber(
        "/pcseg/map",
        sensor_msgs.msg.PointCloud2,
        lambda message: done.is_set() or (received.update(message=message), done.set()),
        queue_size=1,
        buff_size=2**26,
    )
    clouds = rospy.Publisher("/velodyne_points", sensor_msgs.msg.PointCloud2, queue_size=1)
    images = rospy.Publisher("/segmentation", sensor_msgs.msg.Image, queue_size=1)
    deadline = time.perf_counter() + timeout_s
    # The node pairs each label image with the nearest cloud it holds: the cloud goes first,
    # and both again every few seconds until the map arrives (the node may connect late).
    while not done.is_set() and time.perf_counter() < deadline:
        if clouds.get_num_connections() and images.get_num_connections():
            clouds.publish(cloud)
            time.sleep(0.5)
            images.publish(labels)
        done.wait(3.0)
    if not done.is_set():
        json.dump({"error": f"no map within {timeout_s} s"}, open(result_path, "w"))
        return 1
    message = received["message"]
    answer = pointcloud2_to_numpy(message)
    json.dump(
        {
            "points": int(message.width),
            "labels": answer["label"].tolist(),
            "xyz": answer["xyz"].tolist(),
            "frame_id": message.header.frame_id,
        },
        open(result_path, "w"),
    )
    return 0


def main(mode: str, cloud_path: str, result_path: str, timeout_s: float) -> int:
    rospy.init_node("pcseg_test_client", disable_signals=True)
    if mode == "fuse-lidar":
        status = fuse_lidar(result_path, cloud_path, timeout_s)
        rospy.signal_shutdown("done")
        return status
    scan = np.load(cloud_path)
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
        keep = publish_static_transforms()  # noqa: F841 (the latched publisher must stay alive)
    rospy.Subscriber(topics[1], sensor_msgs.msg.PointCloud2, on_answer, queue_size=1, buff_size=2**26)
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
        json.dump(
            {"error": f"no answer on {topics[1]} within {timeout_s} s (sent: {bool(sent)})"}, open(result_path, "w")
        )
        return 1
    message = received["message"]
    answer = pointcloud2_to_numpy(message, remove_nans=False)
    json.dump(
        {
            "points": int(message.height * message.width),
            "labels": answer["label"].tolist(),
            "xyz": answer["xyz"].tolist(),
            "field_names": [f.name for f in message.fields],
            "frame_id": message.header.frame_id,
            "stamp": stamp_to_ns(message.header.stamp),
            "seconds": received["at"] - sent["at"],
        },
        open(result_path, "w"),
    )
    rospy.signal_shutdown("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
