// Launch geometry shared by the elementwise CUDA kernels.
#pragma once
#include <algorithm>
#include <cstdint>

namespace pcseg {

constexpr int kElementwiseThreads = 256;

// Blocks for a grid-stride loop over `work` items: enough to fill the GPU, capped so the grid
// size always fits (the loop covers the rest).
inline unsigned int grid_for(int64_t work, int threads = kElementwiseThreads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65536)));
}

// Grid-stride loop index step, in 64 bits so B * N * C beyond 2^31 is fine.
__device__ __forceinline__ int64_t grid_start() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

}  // namespace pcseg
