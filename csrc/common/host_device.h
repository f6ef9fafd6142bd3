// PCSEG_HOST_DEVICE marks a function that the CPU and CUDA kernels share: __host__ __device__
// under nvcc, a plain function under a host compiler.
#pragma once

#if defined(__CUDACC__)
#define PCSEG_HOST_DEVICE __host__ __device__
#else
#define PCSEG_HOST_DEVICE
#endif
