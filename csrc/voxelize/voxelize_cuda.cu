// CUDA voxelisation: one kernel computes every point's packed key, then ATen's sorting
// unique numbers the voxels in key order and index_add_ forms the sums (atomic adds, so
// the order of the float additions is unspecified, unlike the CPU kernel's).
#include "voxelize/voxelize.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/_unique2.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/floor.h>
#include <ATen/ops/full.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/grid.cuh"

namespace pcseg {
namespace {

constexpr int64_t kSkipped = -1;  // a point with label -1
constexpr int64_t kInvalid = -2;  // a point outside the keys' range, or not finite

template <typename scalar_t>
__global__ void voxel_keys_kernel(const scalar_t* __restrict__ points,
                                  const int64_t* __restrict__ labels, int64_t N, scalar_t scale,
                                  int64_t* __restrict__ keys) {
  const scalar_t offset = static_cast<scalar_t>(kVoxelKeyOffset);
  const scalar_t limit = static_cast<scalar_t>(2 * kVoxelKeyOffset);
  for (int64_t n = grid_start(); n < N; n += grid_stride()) {
    if (labels != nullptr && labels[n] < 0) {
      keys[n] = kSkipped;
      continue;
    }
    // Multiply then floor, as the CPU kernel and torch.floor(points * (1 / size)) do
    // (--fmad=false keeps the product rounded on its own).
    const scalar_t x = floor(points[3 * n] * scale) + offset;
    const scalar_t y = floor(points[3 * n + 1] * scale) + offset;
    const scalar_t z = floor(points[3 * n + 2] * scale) + offset;
    const bool inside = x >= 0 && x < limit && y >= 0 && y < limit && z >= 0 && z < limit;
    keys[n] = inside ? (static_cast<int64_t>(x) << (2 * kVoxelKeyBits)) |
                           (static_cast<int64_t>(y) << kVoxelKeyBits) | static_cast<int64_t>(z)
                     : kInvalid;
  }
}

}  // namespace

VoxelizeResult voxelize_cuda(const at::Tensor& points_in, double voxel_size,
                             const at::Tensor& labels_in, int64_t num_classes,
                             const at::Tensor& values_in) {
  check_voxelize_inputs(points_in, voxel_size, labels_in, num_classes, values_in);
  const c10::cuda::CUDAGuard device_guard(points_in.device());
  const at::Tensor points = points_in.contiguous();
  const at::Tensor labels = labels_in.contiguous();
  const at::Tensor values = values_in.contiguous();
  const int64_t N = points.size(0);
  at::Tensor keys = at::empty({N}, points.options().dtype(at::kLong));
  if (N > 0) {
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "voxelize_cuda", [&] {
      voxel_keys_kernel<scalar_t><<<grid_for(N), kElementwiseThreads, 0, stream>>>(
          points.data_ptr<scalar_t>(), labels.numel() > 0 ? labels.data_ptr<int64_t>() : nullptr,
          N, static_cast<scalar_t>(1.0 / voxel_size), keys.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  const at::Tensor keep = at::nonzero(keys.ne(kSkipped)).squeeze(1);
  const at::Tensor kept_keys = keys.index_select(0, keep);
  if (kept_keys.numel() > 0 && kept_keys.eq(kInvalid).any().item<bool>()) {
    // The product in the points' dtype, like the kernel; NaN makes min / max NaN.
    const at::Tensor shifted =
        at::floor(points.index_select(0, keep).mul(1.0 / voxel_size))
            .to(at::kDouble)
            .add(static_cast<double>(kVoxelKeyOffset));
    fail_voxel_range(shifted.min().item<double>(), shifted.max().item<double>(), voxel_size);
  }
  at::Tensor voxel_keys, kept_inverse, counts;
  std::tie(voxel_keys, kept_inverse, counts) =
      at::_unique2(kept_keys, /*sorted=*/true, /*return_inverse=*/true, /*return_counts=*/true);
  const int64_t U = voxel_keys.size(0);
  at::Tensor inverse = at::full({N}, -1, keys.options());
  inverse.index_copy_(0, keep, kept_inverse);
  at::Tensor point_sums = at::zeros({U, 3}, points.options().dtype(at::kDouble));
  point_sums.index_add_(0, kept_inverse, points.index_select(0, keep).to(at::kDouble));
  at::Tensor label_counts = at::zeros({U * num_classes}, points.options().dtype(at::kFloat));
  if (labels.numel() > 0 && keep.numel() > 0) {
    const at::Tensor cells = kept_inverse.mul(num_classes).add(labels.index_select(0, keep));
    label_counts.index_add_(0, cells, at::ones({cells.size(0)}, label_counts.options()));
  }
  at::Tensor value_sums = at::zeros({U, values.size(1)}, values.options());
  if (values.size(1) > 0) value_sums.index_add_(0, kept_inverse, values.index_select(0, keep));
  return {voxel_keys, inverse, counts, point_sums, label_counts.view({U, num_classes}), value_sums};
}

}  // namespace pcseg
