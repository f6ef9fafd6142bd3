#include "estimate_normals/estimate_normals.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty_like.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <mutex>

#include "estimate_normals/symmetric_eigen.h"

namespace pcseg {

at::Tensor normals_from_neighbors_cpu(const at::Tensor& points_in, const at::Tensor& idx_in) {
  check_normals_from_neighbors_inputs(points_in, idx_in);
  const int64_t B = points_in.size(0), N = points_in.size(1), K = idx_in.size(2);
  const at::Tensor points = points_in.contiguous(), idx = idx_in.contiguous();
  auto normals = at::empty_like(points);
  const int64_t* ip = idx.data_ptr<int64_t>();
  // The range of idx is checked on the way (no separate passes over idx): a row holding an
  // index outside [-1, N) is not computed, and the call fails once every row is seen.
  int64_t idx_lo = std::numeric_limits<int64_t>::max();
  int64_t idx_hi = std::numeric_limits<int64_t>::min();
  std::mutex range_mutex;
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "normals_from_neighbors_cpu", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    scalar_t* out = normals.data_ptr<scalar_t>();
    at::parallel_for(0, B * N, 512, [&](int64_t begin, int64_t end) {
      int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
      for (int64_t flat = begin; flat < end; ++flat) {
        const int64_t b = flat / N;
        const int64_t* nb = ip + flat * K;
        for (int c = 0; c < 3; ++c) out[flat * 3 + c] = scalar_t(0);
        bool in_range = true;
        for (int64_t j = 0; j < K; ++j) {
          lo = std::min(lo, nb[j]);
          hi = std::max(hi, nb[j]);
          in_range &= nb[j] >= -1 && nb[j] < N;
        }
        if (!in_range) continue;
        // Two passes (mean, then centred moments) keep the covariance accurate for clouds far
        // from the origin, where E[xx] - E[x]^2 would cancel catastrophically.
        double mean[3] = {0, 0, 0};
        int64_t count = 0;
        for (int64_t j = 0; j < K; ++j) {
          if (nb[j] < 0) continue;
          const scalar_t* q = p + (b * N + nb[j]) * 3;
          mean[0] += q[0];
          mean[1] += q[1];
          mean[2] += q[2];
          ++count;
        }
        if (count < 3) continue;
        for (double& m : mean) m /= double(count);
        double cov[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t j = 0; j < K; ++j) {
          if (nb[j] < 0) continue;
          const scalar_t* q = p + (b * N + nb[j]) * 3;
          const double d[3] = {q[0] - mean[0], q[1] - mean[1], q[2] - mean[2]};
          for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 3; ++c) cov[3 * r + c] += d[r] * d[c];
        }
        double n[3];
        smallest_eigenvector(cov, n);
        for (int c = 0; c < 3; ++c) out[flat * 3 + c] = static_cast<scalar_t>(n[c]);
      }
      const std::lock_guard<std::mutex> lock(range_mutex);
      idx_lo = std::min(idx_lo, lo);
      idx_hi = std::max(idx_hi, hi);
    });
  });
  if (idx.numel() > 0) check_index_bounds(idx_lo, idx_hi, N);
  return normals;
}

}  // namespace pcseg

TORCH_LIBRARY_IMPL(pcseg, CPU, m) {
  m.impl("normals_from_neighbors", &pcseg::normals_from_neighbors_cpu);
}
