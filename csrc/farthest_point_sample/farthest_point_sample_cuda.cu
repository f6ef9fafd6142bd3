// CUDA farthest point sampling: one block per cloud. Every step, each thread lowers the
// nearest-sample distances of its strided share of the points and proposes its farthest one;
// a block-wide argmax (warp shuffles, then one warp over the warp winners) picks the next
// sample. Results equal farthest_point_sample_cpu and the naive reference bit for bit: the
// distances are (dx*dx + dy*dy) + dz*dz without FMA (setup.py passes --fmad=false), and every
// comparison of the reduction prefers the lower index among equal distances, the tie rule of
// torch.argmax.
#include "farthest_point_sample/farthest_point_sample.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <climits>
#include <cstdint>
#include <limits>

namespace pcseg {
namespace {

constexpr int kFpsThreads = 512;
constexpr int kWarp = 32;

// (d, i) beats (best_d, best_i): farther, or as far with a lower index.
template <typename T>
__device__ __forceinline__ bool farther(T d, long long i, T best_d, long long best_i) {
  return d > best_d || (d == best_d && i < best_i);
}

template <typename T>
__device__ __forceinline__ void warp_argmax(T& best_d, long long& best_i) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const T other_d = __shfl_down_sync(0xffffffffu, best_d, offset);
    const long long other_i = __shfl_down_sync(0xffffffffu, best_i, offset);
    if (farther(other_d, other_i, best_d, best_i)) {
      best_d = other_d;
      best_i = other_i;
    }
  }
}

// points (B, N, 3), lengths (B,), start (B,); min_d2 (B, N) scratch; out (B, num_samples)
// prefilled with -1.
template <typename T>
__global__ void __launch_bounds__(kFpsThreads)
    fps_kernel(const T* __restrict__ points, const int64_t* __restrict__ lengths,
               const int64_t* __restrict__ start, int64_t N, int64_t num_samples,
               T* __restrict__ min_d2, int64_t* __restrict__ out) {
  constexpr int kWarps = kFpsThreads / kWarp;
  __shared__ T warp_best_d[kWarps];
  __shared__ long long warp_best_i[kWarps];
  __shared__ long long chosen;

  const int64_t b = blockIdx.x;
  const int64_t n = lengths[b];
  const int64_t m = num_samples < n ? num_samples : n;
  const T* cloud = points + b * N * 3;
  T* md = min_d2 + b * N;
  int64_t* samples = out + b * num_samples;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;

  long long cur = start[b];
  for (int64_t i = 0; i < m; ++i) {
    if (threadIdx.x == 0) samples[i] = cur;
    const T sx = cloud[3 * cur], sy = cloud[3 * cur + 1], sz = cloud[3 * cur + 2];
    T best_d = -std::numeric_limits<T>::infinity();
    long long best_i = LLONG_MAX;
    // Each thread walks ascending indices, so the strict > keeps its lowest index on ties.
    for (int64_t j = threadIdx.x; j < n; j += kFpsThreads) {
      const T dx = cloud[3 * j] - sx, dy = cloud[3 * j + 1] - sy, dz = cloud[3 * j + 2] - sz;
      const T d = (dx * dx + dy * dy) + dz * dz;
      // The first step starts from +inf, like min_d2 in the reference (torch.minimum).
      const T v = (i == 0 || d < md[j]) ? d : md[j];
      md[j] = v;
      if (v > best_d) {
        best_d = v;
        best_i = j;
      }
    }
    warp_argmax(best_d, best_i);
    if (lane == 0) {
      warp_best_d[warp] = best_d;
      warp_best_i[warp] = best_i;
    }
    __syncthreads();
    if (warp == 0) {
      best_d = lane < kWarps ? warp_best_d[lane] : -std::numeric_limits<T>::infinity();
      best_i = lane < kWarps ? warp_best_i[lane] : LLONG_MAX;
      warp_argmax(best_d, best_i);
      if (lane == 0) chosen = best_i;
    }
    __syncthreads();
    // Safe to reuse the shared slots next step: they are rewritten only after every thread
    // has passed this barrier, and `chosen` only after the next step's first barrier.
    cur = chosen;
  }
}

}  // namespace

at::Tensor farthest_point_sample_cuda(const at::Tensor& points_in, const at::Tensor& lengths_in,
                                      int64_t num_samples, const at::Tensor& start_in) {
  check_farthest_point_sample_inputs(points_in, lengths_in, num_samples, start_in);
  const int64_t B = points_in.size(0), N = points_in.size(1);
  const c10::cuda::CUDAGuard device_guard(points_in.device());
  const at::Tensor points = points_in.contiguous();
  const at::Tensor lengths = lengths_in.contiguous();
  const at::Tensor start = start_in.contiguous();
  auto idx = at::full({B, num_samples}, -1, points.options().dtype(at::kLong));
  if (B == 0 || num_samples == 0 || N == 0) return idx;
  TORCH_CHECK(B <= INT_MAX, "farthest_point_sample_cuda: too many clouds (", B, ")");
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "farthest_point_sample_cuda", [&] {
    // Nearest-sample distances; every slot a step reads was written by the first step.
    auto min_d2 = at::empty({B, N}, points.options());
    fps_kernel<scalar_t><<<static_cast<unsigned int>(B), kFpsThreads, 0, stream>>>(
        points.data_ptr<scalar_t>(), lengths.data_ptr<int64_t>(), start.data_ptr<int64_t>(), N,
        num_samples, min_d2.data_ptr<scalar_t>(), idx.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return idx;
}

}  // namespace pcseg
