// Ball query: the k NEAREST points strictly inside a radius (not the first k found).
//
//   query          (B, M, 3) float32/float64
//   points         (B, N, 3) same dtype and device
//   query_lengths  (B,) int64;  lengths (B,) int64
//   radius         > 0; a point qualifies when its squared distance < radius * radius
//   k              >= 1
// returns (dists2 (B, M, k), idx (B, M, k) int64) ascending by distance, ties by lower index;
// idx -1 and dist +inf where fewer than k points lie inside the ball.
#pragma once
#include <ATen/ATen.h>
#include <tuple>

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
}  // namespace pcseg
