// CPU voxelisation: keys in parallel, then one serial pass that numbers the voxels and one
// that sums, so every voxel adds its points in ascending order at any thread count.
//
// Voxels are numbered in key order without sorting when the points' voxel bounding box is
// small (an RGB-D view, a room): a dense array over the box, scanned in order. A large box
// (a LiDAR sweep) takes a radix sort of the points by cell.
#include "voxelize/voxelize.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <utility>
#include <vector>

namespace pcseg {
namespace {

constexpr int64_t kSkipped = -1;  // a point with label -1
constexpr int64_t kInvalid = -2;  // a point outside the keys' range, or not finite

// Per-axis extremes of the voxel coordinates (offset by 2^20) of some points.
struct Box {
  int64_t low[3] = {kVoxelKeyMask, kVoxelKeyMask, kVoxelKeyMask};
  int64_t high[3] = {-1, -1, -1};
  bool invalid = false;  // a point outside the keys' range, or not finite
};

// keys[n] for every point (kSkipped for label -1, kInvalid outside the range) and the box
// of the valid ones, over chunks of points in parallel.
template <typename scalar_t>
Box compute_keys(const scalar_t* points, const int64_t* labels, int64_t N, double voxel_size,
                 int64_t* keys) {
  // The product in the points' dtype, as torch.floor(points * (1 / voxel_size)) does, so
  // that the map's Python lookups find the same voxels.
  const scalar_t scale = static_cast<scalar_t>(1.0 / voxel_size);
  const scalar_t bound = static_cast<scalar_t>(kVoxelKeyOffset);
  constexpr int64_t kChunk = 16384;
  const int64_t num_chunks = (N + kChunk - 1) / kChunk;
  std::vector<Box> boxes(num_chunks);
  at::parallel_for(0, num_chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t chunk = first; chunk < last; ++chunk) {
      Box box;
      for (int64_t n = chunk * kChunk; n < std::min(N, (chunk + 1) * kChunk); ++n) {
        if (labels != nullptr && labels[n] < 0) {
          keys[n] = kSkipped;
          continue;
        }
        int64_t key = 0;
        bool inside = true;
        for (int axis = 0; axis < 3; ++axis) {
          const scalar_t v = points[3 * n + axis] * scale;
          // floor(v) in [-2^20, 2^20) exactly when v is (NaN fails); truncation then a
          // step down is floor for such v, without a libm call.
          inside = inside && v >= -bound && v < bound;
          int64_t c = inside ? static_cast<int64_t>(v) : 0;
          c -= static_cast<scalar_t>(c) > v;
          c += kVoxelKeyOffset;
          box.low[axis] = std::min(box.low[axis], c);
          box.high[axis] = std::max(box.high[axis], c);
          key = (key << kVoxelKeyBits) | c;
        }
        keys[n] = inside ? key : kInvalid;
        box.invalid = box.invalid || !inside;
      }
      boxes[chunk] = box;
    }
  });
  Box all;
  for (const Box& box : boxes) {
    for (int axis = 0; axis < 3; ++axis) {
      all.low[axis] = std::min(all.low[axis], box.low[axis]);
      all.high[axis] = std::max(all.high[axis], box.high[axis]);
    }
    all.invalid = all.invalid || box.invalid;
  }
  return all;
}

template <typename scalar_t>
[[noreturn]] void fail_on_points(const scalar_t* points, const int64_t* keys, int64_t N,
                                 double voxel_size) {
  const scalar_t scale = static_cast<scalar_t>(1.0 / voxel_size);
  double low = std::numeric_limits<double>::infinity(), high = -low;
  for (int64_t n = 0; n < N; ++n) {
    if (keys[n] == kSkipped) continue;
    for (int axis = 0; axis < 3; ++axis) {
      const double shifted = std::floor(static_cast<double>(points[3 * n + axis] * scale)) +
                             static_cast<double>(kVoxelKeyOffset);
      if (!std::isfinite(shifted)) fail_voxel_range(shifted, shifted, voxel_size);
      low = std::min(low, shifted);
      high = std::max(high, shifted);
    }
  }
  fail_voxel_range(low, high, voxel_size);
}

