// Row gather and its adjoint: the kernels behind gather_points and group_points.
//
// gather_rows:           features (B, N, C) float32/float64, idx (B, S) int64 in [-1, N)
//                        -> out (B, S, C), out[b, s] = features[b, idx[b, s]], zeros where -1
// gather_rows_backward:  grad (B, S, C), idx (B, S), num_rows N
//                        -> grad_features (B, N, C), the sum of grad rows over every s that
//                        gathered row n (rows gathered with -1 receive nothing)
#pragma once
#include <ATen/ATen.h>

namespace pcseg {
at::Tensor gather_rows_cpu(const at::Tensor& features, const at::Tensor& idx);
at::Tensor gather_rows_backward_cpu(const at::Tensor& grad, const at::Tensor& idx,
                                    int64_t num_rows);
at::Tensor gather_rows_cuda(const at::Tensor& features, const at::Tensor& idx);
at::Tensor gather_rows_backward_cuda(const at::Tensor& grad, const at::Tensor& idx,
                                     int64_t num_rows);
}  // namespace pcseg
