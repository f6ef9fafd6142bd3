// Ring (annulus) query with angular ordering, A-CNN's neighbourhood. The k nearest points in
// the ring are kept, then ordered counter-clockwise (seen from the tip of the normal) by their
// angle on the centre's tangent plane, measured from the farthest kept neighbour (angle 0;
// among equally far ones the highest index, i.e. the last in distance order). The angle is
// the monotone "diamond" pseudo-angle of (v.u, v.w) with u the reference direction and
// w = n x u, computed in float64 (common/angular_key.h); equal angles keep distance order.
// Kept points that lie on the normal axis get angle 0. A zero normal, or a reference
// neighbour on the normal axis, leaves the ring in distance order.
//
// Args:
//   query:             (B, M, 3) float32/float64 ring centres, padded.
//   points:            (B, N, 3) same dtype and device: the points searched, padded.
//   normals:           (B, M, 3) same dtype and device: the normal of each centre (need not
//                      be unit length).
//   query_lengths:     (B,) int64 in [0, M]: rows >= query_lengths[b] of the output are
//                      padding.
//   lengths:           (B,) int64 in [0, N]: points rows >= lengths[b] are never returned.
//   r_inner, r_outer:  finite floats, 0 <= r_inner < r_outer: a point qualifies when
//                      r_inner^2 <= d^2 < r_outer^2 (squares rounded in the points' dtype).
//   k:                 int >= 1, neighbours per ring.
//
// Returns:
//   dists2:  (B, M, k) same dtype as points: squared distances, in angular order.
//   idx:     (B, M, k) int64: indices into points, in angular order. Slots beyond the kept
//            points hold idx -1 and dist +inf (a short or empty ring).
#pragma once
#include <ATen/core/Tensor.h>

#include <cmath>
#include <tuple>

#include "common/checks.h"
#include "common/search_checks.h"

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

// The argument checks of ring_query_cpu and ring_query_cuda.
inline void check_ring_query_inputs(const at::Tensor& query, const at::Tensor& points,
                                    const at::Tensor& normals, const at::Tensor& query_lengths,
                                    const at::Tensor& lengths, double r_inner, double r_outer,
                                    int64_t k) {
  check_search_inputs(query, points, query_lengths, lengths, k);
  TORCH_CHECK(normals.sizes() == query.sizes(), "normals must be (B, M, 3) like query ",
              query.sizes(), ", got ", normals.sizes());
  check_same_dtype(normals, "normals", query, "query");
  check_same_device(normals, "normals", query, "query");
  check_finite_coordinates(normals, "normals");
  TORCH_CHECK(std::isfinite(r_inner) && std::isfinite(r_outer) && r_inner >= 0 &&
                  r_outer > r_inner,
              "ring radii must satisfy 0 <= r_inner < r_outer, got r_inner=", r_inner,
              " r_outer=", r_outer);
}

}  // namespace pcseg
