// CUDA PCA normals: one thread per point runs the CPU kernel's float64 code (two-pass
// covariance, then pcseg::smallest_eigenvector from symmetric_eigen.h), so the normals equal
// normals_from_neighbors_cpu bit for bit (IEEE division and sqrt, no FMA with --fmad=false).
#include "estimate_normals/estimate_normals.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/grid.cuh"
#include "estimate_normals/symmetric_eigen.h"

namespace pcseg {
namespace {

// points (B, N, 3), idx (B, N, K) -> normals (B, N, 3), prefilled with zeros.
template <typename T>
__global__ void normals_from_neighbors_kernel(const T* __restrict__ points,
                                              const int64_t* __restrict__ idx, int64_t N,
                                              int64_t K, int64_t total, T* __restrict__ out) {
  for (int64_t flat = grid_start(); flat < total; flat += grid_stride()) {
    const int64_t b = flat / N;
    const int64_t* nb = idx + flat * K;
    double mean[3] = {0, 0, 0};
    int64_t count = 0;
    for (int64_t j = 0; j < K; ++j) {
      if (nb[j] < 0) continue;
      const T* q = points + (b * N + nb[j]) * 3;
      mean[0] += q[0];
      mean[1] += q[1];
      mean[2] += q[2];
      ++count;
    }
    if (count < 3) continue;
    for (int c = 0; c < 3; ++c) mean[c] /= double(count);
    double cov[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t j = 0; j < K; ++j) {
      if (nb[j] < 0) continue;
      const T* q = points + (b * N + nb[j]) * 3;
      const double d[3] = {q[0] - mean[0], q[1] - mean[1], q[2] - mean[2]};
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) cov[3 * r + c] += d[r] * d[c];
    }
    double normal[3];
    smallest_eigenvector(cov, normal);
    for (int c = 0; c < 3; ++c) out[flat * 3 + c] = static_cast<T>(normal[c]);
  }
}

}  // namespace

at::Tensor normals_from_neighbors_cuda(const at::Tensor& points_in, const at::Tensor& idx_in) {
  check_normals_from_neighbors_inputs(points_in, idx_in);
  const int64_t B = points_in.size(0), N = points_in.size(1), K = idx_in.size(2);
  check_index_range(idx_in, N);
  const c10::cuda::CUDAGuard device_guard(points_in.device());
  const at::Tensor points = points_in.contiguous(), idx = idx_in.contiguous();
  auto normals = at::zeros_like(points);
  const int64_t total = B * N;
  if (total == 0 || K == 0) return normals;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "normals_from_neighbors_cuda", [&] {
    normals_from_neighbors_kernel<scalar_t><<<grid_for(total), kElementwiseThreads, 0, stream>>>(
        points.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), N, K, total,
        normals.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return normals;
}

}  // namespace pcseg
