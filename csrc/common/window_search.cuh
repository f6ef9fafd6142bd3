// The CUDA driver shared by knn, ball_query and ring_query: one brute-force kernel that keeps,
// per query, the k nearest points whose squared distance d satisfies lo2 <= d < hi2.
//
// Exactness (the results equal the CPU kd-tree and the pure-PyTorch references bit for bit):
//   * d is (dx*dx + dy*dy) + dz*dz in the input dtype; setup.py passes --fmad=false so nvcc
//     does not fuse it into FMAs.
//   * Points are visited in ascending index order and a candidate only displaces strictly
//     farther entries, so among equal distances the lower index is kept and comes first: the
//     order of a stable sort of the distance row.
//   * ring_query's angular keys come from pcseg::angular_keys (common/angular_key.h),
//     the same float64 code the CPU kernel runs, sorted by a stable insertion sort.
//
// Layout: one thread per query, the queries of a block all in one cloud, the cloud's points
// streamed through shared memory in tiles. The sorted list of kept neighbours lives in a
// per-thread array for k <= 128 (templated capacity) and in a global scratch row beyond, so k
// is unbounded.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <climits>
#include <limits>
#include <tuple>

#include "common/angular_key.h"

namespace pcseg {

template <typename T>
struct DeviceNeighbor {
  T d;
  int64_t i;  // angular_keys reads items[j].i
};

template <typename T>
struct WindowSearchArgs {
  const T* query;               // (B, M, 3)
  const T* points;              // (B, N, 3)
  const T* normals;             // (B, M, 3), ring_query only
  const int64_t* query_lengths; // (B,)
  const int64_t* lengths;       // (B,)
  int64_t M, N, k;
  T lo2, hi2;
  T* dists;                     // (B, M, k), prefilled with +inf
  int64_t* idx;                 // (B, M, k), prefilled with -1
  DeviceNeighbor<T>* scratch;   // (B, M, k) when the list does not fit the thread's array
  double* key_scratch;          // (B, M, k) likewise, for the angular keys
};

constexpr int kWindowThreads = 128;
constexpr int kWindowTile = 256;  // points staged in shared memory per step

// kCap > 0: the list lives in a per-thread array of that capacity (k <= kCap);
// kCap == 0: it lives in args.scratch. kAngular: reorder the kept points by angle (ring_query).
template <typename T, int kCap, bool kAngular>
__global__ void __launch_bounds__(kWindowThreads)
    window_search_kernel(const WindowSearchArgs<T> args) {
  __shared__ T tile_x[kWindowTile];
  __shared__ T tile_y[kWindowTile];
  __shared__ T tile_z[kWindowTile];
  const int64_t blocks_per_cloud = (args.M + kWindowThreads - 1) / kWindowThreads;
  const int64_t b = blockIdx.x / blocks_per_cloud;
  const int64_t m = (blockIdx.x % blocks_per_cloud) * kWindowThreads + threadIdx.x;
  // Padded query rows keep the prefilled (+inf, -1) but still help load the tiles.
  const bool active = m < args.query_lengths[b];
  const int64_t n = args.lengths[b];
  const int64_t k = args.k;
  const int64_t flat = b * args.M + m;

  DeviceNeighbor<T> local_list[kCap > 0 ? kCap : 1];
  double local_key[(kCap > 0 && kAngular) ? kCap : 1];
  DeviceNeighbor<T>* list = local_list;
  double* key = local_key;
  T qx = 0, qy = 0, qz = 0;
  if (active) {
    if (kCap == 0) {
      list = args.scratch + flat * k;
      if (kAngular) key = args.key_scratch + flat * k;
    }
    const T* q = args.query + flat * 3;
    qx = q[0];
    qy = q[1];
    qz = q[2];
  }

  int64_t count = 0;  // list[0, count) holds the kept neighbours, ascending by (d, index)
  const T* cloud = args.points + b * args.N * 3;
  for (int64_t base = 0; base < n; base += kWindowTile) {
    const int tile_n = static_cast<int>(n - base < kWindowTile ? n - base : kWindowTile);
    __syncthreads();  // the previous tile is no longer read
    for (int t = threadIdx.x; t < tile_n; t += kWindowThreads) {
      const T* p = cloud + (base + t) * 3;
      tile_x[t] = p[0];
      tile_y[t] = p[1];
      tile_z[t] = p[2];
    }
    __syncthreads();
    if (!active) continue;
    for (int t = 0; t < tile_n; ++t) {
      // Same operand order as the references: point minus query.
      const T dx = tile_x[t] - qx, dy = tile_y[t] - qy, dz = tile_z[t] - qz;
      const T d = (dx * dx + dy * dy) + dz * dz;
      if (!(d >= args.lo2 && d < args.hi2)) continue;
      // Equal to the worst kept distance loses: its index is higher.
      if (count == k && !(d < list[k - 1].d)) continue;
      int64_t pos = count < k ? count : k - 1;  // when full, the worst is overwritten
      while (pos > 0 && list[pos - 1].d > d) {
        list[pos] = list[pos - 1];
        --pos;
      }
      list[pos].d = d;
      list[pos].i = base + t;
      if (count < k) ++count;
    }
  }
  if (!active) return;

  if (kAngular && count >= 2) {
    const T* normal = args.normals + flat * 3;
    if (angular_keys(args.query + flat * 3, normal, cloud, list, count, key)) {
      // Stable insertion sort by key: equal angles keep distance order, as std::stable_sort
      // on the CPU and torch.sort(stable=True) in the reference.
      for (int64_t a = 1; a < count; ++a) {
        const double ka = key[a];
        const DeviceNeighbor<T> item = list[a];
        int64_t pos = a;
        while (pos > 0 && key[pos - 1] > ka) {
          key[pos] = key[pos - 1];
          list[pos] = list[pos - 1];
          --pos;
        }
        key[pos] = ka;
        list[pos] = item;
      }
    }
  }
  T* drow = args.dists + flat * k;
  int64_t* irow = args.idx + flat * k;
  for (int64_t j = 0; j < count; ++j) {
    drow[j] = list[j].d;
    irow[j] = list[j].i;
  }
}

template <typename T, int kCap, bool kAngular>
void launch_window_search(const WindowSearchArgs<T>& args, int64_t blocks, cudaStream_t stream) {
  window_search_kernel<T, kCap, kAngular>
      <<<static_cast<unsigned int>(blocks), kWindowThreads, 0, stream>>>(args);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// query (B, M, 3), points (B, N, 3), normals (B, M, 3) or undefined (when !kAngular),
// lengths (B,) int64, all on one CUDA device and already checked by check_search_inputs.
// Returns (dists2 (B, M, k), idx (B, M, k) int64).
template <typename T, bool kAngular>
std::tuple<at::Tensor, at::Tensor> window_search_cuda(
    const at::Tensor& query_in, const at::Tensor& points_in, const at::Tensor& normals_in,
    const at::Tensor& query_lengths_in, const at::Tensor& lengths_in, int64_t k, T lo2, T hi2) {
  const at::Tensor query = query_in.contiguous();
  const at::Tensor points = points_in.contiguous();
  const at::Tensor query_lengths = query_lengths_in.contiguous();
  const at::Tensor lengths = lengths_in.contiguous();
  const int64_t B = query.size(0), M = query.size(1), N = points.size(1);
  at::Tensor dists = at::full({B, M, k}, std::numeric_limits<T>::infinity(), query.options());
  at::Tensor idx = at::full({B, M, k}, -1, query.options().dtype(at::kLong));
  if (B == 0 || M == 0 || N == 0) return {dists, idx};

  const int64_t blocks_per_cloud = (M + kWindowThreads - 1) / kWindowThreads;
  const int64_t blocks = B * blocks_per_cloud;
  TORCH_CHECK(blocks <= INT_MAX, "query is too large for one launch: B * ceil(M / ",
              kWindowThreads, ") = ", blocks, " blocks");

  at::Tensor normals, scratch, key_scratch;
  WindowSearchArgs<T> args{};
  args.query = query.data_ptr<T>();
  args.points = points.data_ptr<T>();
  args.normals = nullptr;
  if (kAngular) {
    normals = normals_in.contiguous();
    args.normals = normals.data_ptr<T>();
  }
  args.query_lengths = query_lengths.data_ptr<int64_t>();
  args.lengths = lengths.data_ptr<int64_t>();
  args.M = M;
  args.N = N;
  args.k = k;
  args.lo2 = lo2;
  args.hi2 = hi2;
  args.dists = dists.data_ptr<T>();
  args.idx = idx.data_ptr<int64_t>();
  args.scratch = nullptr;
  args.key_scratch = nullptr;

  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (k <= 8) {
    launch_window_search<T, 8, kAngular>(args, blocks, stream);
  } else if (k <= 32) {
    launch_window_search<T, 32, kAngular>(args, blocks, stream);
  } else if (k <= 128) {
    launch_window_search<T, 128, kAngular>(args, blocks, stream);
  } else {
    const int64_t row_bytes = k * static_cast<int64_t>(sizeof(DeviceNeighbor<T>));
    scratch = at::empty({B * M * row_bytes}, query.options().dtype(at::kByte));
    args.scratch = reinterpret_cast<DeviceNeighbor<T>*>(scratch.data_ptr<uint8_t>());
    if (kAngular) {
      key_scratch = at::empty({B * M * k}, query.options().dtype(at::kDouble));
      args.key_scratch = key_scratch.data_ptr<double>();
    }
    launch_window_search<T, 0, kAngular>(args, blocks, stream);
  }
  return {dists, idx};
}

}  // namespace pcseg
