// Weighted 3-neighbour interpolation, the PointNet++ / A-CNN decoder step. The weights come
// from the caller (pcseg/ops/three_nn_interpolate.py: inverse squared distance, normalised).
//
// three_interpolate: out[b, i] = sum_j weight[b, i, j] * features[b, idx[b, i, j]], j = 0, 1, 2
// in order (terms with idx -1 are skipped).
//   Args:
//     features:  (B, m, C) float32/float64, the known features (named known_features in
//                messages).
//     idx:       (B, n, 3) int64 in [-1, m), same device as features.
//     weight:    (B, n, 3) same dtype and device as features.
//   Returns:
//     out:  (B, n, C) same dtype as features.
//
// three_interpolate_backward: the gradients of out with respect to features and weight.
//   Args:
//     grad_out:  (B, n, C), same device as features (cast to features' dtype).
//     features, idx, weight:  as for three_interpolate.
//   Returns:
//     grad_features:  (B, m, C) same dtype as features.
//     grad_weight:    (B, n, 3) same dtype as features.
#pragma once
#include <ATen/core/Tensor.h>

#include <tuple>

#include "common/checks.h"

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

// The argument checks of three_interpolate_cpu and three_interpolate_cuda.
inline void check_three_interpolate_inputs(const at::Tensor& features, const at::Tensor& idx,
                                           const at::Tensor& weight) {
  TORCH_CHECK(features.dim() == 3, "known_features must be (B, m, C), got ", features.sizes());
  TORCH_CHECK(features.scalar_type() == at::kFloat || features.scalar_type() == at::kDouble,
              "known_features must be float32 or float64, got ", features.scalar_type());
  check_index(idx, "idx");
  TORCH_CHECK(idx.dim() == 3 && idx.size(0) == features.size(0) && idx.size(2) == 3,
              "idx must be (B, n, 3) with B = ", features.size(0), ", got ", idx.sizes());
  TORCH_CHECK(weight.sizes() == idx.sizes(), "weight must be (B, n, 3) like idx ", idx.sizes(),
              ", got ", weight.sizes());
  check_same_dtype(weight, "weight", features, "known_features");
  check_same_device(idx, "idx", features, "known_features");
  check_same_device(weight, "weight", features, "known_features");
  check_index_range(idx.contiguous(), features.size(1));
}

// The argument checks of three_interpolate_backward_cpu and three_interpolate_backward_cuda.
inline void check_three_interpolate_backward_inputs(const at::Tensor& grad_out,
                                                    const at::Tensor& features,
                                                    const at::Tensor& idx,
                                                    const at::Tensor& weight) {
  check_three_interpolate_inputs(features, idx, weight);
  TORCH_CHECK(grad_out.dim() == 3 && grad_out.size(0) == idx.size(0) &&
                  grad_out.size(1) == idx.size(1) && grad_out.size(2) == features.size(2),
              "grad_out must be (B, n, C) = (", idx.size(0), ", ", idx.size(1), ", ",
              features.size(2), "), got ", grad_out.sizes());
  check_same_device(grad_out, "grad_out", features, "known_features");
}

}  // namespace pcseg
