// Ball query: the k NEAREST points strictly inside a radius (not the first k found),
// ascending by squared distance, ties by lower index.
//
// Args:
//   query:          (B, M, 3) float32/float64 ball centres, padded.
//   points:         (B, N, 3) same dtype and device: the points searched, padded.
//   query_lengths:  (B,) int64 in [0, M]: rows >= query_lengths[b] of the output are padding.
//   lengths:        (B,) int64 in [0, N]: points rows >= lengths[b] are never returned.
//   radius:         finite float > 0: a point qualifies when its squared distance is below
//                   radius * radius (rounded in the points' dtype).
//   k:              int >= 1, neighbours per query.
//
// Returns:
//   dists2:  (B, M, k) same dtype as points: squared distances, ascending.
//   idx:     (B, M, k) int64: indices into points; -1 (and dist +inf) where fewer than k
//            points lie inside the ball.
#pragma once
#include <ATen/core/Tensor.h>

#include <cmath>
#include <tuple>

#include "common/search_checks.h"

namespace pcseg {

std::tuple<at::Tensor, at::Tensor> ball_query_cpu(const at::Tensor& query,
                                                  const at::Tensor& points,
                                                  const at::Tensor& query_lengths,
                                                  const at::Tensor& lengths, double radius,
                                                  int64_t k);
std::tuple<at::Tensor, at::Tensor> ball_query_cuda(const at::Tensor& query,
                                                   const at::Tensor& points,
                                                   const at::Tensor& query_lengths,
                                                   const at::Tensor& lengths, double radius,
                                                   int64_t k);

// The argument checks of ball_query_cpu and ball_query_cuda.
inline void check_ball_query_inputs(const at::Tensor& query, const at::Tensor& points,
                                    const at::Tensor& query_lengths, const at::Tensor& lengths,
                                    double radius, int64_t k) {
  check_search_inputs(query, points, query_lengths, lengths, k);
  TORCH_CHECK(std::isfinite(radius) && radius > 0, "radius must be a finite number > 0, got ",
              radius);
}

}  // namespace pcseg
