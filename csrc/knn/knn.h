// k nearest neighbours: the k nearest points of each query, ascending by squared distance
// (dx*dx + dy*dy) + dz*dz, ties by lower index.
//
// Args:
//   query:          (B, M, 3) float32/float64 query coordinates, padded.
//   points:         (B, N, 3) same dtype and device: the points searched, padded.
//   query_lengths:  (B,) int64 in [0, M]: rows >= query_lengths[b] of the output are padding.
//   lengths:        (B,) int64 in [0, N]: points rows >= lengths[b] are never returned.
//   k:              int >= 1, neighbours per query.
//
// Returns:
//   dists2:  (B, M, k) same dtype as points: squared distances, ascending.
//   idx:     (B, M, k) int64: indices into points. Slots with no candidate (lengths[b] < k, or
//            padded query rows) hold idx -1 and dist +inf.
#pragma once
#include <ATen/core/Tensor.h>

#include <tuple>

#include "common/search_checks.h"

namespace pcseg {

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& query, const at::Tensor& points,
                                           const at::Tensor& query_lengths,
                                           const at::Tensor& lengths, int64_t k);
std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& query, const at::Tensor& points,
                                            const at::Tensor& query_lengths,
                                            const at::Tensor& lengths, int64_t k);

// The argument checks of knn_cpu and knn_cuda.
inline void check_knn_inputs(const at::Tensor& query, const at::Tensor& points,
                             const at::Tensor& query_lengths, const at::Tensor& lengths,
                             int64_t k) {
  check_search_inputs(query, points, query_lengths, lengths, k);
}

}  // namespace pcseg
