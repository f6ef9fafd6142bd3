// k nearest neighbours.
//
//   query          (B, M, 3) float32/float64
//   points         (B, N, 3) same dtype and device
//   query_lengths  (B,) int64, rows >= query_lengths[b] of the output are padding
//   lengths        (B,) int64, points rows >= lengths[b] are never returned
//   k              >= 1
// returns (dists2 (B, M, k) same dtype, idx (B, M, k) int64): the k nearest points of each
// query, ascending by squared distance (dx*dx + dy*dy) + dz*dz, ties by lower index. Slots
// with no candidate (lengths[b] < k, or padded query rows) hold idx -1 and dist +inf.
#pragma once
#include <ATen/ATen.h>
#include <tuple>

namespace pcseg {
std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& query, const at::Tensor& points,
                                           const at::Tensor& query_lengths,
                                           const at::Tensor& lengths, int64_t k);
std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& query, const at::Tensor& points,
                                            const at::Tensor& query_lengths,
                                            const at::Tensor& lengths, int64_t k);
}  // namespace pcseg