inline int64_t key_axis(int64_t key, int axis) {
  return (key >> ((2 - axis) * kVoxelKeyBits)) & kVoxelKeyMask;
}

// Numbers the voxels in key order: replaces each point's key (kSkipped: -1) in place by its
// voxel's number (-1 for skipped points); returns the voxels' keys.
std::vector<int64_t> number_voxels(int64_t* keys, int64_t N, const Box& box) {
  int64_t* inverse = keys;
  std::vector<int64_t> voxel_keys;
  if (box.high[0] < 0) {  // no point kept
    std::fill(inverse, inverse + N, int64_t(-1));
    return voxel_keys;
  }
  const int64_t* low = box.low;
  const int64_t ex = box.high[0] - low[0] + 1, ey = box.high[1] - low[1] + 1;
  const int64_t ez = box.high[2] - low[2] + 1;
  const double cells = static_cast<double>(ex) * ey * ez;
  if (cells <= std::min<double>(4.0 * N + (1 << 20), double(1 << 24))) {
    // Dense box: mark the occupied cells, number them in cell order (= key order), look up.
    // A point's cell is its key minus the box corner's, re-based per axis.
    std::vector<int32_t> number(static_cast<size_t>(cells), -1);
    at::parallel_for(0, N, 16384, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        const int64_t key = keys[n];
        if (key < 0) {
          inverse[n] = -1;
          continue;
        }
        const int64_t cell =
            ((key_axis(key, 0) - low[0]) * ey + key_axis(key, 1) - low[1]) * ez + key_axis(key, 2) -
            low[2];
        inverse[n] = cell;
        // Threads may mark one cell together: each writes the same value, atomically.
        std::atomic_ref<int32_t>(number[cell]).store(0, std::memory_order_relaxed);
      }
    });
    int32_t next = 0;
    for (int64_t x = 0, cell = 0; x < ex; ++x) {
      for (int64_t y = 0; y < ey; ++y) {
        for (int64_t z = 0; z < ez; ++z, ++cell) {
          if (number[cell] < 0) continue;
          number[cell] = next++;
          voxel_keys.push_back(((x + low[0]) << (2 * kVoxelKeyBits)) |
                               ((y + low[1]) << kVoxelKeyBits) | (z + low[2]));
        }
      }
    }
    at::parallel_for(0, N, 16384, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        if (inverse[n] >= 0) inverse[n] = number[inverse[n]];
      }
    });
    return voxel_keys;
  }
  // Sparse: a stable LSD radix sort of the kept points by cell (key order again), in
  // digits of 11 bits over only the bits the box needs, then one scan numbers the runs.
  std::vector<uint64_t> cell, cell_sorted;
  std::vector<int64_t> order, order_sorted;
  cell.reserve(N);
  order.reserve(N);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t key = keys[n];
    if (key < 0) {
      inverse[n] = -1;
      continue;
    }
    // Each extent is at most 2^21, so the cell number fits 63 bits.
    cell.push_back((static_cast<uint64_t>(key_axis(key, 0) - low[0]) * ey +
                    static_cast<uint64_t>(key_axis(key, 1) - low[1])) *
                       ez +
                   static_cast<uint64_t>(key_axis(key, 2) - low[2]));
    order.push_back(n);
  }
  const size_t M = cell.size();
  const uint64_t last_cell = static_cast<uint64_t>(ex) * ey * ez - 1;
  int bits = 0;
  while (bits < 64 && (last_cell >> bits) != 0) ++bits;
  constexpr int kDigitBits = 11;
  constexpr size_t kDigits = size_t(1) << kDigitBits;
  cell_sorted.resize(M);
  order_sorted.resize(M);
  std::vector<size_t> offset(kDigits);
  for (int shift = 0; shift < bits; shift += kDigitBits) {
    std::fill(offset.begin(), offset.end(), size_t(0));
    for (size_t i = 0; i < M; ++i) ++offset[(cell[i] >> shift) & (kDigits - 1)];
    size_t total = 0;
    for (size_t& o : offset) total += std::exchange(o, total);
    for (size_t i = 0; i < M; ++i) {
      const size_t to = offset[(cell[i] >> shift) & (kDigits - 1)]++;
      cell_sorted[to] = cell[i];
      order_sorted[to] = order[i];
    }
    cell.swap(cell_sorted);
    order.swap(order_sorted);
  }
  int64_t number = -1;
  for (size_t i = 0; i < M; ++i) {
    const int64_t n = order[i];
    if (i == 0 || cell[i] != cell[i - 1]) {
      ++number;
      voxel_keys.push_back(keys[n]);  // read before the write below replaces it
    }
    inverse[n] = number;
  }
  return voxel_keys;
}

}  // namespace

