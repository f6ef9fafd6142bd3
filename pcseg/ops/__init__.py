"""Native point-cloud ops (C++ CPU kernels, CUDA kernels) with pure-PyTorch references.

Conventions: padded batches (B, N, 3) with optional `lengths (B,)`; an unbatched (N, 3) input
returns unbatched output; features are channels-last (B, N, C); index results use -1 for
"no point". Every op `x` has a reference `x_naive` with identical results, used by the tests.
"""

from pcseg.ops._extension import HAS_CUDA_KERNELS
from pcseg.ops.ball_query import ball_query, ball_query_naive
from pcseg.ops.estimate_normals import estimate_normals, estimate_normals_naive
from pcseg.ops.farthest_point_sample import farthest_point_sample, farthest_point_sample_naive
from pcseg.ops.gather_points import gather_points, gather_points_naive, group_points, group_points_naive
from pcseg.ops.knn import knn, knn_naive
from pcseg.ops.ring_query import ring_query, ring_query_naive
from pcseg.ops.three_nn_interpolate import three_nn_interpolate, three_nn_interpolate_naive
from pcseg.ops.voxelize import Voxelized, voxelize, voxelize_naive

__all__ = [
    "HAS_CUDA_KERNELS",
    "Voxelized",
    "ball_query",
    "ball_query_naive",
    "estimate_normals",
    "estimate_normals_naive",
    "farthest_point_sample",
    "farthest_point_sample_naive",
    "gather_points",
    "gather_points_naive",
    "group_points",
    "group_points_naive",
    "knn",
    "knn_naive",
    "ring_query",
    "ring_query_naive",
    "three_nn_interpolate",
    "three_nn_interpolate_naive",
    "voxelize",
    "voxelize_naive",
]
