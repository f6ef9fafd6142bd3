"""pcseg on a robot: ROS message conversion, bags and live nodes.

`pcseg.ros.messages` converts PointCloud2, Image, CameraInfo and TransformStamped messages
to and from numpy with no ROS install (duck typing). `pcseg.ros.bags` runs `pcseg predict
--bag` and `pcseg fuse --bag` through `rosbags`; `pcseg.ros.node` is the live node behind
`pcseg ros segment` / `pcseg ros fuse` (rospy, or rclpy where it is importable). Nothing of
ROS is imported until a node starts.
"""
from pcseg.ros.messages import (
    CameraInfoModel,
    UNLABELLED,
    camera_from_camera_info,
    image_to_numpy,
    labelled_pointcloud2,
    numpy_to_image,
    numpy_to_pointcloud2,
    pointcloud2_to_numpy,
    stamp_to_ns,
    transform_to_matrix,
)

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