VoxelizeResult voxelize_cpu(const at::Tensor& points_in, double voxel_size,
                            const at::Tensor& labels_in, int64_t num_classes,
                            const at::Tensor& values_in) {
  check_voxelize_inputs(points_in, voxel_size, labels_in, num_classes, values_in);
  const at::Tensor points = points_in.contiguous();
  const at::Tensor labels = labels_in.contiguous();
  const at::Tensor values = values_in.contiguous();
  const int64_t N = points.size(0), D = values.size(1);
  const int64_t* label_ptr = labels.numel() > 0 ? labels.data_ptr<int64_t>() : nullptr;
  at::Tensor inverse = at::empty({N}, points.options().dtype(at::kLong));
  // The keys go through inverse's storage: number_voxels overwrites each key with its voxel.
  int64_t* inv = inverse.data_ptr<int64_t>();
  Box box;
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "voxelize_cpu", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    box = compute_keys(p, label_ptr, N, voxel_size, inv);
    if (box.invalid) fail_on_points(p, inv, N, voxel_size);
  });
  const std::vector<int64_t> voxel_keys = number_voxels(inv, N, box);
  const int64_t U = static_cast<int64_t>(voxel_keys.size());
  at::Tensor keys_out = at::empty({U}, inverse.options());
  std::copy(voxel_keys.begin(), voxel_keys.end(), keys_out.data_ptr<int64_t>());
  at::Tensor counts = at::zeros({U}, inverse.options());
  at::Tensor point_sums = at::zeros({U, 3}, points.options().dtype(at::kDouble));
  at::Tensor label_counts = at::zeros({U, num_classes}, points.options().dtype(at::kFloat));
  at::Tensor value_sums = at::zeros({U, D}, values.options());
  int64_t* count = counts.data_ptr<int64_t>();
  double* position = point_sums.data_ptr<double>();
  float* label_count = label_counts.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "voxelize_cpu_sums", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    for (int64_t n = 0; n < N; ++n) {
      const int64_t v = inv[n];
      if (v < 0) continue;
      ++count[v];
      for (int axis = 0; axis < 3; ++axis) position[3 * v + axis] += p[3 * n + axis];
      if (label_ptr != nullptr) label_count[v * num_classes + label_ptr[n]] += 1.0f;
    }
  });
  if (D > 0) {
    AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "voxelize_cpu_values", [&] {
      const scalar_t* in = values.data_ptr<scalar_t>();
      scalar_t* out = value_sums.data_ptr<scalar_t>();
      for (int64_t n = 0; n < N; ++n) {
        const int64_t v = inv[n];
        if (v < 0) continue;
        for (int64_t d = 0; d < D; ++d) out[v * D + d] += in[n * D + d];
      }
    });
  }
  return {keys_out, inverse, counts, point_sums, label_counts, value_sums};
}

}  // namespace pcseg

TORCH_LIBRARY_IMPL(pcseg, CPU, m) { m.impl("voxelize", &pcseg::voxelize_cpu); }
