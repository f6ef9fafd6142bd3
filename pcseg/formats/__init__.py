"""Point cloud file formats, one module each: readers return every per-point field by name.

Each ``read_<format>(path)`` returns ``{field name: (N,) or (N, k) array}`` with the points as
``x``, ``y``, ``z`` and colour as ``red``, ``green``, ``blue``; `pcseg.io.read_point_cloud`
turns that into pcseg's cloud dict. Each writer writes atomically
(`pcseg.utils.atomic.atomic_write`, re-exported here).
"""

from pcseg.formats.arrays import (
    TABLE_LAYOUTS,
    read_kitti_bin,
    read_mat,
    read_npy,
    read_npz,
    read_nuscenes_bin,
    read_txt,
    write_npy,
    write_semantickitti_label,
)
from pcseg.formats.e57 import read_e57
from pcseg.formats.las import read_las, write_las
from pcseg.formats.pcd import read_pcd, write_pcd
from pcseg.formats.ply import read_ply, write_ply
from pcseg.utils.atomic import atomic_write

__all__ = [
    "TABLE_LAYOUTS",
    "atomic_write",
    "read_e57",
    "read_kitti_bin",
    "read_las",
    "read_mat",
    "read_npy",
    "read_npz",
    "read_nuscenes_bin",
    "read_pcd",
    "read_ply",
    "read_txt",
    "write_las",
    "write_npy",
    "write_pcd",
    "write_ply",
    "write_semantickitti_label",
]
