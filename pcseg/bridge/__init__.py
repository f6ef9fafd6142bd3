"""The 2D <-> 3D bridge: cameras, back-projection, projection, painting and multi-frame fusion.

Pixel convention: 0-based pixel centres, (u, v) = (column, row). Poses: 4x4
`T_<to>_from_<from>` matrices. numpy in -> numpy out, torch in -> torch out.
"""
from pcseg.bridge.camera import (
    KittiCalibration,
    PinholeCamera,
    decode_sunrgbd_depth,
    read_sunrgbd_extrinsics,
    read_sunrgbd_toolbox_calib,
)
from pcseg.bridge.fusion import FusedPrediction, VoxelLabelMap, VoxelQuery, default_palette, late_fusion
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
    "late_fusion",
    "paint_points",
    "project_points",
    "read_sunrgbd_extrinsics",
    "read_sunrgbd_toolbox_calib",
    "render_labels",
]
