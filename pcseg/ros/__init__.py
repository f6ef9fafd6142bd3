"""pcseg on a robot: ROS message conversion, bags and live nodes.

`pcseg.ros.messages` converts PointCloud2, Image, CameraInfo and TransformStamped messages
to and from numpy with no ROS install (duck typing). `pcseg.ros.bags` runs `pcseg predict
--bag` and `pcseg fuse --bag` through `rosbags`; `pcseg.ros.node` is the live node behind
`pcseg ros segment` / `pcseg ros fuse` (rospy, or rclpy where it is importable). Nothing of
ROS is imported until a node starts, and the names below load on first use, so the CLI's
parser (which imports `pcseg.ros.cli`) stays cheap.

    from pcseg.ros import pointcloud2_to_numpy, labelled_pointcloud2
"""

__all__ = [
    "CameraInfoModel",
    "UNLABELLED",
    "camera_from_camera_info",
    "image_to_numpy",
    "labelled_pointcloud2",
    "numpy_to_image",
    "numpy_to_pointcloud2",
    "pointcloud2_to_numpy",
    "stamp_to_ns",
    "transform_to_matrix",
]


def __getattr__(name):
    if name in __all__:
        from pcseg.ros import messages

        return getattr(messages, name)
    raise AttributeError(f"module 'pcseg.ros' has no attribute {name!r}")
