// Row gather and its adjoint: the kernels behind gather_points and group_points.
//
// gather_rows: out[b, s] = features[b, idx[b, s]], zeros where idx is -1.
//   Args:
//     features:  (B, N, C) float32/float64.
//     idx:       (B, S) int64 in [-1, N), same device as features.
//   Returns:
//     out:  (B, S, C) same dtype as features.
//
// gather_rows_backward: the sum of the grad rows over every s that gathered row n (entries
// with idx -1 add nowhere), in ascending s (deterministic).
//   Args:
//     grad:      (B, S, C) float32/float64, the gradient of out.
//     idx:       (B, S) int64 in [-1, num_rows), same device as grad.
//     num_rows:  int N >= 0, the rows of features.
//   Returns:
//     grad_features:  (B, N, C) same dtype as grad.
#pragma once
#include <ATen/core/Tensor.h>

#include "common/checks.h"

namespace pcseg {

at::Tensor gather_rows_cpu(const at::Tensor& features, const at::Tensor& idx);
at::Tensor gather_rows_backward_cpu(const at::Tensor& grad, const at::Tensor& idx,
                                    int64_t num_rows);
at::Tensor gather_rows_cuda(const at::Tensor& features, const at::Tensor& idx);
at::Tensor gather_rows_backward_cuda(const at::Tensor& grad, const at::Tensor& idx,
                                     int64_t num_rows);

// rows (B, N, C) float32/float64 and idx (B, S) int64 on its device (not idx's range).
inline void check_rows_and_index(const at::Tensor& rows, const char* rows_name,
                                 const at::Tensor& idx) {
  TORCH_CHECK(rows.dim() == 3, rows_name, " must be (B, N, C), got ", rows.sizes());
  TORCH_CHECK(rows.scalar_type() == at::kFloat || rows.scalar_type() == at::kDouble, rows_name,
              " must be float32 or float64, got ", rows.scalar_type());
  check_index(idx, "idx");
  TORCH_CHECK(idx.dim() == 2 && idx.size(0) == rows.size(0), "idx must be (B, S) with B = ",
              rows.size(0), ", got ", idx.sizes());
  check_same_device(idx, "idx", rows, rows_name);
}

// The argument checks of gather_rows_cpu and gather_rows_cuda.
inline void check_gather_rows_inputs(const at::Tensor& features, const at::Tensor& idx) {
  check_rows_and_index(features, "features", idx);
  check_index_range(idx, features.size(1));
}

// The argument checks of gather_rows_backward_cpu and gather_rows_backward_cuda.
inline void check_gather_rows_backward_inputs(const at::Tensor& grad, const at::Tensor& idx,
                                              int64_t num_rows) {
  check_rows_and_index(grad, "grad", idx);
  TORCH_CHECK(idx.size(1) == grad.size(1), "idx must be (B, S) with S = ", grad.size(1),
              " (the rows of grad), got ", idx.sizes());
  TORCH_CHECK(num_rows >= 0, "num_rows must be >= 0, got ", num_rows);
  check_index_range(idx, num_rows);
}

}  // namespace pcseg
