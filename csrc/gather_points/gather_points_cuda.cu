// CUDA row gather and its adjoint. The forward copies rows (exact). The backward is
// deterministic and equals gather_rows_backward_cpu bit for bit: the entries of each target
// row are grouped by a stable sort (common/row_segments.cuh) and summed in ascending s, the
// order of the CPU loop, instead of racing atomicAdds.
#include "gather_points/gather_points.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/grid.cuh"
#include "common/row_segments.cuh"

namespace pcseg {
namespace {

// out[b, s, c] = features[b, idx[b, s], c], 0 where idx is -1.
template <typename T>
__global__ void gather_rows_kernel(const T* __restrict__ features, const int64_t* __restrict__ idx,
                                   int64_t S, int64_t N, int64_t C, int64_t total,
                                   T* __restrict__ out) {
  for (int64_t e = grid_start(); e < total; e += grid_stride()) {
    const int64_t row = e / C, c = e % C;  // row = b * S + s
    const int64_t j = idx[row];
    out[e] = j < 0 ? T(0) : features[((row / S) * N + j) * C + c];
  }
}

// grad_features[r, c] = sum over the entries of row r (ascending s) of grad[entry, c].
template <typename T>
__global__ void gather_rows_backward_kernel(const T* __restrict__ grad,
                                            const int64_t* __restrict__ entries,
                                            const int64_t* __restrict__ offsets, int64_t C,
                                            int64_t total, T* __restrict__ out) {
  for (int64_t e = grid_start(); e < total; e += grid_stride()) {
    const int64_t r = e / C, c = e % C;
    T acc = 0;
    for (int64_t p = offsets[r]; p < offsets[r + 1]; ++p) acc += grad[entries[p] * C + c];
    out[e] = acc;
  }
}

}  // namespace

at::Tensor gather_rows_cuda(const at::Tensor& features_in, const at::Tensor& idx_in) {
  check_gather_rows_inputs(features_in, idx_in);
  const int64_t B = features_in.size(0), N = features_in.size(1), C = features_in.size(2);
  const c10::cuda::CUDAGuard device_guard(features_in.device());
  const at::Tensor features = features_in.contiguous();
  const at::Tensor idx = idx_in.contiguous();
  const int64_t S = idx.size(1);
  auto out = at::empty({B, S, C}, features.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "gather_rows_cuda", [&] {
    gather_rows_kernel<scalar_t><<<grid_for(total), kElementwiseThreads, 0, stream>>>(
        features.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), S, N, C, total,
        out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor gather_rows_backward_cuda(const at::Tensor& grad_in, const at::Tensor& idx_in,
                                     int64_t num_rows) {
  check_gather_rows_backward_inputs(grad_in, idx_in, num_rows);
  const c10::cuda::CUDAGuard device_guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor idx = idx_in.contiguous();
  const int64_t B = grad.size(0), C = grad.size(2);
  auto out = at::zeros({B, num_rows, C}, grad.options());
  const int64_t total = out.numel();
  if (total == 0 || idx.numel() == 0) return out;
  const RowSegments segments = row_segments(idx, num_rows);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "gather_rows_backward_cuda", [&] {
    gather_rows_backward_kernel<scalar_t><<<grid_for(total), kElementwiseThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), segments.entries.data_ptr<int64_t>(),
        segments.offsets.data_ptr<int64_t>(), C, total, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace pcseg
