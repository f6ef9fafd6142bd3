// Weighted 3-neighbour interpolation, the PointNet++ / A-CNN decoder step.
//
// three_interpolate:  features (B, m, C) float32/float64, idx (B, n, 3) int64 in [-1, m),
//                     weight (B, n, 3) same dtype as features
//                     -> out (B, n, C), out[b, i] = sum_j weight[b, i, j] * features[b, idx[b, i, j]]
//                     (terms with idx -1 are skipped)
// three_interpolate_backward: grad_out (B, n, C) and the forward inputs
//                     -> (grad_features (B, m, C), grad_weight (B, n, 3))
#pragma once
#include <ATen/ATen.h>
#include <tuple>

namespace pcseg {
at::Tensor three_interpolate_cpu(const at::Tensor& features, const at::Tensor& idx,
                                 const at::Tensor& weight);
std::tuple<at::Tensor, at::Tensor> three_interpolate_backward_cpu(const at::Tensor& grad_out,
                                                                  const at::Tensor& features,
                                                                  const at::Tensor& idx,
                                                                  const at::Tensor& weight);
at::Tensor three_interpolate_cuda(const at::Tensor& features, const at::Tensor& idx,
                                  const at::Tensor& weight);
std::tuple<at::Tensor, at::Tensor> three_interpolate_backward_cuda(const at::Tensor& grad_out,
                                                                   const at::Tensor& features,
                                                                   const at::Tensor& idx,
                                                                   const at::Tensor& weight);
}  // namespace pcseg
