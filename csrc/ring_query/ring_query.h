// Ring (annulus) query with angular ordering, A-CNN's neighbourhood.
//
//   query          (B, M, 3) float32/float64, the ring centres
//   points         (B, N, 3) same dtype and device
//   normals        (B, M, 3) same dtype: the normal of each centre (need not be unit length)
//   query_lengths  (B,) int64;  lengths (B,) int64
//   r_inner, r_outer  0 <= r_inner < r_outer; a point qualifies when
//                  r_inner^2 <= d^2 < r_outer^2
//   k              >= 1
// returns (dists2 (B, M, k), idx (B, M, k) int64). The k nearest qualifying points are kept,
// then ordered counter-clockwise (seen from the tip of the normal) by their angle on the
// centre's tangent plane, measured from the farthest kept neighbour (angle 0; among equally far
// ones the highest index, i.e. the last in distance order). The angle is the monotone
// "diamond" pseudo-angle of (v.u, v.w) with u the reference direction and w = n x u, computed
// in float64; equal angles keep distance order. Kept points that lie on the normal axis get
// angle 0. A zero normal, or a reference neighbour on the normal axis, leaves the ring in
// distance order. Slots beyond the kept points hold idx -1 and dist +inf (a short or empty
// ring).
#pragma once
#include <ATen/ATen.h>
#include <tuple>

namespace pcseg {
std::tuple<at::Tensor, at::Tensor> ring_query_cpu(const at::Tensor& query,
                                                  const at::Tensor& points,
                                                  const at::Tensor& normals,
                                                  const at::Tensor& query_lengths,
                                                  const at::Tensor& lengths, double r_inner,
                                                  double r_outer, int64_t k);
std::tuple<at::Tensor, at::Tensor> ring_query_cuda(const at::Tensor& query,
                                                   const at::Tensor& points,
                                                   const at::Tensor& normals,
                                                   const at::Tensor& query_lengths,
                                                   const at::Tensor& lengths, double r_inner,
                                                   double r_outer, int64_t k);
}  // namespace pcseg
