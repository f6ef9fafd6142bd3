#include "three_interpolate/three_interpolate.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "common/huge_pages.h"

namespace pcseg {

at::Tensor three_interpolate_cpu(const at::Tensor& features_in, const at::Tensor& idx_in,
                                 const at::Tensor& weight_in) {
  check_three_interpolate_inputs(features_in, idx_in, weight_in);
  const at::Tensor features = features_in.contiguous(), idx = idx_in.contiguous(),
                   weight = weight_in.contiguous();
  const int64_t B = features.size(0), m = features.size(1), C = features.size(2),
                n = idx.size(1);
  // Every element is written once (no zero fill first): acc = ((0 + w0 f0) + w1 f1) + w2 f2
  // per channel, skipping missing neighbours -- the order of the former in-place sums.
  auto out = at::empty({B, n, C}, features.options());
  advise_huge_pages(out);
  const int64_t* ip = idx.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "three_interpolate_cpu", [&] {
    const scalar_t* f = features.data_ptr<scalar_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * n, std::max<int64_t>(1, 2048 / std::max<int64_t>(C, 1)),
                     [&](int64_t begin, int64_t end) {
                       for (int64_t flat = begin; flat < end; ++flat) {
                         const int64_t b = flat / n;
                         scalar_t* orow = o + flat * C;
                         const scalar_t* frow[3];
                         scalar_t wj[3];
                         int used = 0;
                         for (int j = 0; j < 3; ++j) {
                           const int64_t src = ip[flat * 3 + j];
                           if (src < 0) continue;
                           frow[used] = f + (b * m + src) * C;
                           wj[used] = w[flat * 3 + j];
                           ++used;
                         }
                         if (used == 3) {
                           const scalar_t* f0 = frow[0];
                           const scalar_t* f1 = frow[1];
                           const scalar_t* f2 = frow[2];
                           const scalar_t w0 = wj[0], w1 = wj[1], w2 = wj[2];
                           for (int64_t c = 0; c < C; ++c) {
                             scalar_t acc = scalar_t(0);
                             acc += w0 * f0[c];
                             acc += w1 * f1[c];
                             acc += w2 * f2[c];
                             orow[c] = acc;
                           }
                         } else {
                           for (int64_t c = 0; c < C; ++c) {
                             scalar_t acc = scalar_t(0);
                             for (int j = 0; j < used; ++j) acc += wj[j] * frow[j][c];
                             orow[c] = acc;
                           }
                         }
                       }
                     });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> three_interpolate_backward_cpu(const at::Tensor& grad_in,
                                                                  const at::Tensor& features_in,
                                                                  const at::Tensor& idx_in,
                                                                  const at::Tensor& weight_in) {
  check_three_interpolate_backward_inputs(grad_in, features_in, idx_in, weight_in);
  const at::Tensor grad = grad_in.contiguous().to(features_in.scalar_type());
  const at::Tensor features = features_in.contiguous(), idx = idx_in.contiguous(),
                   weight = weight_in.contiguous();
  const int64_t B = features.size(0), m = features.size(1), C = features.size(2),
                n = idx.size(1);
  auto grad_features = at::zeros_like(features);
  auto grad_weight = at::zeros_like(weight);
  const int64_t* ip = idx.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "three_interpolate_backward_cpu", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const scalar_t* f = features.data_ptr<scalar_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    scalar_t* gf = grad_features.data_ptr<scalar_t>();
    scalar_t* gw = grad_weight.data_ptr<scalar_t>();
    // d/dweight: independent per (point, neighbour).
    at::parallel_for(0, B * n, 256, [&](int64_t begin, int64_t end) {
      for (int64_t flat = begin; flat < end; ++flat) {
        const int64_t b = flat / n;
        const scalar_t* grow = g + flat * C;
        for (int j = 0; j < 3; ++j) {
          const int64_t src = ip[flat * 3 + j];
          if (src < 0) continue;
          const scalar_t* frow = f + (b * m + src) * C;
          // kLanes partial sums: one running sum is a chain of dependent adds that the
          // compiler may not reorder (no -ffast-math), so it would neither vectorise nor
          // pipeline.
          constexpr int64_t kLanes = 8;
          scalar_t lanes[kLanes] = {};
          int64_t c = 0;
          for (; c + kLanes <= C; c += kLanes) {
            for (int64_t l = 0; l < kLanes; ++l) lanes[l] += grow[c + l] * frow[c + l];
          }
          scalar_t acc = 0;
          for (; c < C; ++c) acc += grow[c] * frow[c];
          for (int64_t l = 0; l < kLanes; ++l) acc += lanes[l];
          gw[flat * 3 + j] = acc;
        }
      }
    });
    // d/dfeatures scatters into shared rows: threads own disjoint channel ranges (no atomics,
    // deterministic order).
    const int64_t chunk = 16, n_chunks = (C + chunk - 1) / chunk;
    at::parallel_for(0, B * n_chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / n_chunks;
        const int64_t c0 = (task % n_chunks) * chunk, c1 = std::min(C, c0 + chunk);
        for (int64_t i = 0; i < n; ++i) {
          const int64_t flat = b * n + i;
          const scalar_t* grow = g + flat * C;
          for (int j = 0; j < 3; ++j) {
            const int64_t src = ip[flat * 3 + j];
            if (src < 0) continue;
            const scalar_t wj = w[flat * 3 + j];
            scalar_t* frow = gf + (b * m + src) * C;
            for (int64_t c = c0; c < c1; ++c) frow[c] += wj * grow[c];
          }
        }
      }
    });
  });
  return {grad_features, grad_weight};
}

}  // namespace pcseg

TORCH_LIBRARY_IMPL(pcseg, CPU, m) {
  m.impl("three_interpolate", &pcseg::three_interpolate_cpu);
  m.impl("three_interpolate_backward", &pcseg::three_interpolate_backward_cpu);
}
