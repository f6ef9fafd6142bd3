"""Data: procedural indoor rooms (the embedded default), S3DIS, SUN RGB-D, NYU Depth v2,
SemanticKITTI / KITTI readers, PointNet blocks, transforms and batching.

Modules: `synthetic` (generate_room, build_room, sample_room, render_view), `s3dis`
(prepare_s3dis, load_room, S3DISRooms, PointNet HDF5 blocks, splits), `blocks`
(room_to_blocks, predict_room, room_frame), `loading` (load_rooms: the rooms a config
names), `transforms` (augmentations, grid_subsample, collate), `sunrgbd`, `nyu`, `kitti`,
`classes` (class lists).
"""

from pcseg.data.blocks import (
    BlockDataset,
    class_balanced_centres,
    predict_room,
    random_block,
    room_frame,
    room_to_blocks,
)
from pcseg.data.classes import S3DIS_CLASS_COLORS, S3DIS_CLASS_NAMES
from pcseg.data.loading import LazyRooms, load_rooms
from pcseg.data.s3dis import S3DISRooms, load_room, prepare_s3dis
from pcseg.data.synthetic import SyntheticRooms, build_room, generate_room, look_at_pose, render_view, sample_room
from pcseg.data.transforms import collate, grid_subsample

__all__ = [
    "BlockDataset",
    "LazyRooms",
    "S3DISRooms",
    "S3DIS_CLASS_COLORS",
    "S3DIS_CLASS_NAMES",
    "SyntheticRooms",
    "build_room",
    "class_balanced_centres",
    "collate",
    "generate_room",
    "grid_subsample",
    "load_room",
    "load_rooms",
    "look_at_pose",
    "predict_room",
    "prepare_s3dis",
    "random_block",
    "render_view",
    "room_frame",
    "room_to_blocks",
    "sample_room",
]
