// Sparse voxelisation with per-voxel sums: the kernel behind pcseg.ops.voxelize, which
// turns each frame of pcseg's voxel maps into one row per occupied voxel.
//
// voxelize: the voxels the points occupy, as packed keys in ascending order, and per voxel
// the number of its points, the sum of their positions, their label counts and the sum of
// per-point value rows. A point whose label is -1 is skipped entirely.
//   Args:
//     points:       (N, 3) float32/float64, finite, within 2^20 voxels of the origin on
//                   every axis. Voxel (i, j, k) spans [i, i + 1) * voxel_size along x, ...;
//                   i = floor(x * (1 / voxel_size)) with the product in the points' dtype.
//     voxel_size:   double > 0.
//     labels:       (N,) int64 in [-1, num_classes), or (0,) for unlabelled points.
//     num_classes:  int >= 0; 0 without labels.
//     values:       (N, D) float32/float64 rows summed per voxel, D >= 0.
//   Returns:
//     keys:          (U,) int64 ascending, (i + 2^20) << 42 | (j + 2^20) << 21 | (k + 2^20).
//     inverse:       (N,) int64 voxel of each point in [0, U), -1 for skipped points.
//     counts:        (U,) int64 points per voxel.
//     point_sums:    (U, 3) float64 sum of the voxel's points.
//     label_counts:  (U, num_classes) float32 points of each label.
//     value_sums:    (U, D) the dtype of values.
//   Every sum adds a voxel's points in ascending point order on the CPU (deterministic at
//   any thread count); the CUDA kernel adds in an unspecified order.
#pragma once
#include <ATen/core/Tensor.h>

#include <cmath>
#include <tuple>

#include "common/checks.h"

namespace pcseg {

using VoxelizeResult =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

VoxelizeResult voxelize_cpu(const at::Tensor& points, double voxel_size, const at::Tensor& labels,
                            int64_t num_classes, const at::Tensor& values);
VoxelizeResult voxelize_cuda(const at::Tensor& points, double voxel_size, const at::Tensor& labels,
                             int64_t num_classes, const at::Tensor& values);

// Packing of voxel coordinates into one key: 21 bits per axis, offset by 2^20.
constexpr int kVoxelKeyBits = 21;
constexpr int64_t kVoxelKeyOffset = int64_t(1) << (kVoxelKeyBits - 1);
constexpr int64_t kVoxelKeyMask = (int64_t(1) << kVoxelKeyBits) - 1;

// The argument checks of voxelize_cpu and voxelize_cuda (not the points' values, which each
// kernel checks while it computes the keys).
inline void check_voxelize_inputs(const at::Tensor& points, double voxel_size,
                                  const at::Tensor& labels, int64_t num_classes,
                                  const at::Tensor& values) {
  TORCH_CHECK(points.dim() == 2 && points.size(1) == 3, "points must be (N, 3), got ",
              points.sizes());
  TORCH_CHECK(points.scalar_type() == at::kFloat || points.scalar_type() == at::kDouble,
              "points must be float32 or float64, got ", points.scalar_type());
  TORCH_CHECK(voxel_size > 0 && voxel_size < 1e300, "voxel_size must be a positive finite number, got ",
              voxel_size);
  TORCH_CHECK(num_classes >= 0, "num_classes must be >= 0, got ", num_classes);
  const int64_t N = points.size(0);
  check_index(labels, "labels");
  TORCH_CHECK(labels.dim() == 1 && (labels.size(0) == N || labels.size(0) == 0),
              "labels must be (N,) with N = ", N, " (the points) or (0,) for none, got ",
              labels.sizes());
  TORCH_CHECK(labels.size(0) == 0 || num_classes > 0,
              "num_classes must be > 0 when labels are given, got ", num_classes);
  check_same_device(labels, "labels", points, "points");
  if (labels.numel() > 0) {
    const auto lo = labels.min().item<int64_t>();
    const auto hi = labels.max().item<int64_t>();
    TORCH_CHECK(lo >= -1 && hi < num_classes, "labels must lie in [-1, ", num_classes,
                ") (-1: skip the point), got values in [", lo, ", ", hi, "]");
  }
  TORCH_CHECK(values.dim() == 2 && values.size(0) == N, "values must be (N, D) with N = ", N,
              " (the points), got ", values.sizes());
  TORCH_CHECK(values.scalar_type() == at::kFloat || values.scalar_type() == at::kDouble,
              "values must be float32 or float64, got ", values.scalar_type());
  check_same_device(values, "values", points, "points");
}

// The message for points outside the keys' range (or not finite), from the extreme voxel
// coordinates (already offset by 2^20) of the points.
[[noreturn]] inline void fail_voxel_range(double low, double high, double voxel_size) {
  TORCH_CHECK(std::isfinite(low) && std::isfinite(high), "points must be finite");
  TORCH_CHECK(false, "points span voxel indices [", low - kVoxelKeyOffset, ", ",
              high - kVoxelKeyOffset, "], beyond +-", kVoxelKeyOffset, " (+-",
              kVoxelKeyOffset * voxel_size, " m at voxel_size=", voxel_size, ")");
  __builtin_unreachable();
}

}  // namespace pcseg
