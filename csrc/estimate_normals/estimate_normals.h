// Unoriented normals by PCA over given neighbourhoods (the kNN search is the knn op): the unit
// eigenvector of the smallest eigenvalue of each neighbourhood's covariance, computed in
// float64. The sign is arbitrary here; pcseg.ops.estimate_normals orients it.
//
// Args:
//   points:  (B, N, 3) float32/float64.
//   idx:     (B, N, K) int64 in [-1, N), same device as points: the neighbours of each point,
//            -1 ignored.
//
// Returns:
//   normals:  (B, N, 3) same dtype as points; (0, 0, 0) where fewer than 3 neighbours are valid.
#pragma once
#include <ATen/core/Tensor.h>

#include "common/checks.h"

namespace pcseg {

at::Tensor normals_from_neighbors_cpu(const at::Tensor& points, const at::Tensor& idx);
at::Tensor normals_from_neighbors_cuda(const at::Tensor& points, const at::Tensor& idx);

// The argument checks of normals_from_neighbors_cpu and normals_from_neighbors_cuda, except
// idx's range: the CPU kernel checks it on its way through idx (check_index_bounds), the CUDA
// one first (check_index_range).
inline void check_normals_from_neighbors_inputs(const at::Tensor& points, const at::Tensor& idx) {
  check_points(points, "points");
  check_index(idx, "idx");
  TORCH_CHECK(idx.dim() == 3 && idx.size(0) == points.size(0) && idx.size(1) == points.size(1),
              "idx must be (B, N, K) with (B, N) = (", points.size(0), ", ", points.size(1),
              "), got ", idx.sizes());
  check_same_device(idx, "idx", points, "points");
}

}  // namespace pcseg
