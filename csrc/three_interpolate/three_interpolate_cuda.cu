// CUDA 3-neighbour interpolation and its backward, equal to the CPU kernels bit for bit: every
// sum runs in the CPU loop's order (no FMA contraction, --fmad=false). The scatter into
// grad_features is deterministic: entries are grouped by target row with a stable sort
// (common/row_segments.cuh) instead of racing atomicAdds.
#include "three_interpolate/three_interpolate.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/grid.cuh"
#include "common/row_segments.cuh"

namespace pcseg {
namespace {

// out[b, i, c] = sum_j weight[b, i, j] * features[b, idx[b, i, j], c], j = 0, 1, 2 in order.
template <typename T>
__global__ void three_interpolate_kernel(const T* __restrict__ features,
                                         const int64_t* __restrict__ idx,
                                         const T* __restrict__ weight, int64_t n, int64_t m,
                                         int64_t C, int64_t total, T* __restrict__ out) {
  for (int64_t e = grid_start(); e < total; e += grid_stride()) {
    const int64_t flat = e / C, c = e % C;  // flat = b * n + i
    const T* frows = features + (flat / n) * m * C;
    T acc = 0;
    for (int j = 0; j < 3; ++j) {
      const int64_t src = idx[flat * 3 + j];
      if (src < 0) continue;
      acc += weight[flat * 3 + j] * frows[src * C + c];
    }
    out[e] = acc;
  }
}

// grad_weight[b, i, j] = sum_c grad[b, i, c] * features[b, idx[b, i, j], c], c ascending.
template <typename T>
__global__ void three_interpolate_grad_weight_kernel(const T* __restrict__ grad,
                                                     const T* __restrict__ features,
                                                     const int64_t* __restrict__ idx, int64_t n,
                                                     int64_t m, int64_t C, int64_t total,
                                                     T* __restrict__ grad_weight) {
  for (int64_t e = grid_start(); e < total; e += grid_stride()) {
    const int64_t src = idx[e];
    if (src < 0) continue;  // stays 0
    const int64_t flat = e / 3;
    const T* grow = grad + flat * C;
    const T* frow = features + ((flat / n) * m + src) * C;
    T acc = 0;
    for (int64_t c = 0; c < C; ++c) acc += grow[c] * frow[c];
    grad_weight[e] = acc;
  }
}

// grad_features[r, c] = sum over the entries e = (b, i, j) of row r, ascending, of
// weight[e] * grad[b, i, c]: the order of the CPU loop over i then j.
template <typename T>
__global__ void three_interpolate_grad_features_kernel(const T* __restrict__ grad,
                                                       const T* __restrict__ weight,
                                                       const int64_t* __restrict__ entries,
                                                       const int64_t* __restrict__ offsets,
                                                       int64_t C, int64_t total,
                                                       T* __restrict__ grad_features) {
  for (int64_t e = grid_start(); e < total; e += grid_stride()) {
    const int64_t r = e / C, c = e % C;
    T acc = 0;
    for (int64_t p = offsets[r]; p < offsets[r + 1]; ++p) {
      const int64_t entry = entries[p];  // (b * n + i) * 3 + j
      acc += weight[entry] * grad[(entry / 3) * C + c];
    }
    grad_features[e] = acc;
  }
}

}  // namespace

at::Tensor three_interpolate_cuda(const at::Tensor& features_in, const at::Tensor& idx_in,
                                  const at::Tensor& weight_in) {
  check_three_interpolate_inputs(features_in, idx_in, weight_in);
  const c10::cuda::CUDAGuard device_guard(features_in.device());
  const at::Tensor features = features_in.contiguous(), idx = idx_in.contiguous(),
                   weight = weight_in.contiguous();
  const int64_t B = features.size(0), m = features.size(1), C = features.size(2),
                n = idx.size(1);
  auto out = at::empty({B, n, C}, features.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "three_interpolate_cuda", [&] {
    three_interpolate_kernel<scalar_t><<<grid_for(total), kElementwiseThreads, 0, stream>>>(
        features.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), weight.data_ptr<scalar_t>(), n,
        m, C, total, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> three_interpolate_backward_cuda(const at::Tensor& grad_in,
                                                                   const at::Tensor& features_in,
                                                                   const at::Tensor& idx_in,
                                                                   const at::Tensor& weight_in) {
  check_three_interpolate_backward_inputs(grad_in, features_in, idx_in, weight_in);
  const c10::cuda::CUDAGuard device_guard(features_in.device());
  const at::Tensor grad = grad_in.contiguous().to(features_in.scalar_type());
  const at::Tensor features = features_in.contiguous(), idx = idx_in.contiguous(),
                   weight = weight_in.contiguous();
  const int64_t B = features.size(0), m = features.size(1), C = features.size(2),
                n = idx.size(1);
  auto grad_features = at::zeros_like(features);
  auto grad_weight = at::zeros_like(weight);
  if (B == 0 || n == 0) return {grad_features, grad_weight};
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "three_interpolate_backward_cuda", [&] {
    const int64_t weight_total = grad_weight.numel();
    three_interpolate_grad_weight_kernel<scalar_t>
        <<<grid_for(weight_total), kElementwiseThreads, 0, stream>>>(
            grad.data_ptr<scalar_t>(), features.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), n,
            m, C, weight_total, grad_weight.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t features_total = grad_features.numel();
    if (features_total == 0) return;
    const RowSegments segments = row_segments(idx.reshape({B, n * 3}), m);
    three_interpolate_grad_features_kernel<scalar_t>
        <<<grid_for(features_total), kElementwiseThreads, 0, stream>>>(
            grad.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(),
            segments.entries.data_ptr<int64_t>(), segments.offsets.data_ptr<int64_t>(), C,
            features_total, grad_features.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_features, grad_weight};
}

}  // namespace pcseg
