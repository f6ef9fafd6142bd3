// Unoriented normals by PCA over given neighbourhoods (the kNN search is the knn op).
//
//   points  (B, N, 3) float32/float64
//   idx     (B, N, K) int64 in [-1, N): the neighbours of each point, -1 ignored
// returns normals (B, N, 3) same dtype: the unit eigenvector of the smallest eigenvalue of the
// neighbourhood covariance (computed in float64). Fewer than 3 valid neighbours give (0, 0, 0).
// The sign is arbitrary here; pcseg.ops.estimate_normals orients it.
#pragma once
#include <ATen/ATen.h>

namespace pcseg {
at::Tensor normals_from_neighbors_cpu(const at::Tensor& points, const at::Tensor& idx);
at::Tensor normals_from_neighbors_cuda(const at::Tensor& points, const at::Tensor& idx);
}  // namespace pcseg
