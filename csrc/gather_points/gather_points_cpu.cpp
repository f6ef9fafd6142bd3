#include "gather_points/gather_points.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/zeros.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

namespace pcseg {

at::Tensor gather_rows_cpu(const at::Tensor& features_in, const at::Tensor& idx_in) {
  check_gather_rows_inputs(features_in, idx_in);
  const int64_t B = features_in.size(0), N = features_in.size(1), C = features_in.size(2);
  const at::Tensor features = features_in.contiguous();
  const at::Tensor idx = idx_in.contiguous();
  const int64_t S = idx.size(1);
  auto out = at::zeros({B, S, C}, features.options());
  const int64_t* ip = idx.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "gather_rows_cpu", [&] {
    const scalar_t* f = features.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * S, std::max<int64_t>(1, 4096 / std::max<int64_t>(C, 1)),
                     [&](int64_t begin, int64_t end) {
                       for (int64_t flat = begin; flat < end; ++flat) {
                         const int64_t j = ip[flat];
                         if (j < 0) continue;
                         const int64_t b = flat / S;
                         std::memcpy(o + flat * C, f + (b * N + j) * C, C * sizeof(scalar_t));
                       }
                     });
  });
  return out;
}

at::Tensor gather_rows_backward_cpu(const at::Tensor& grad_in, const at::Tensor& idx_in,
                                    int64_t num_rows) {
  check_gather_rows_backward_inputs(grad_in, idx_in, num_rows);
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor idx = idx_in.contiguous();
  const int64_t B = grad.size(0), S = grad.size(1), C = grad.size(2);
  auto out = at::zeros({B, num_rows, C}, grad.options());
  const int64_t* ip = idx.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "gather_rows_backward_cpu", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    // Several s may scatter into the same row, so threads own disjoint channel ranges of a
    // cloud instead of disjoint s: no atomics, and the summation order is fixed
    // (deterministic gradients).
    const int64_t chunk = 16;
    const int64_t n_chunks = (C + chunk - 1) / chunk;
    at::parallel_for(0, B * n_chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / n_chunks;
        const int64_t c0 = (task % n_chunks) * chunk, c1 = std::min(C, c0 + chunk);
        for (int64_t s = 0; s < S; ++s) {
          const int64_t j = ip[b * S + s];
          if (j < 0) continue;
          const scalar_t* gs = g + (b * S + s) * C;
          scalar_t* oj = o + (b * num_rows + j) * C;
          for (int64_t c = c0; c < c1; ++c) oj[c] += gs[c];
        }
      }
    });
  });
  return out;
}

}  // namespace pcseg

TORCH_LIBRARY_IMPL(pcseg, CPU, m) {
  m.impl("gather_rows", &pcseg::gather_rows_cpu);
  m.impl("gather_rows_backward", &pcseg::gather_rows_backward_cpu);
}
