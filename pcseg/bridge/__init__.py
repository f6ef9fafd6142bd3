"""The 2D <-> 3D bridge: cameras, back-projection, projection, painting and multi-frame fusion.

Pixel convention: 0-based pixel centres, (u, v) = (column, row). Poses: 4x4
`T_<to>_from_<from>` matrices. numpy in -> numpy out, torch in -> torch out.

    camera = PinholeCamera.from_one_based(fx, fy, cx, cy, width, height)  # NYU / SUN intrinsics
    frame = backproject_depth(depth_mm, camera, 1000.0, 8.0, pose=T_world_from_camera)
    labels = frame.take(label_map)                     # (N,) one per point, Open3D's order
    calibration = KittiCalibration.from_file("calib.txt")
    camera2, T_cam2_from_velo = calibration.camera(2, 1242, 375)
    painted = paint_points(scan, scores, camera2, T_cam2_from_velo)  # z > 0, z-buffer
    fusion_map = VoxelLabelMap(voxel_size=0.05, num_classes=20, mode="bayes")
    fusion_map.integrate(scan[painted.visible], probabilities=painted.probabilities[painted.visible])
    fused = fusion_map.query(scan)                     # labels, probabilities, known
    fusion_map.export_ply("map.ply")

Real sensors: `PinholeCamera(..., distortion=D, distortion_model="plumb_bob")` (ROS
CameraInfo models), `deskew_points` for a moving LiDAR sweep, `gravity_alignment` for a
z-up cloud from a tilted sensor.
"""

from pcseg.bridge.camera import (
    KittiCalibration,
    PinholeCamera,
    decode_sunrgbd_depth,
    read_sunrgbd_extrinsics,
    read_sunrgbd_toolbox_calib,
)
from pcseg.bridge.deskew import deskew_points, interpolate_pose
from pcseg.bridge.fusion import FusedPrediction, VoxelLabelMap, VoxelQuery, late_fusion
from pcseg.bridge.gravity import gravity_alignment
from pcseg.bridge.projection import (
    BackprojectedDepth,
    PaintedPoints,
    ProjectedPoints,
    RenderedLabels,
    backproject_depth,
    paint_points,
    project_points,
    render_labels,
)
from pcseg.io import default_palette

__all__ = [
    "BackprojectedDepth",
    "FusedPrediction",
    "KittiCalibration",
    "PaintedPoints",
    "PinholeCamera",
    "ProjectedPoints",
    "RenderedLabels",
    "VoxelLabelMap",
    "VoxelQuery",
    "backproject_depth",
    "decode_sunrgbd_depth",
    "default_palette",
    "deskew_points",
    "gravity_alignment",
    "interpolate_pose",
    "late_fusion",
    "paint_points",
    "project_points",
    "read_sunrgbd_extrinsics",
    "read_sunrgbd_toolbox_calib",
    "render_labels",
]
