// Exact farthest point sampling.
//
//   points      (B, N, 3) float32/float64, padded; rows >= lengths[b] are ignored
//   lengths     (B,) int64, 0 <= lengths[b] <= N
//   start_index (B,) int64, the first sample of each cloud, 0 <= start_index[b] < lengths[b]
//   num_samples M >= 0, M <= N
// returns idx (B, M) int64: idx[b, 0] = start_index[b]; idx[b, i] = the point whose squared
// distance to its nearest already-chosen sample is largest, the lowest index among equal
// distances (the tie rule of torch.argmax). Slots i >= lengths[b] are -1.
// Distances are (dx*dx + dy*dy) + dz*dz in the input dtype without FMA contraction, so the
// indices are bit-identical to farthest_point_sample_naive in Python.
#pragma once
#include <ATen/ATen.h>

namespace pcseg {
at::Tensor farthest_point_sample_cpu(const at::Tensor& points, const at::Tensor& lengths,
                                     int64_t num_samples, const at::Tensor& start_index);
at::Tensor farthest_point_sample_cuda(const at::Tensor& points, const at::Tensor& lengths,
                                      int64_t num_samples, const at::Tensor& start_index);
}  // namespace pcseg
