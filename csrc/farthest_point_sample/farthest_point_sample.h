// Exact farthest point sampling: idx[b, 0] = start_index[b]; idx[b, i] = the point whose
// squared distance to its nearest already-chosen sample is largest, the lowest index among
// equal distances (the tie rule of torch.argmax). Distances are (dx*dx + dy*dy) + dz*dz in the
// input dtype without FMA contraction, so the indices are bit-identical to
// farthest_point_sample_naive in Python.
//
// Args:
//   points:       (B, N, 3) float32/float64, padded; rows >= lengths[b] are ignored.
//   lengths:      (B,) int64 in [0, N], same device as points.
//   num_samples:  int M in [0, N], samples per cloud.
//   start_index:  (B,) int64, same device as points: the first sample of each cloud,
//                 0 <= start_index[b] < lengths[b] (any value for an empty cloud).
//
// Returns:
//   idx:  (B, M) int64: indices into points; slots i >= lengths[b] hold -1.
#pragma once
#include <ATen/core/Tensor.h>

#include "common/checks.h"

namespace pcseg {

at::Tensor farthest_point_sample_cpu(const at::Tensor& points, const at::Tensor& lengths,
                                     int64_t num_samples, const at::Tensor& start_index);
at::Tensor farthest_point_sample_cuda(const at::Tensor& points, const at::Tensor& lengths,
                                      int64_t num_samples, const at::Tensor& start_index);

// The argument checks of farthest_point_sample_cpu and farthest_point_sample_cuda.
inline void check_farthest_point_sample_inputs(const at::Tensor& points,
                                               const at::Tensor& lengths, int64_t num_samples,
                                               const at::Tensor& start_index) {
  check_points(points, "points");
  const int64_t B = points.size(0), N = points.size(1);
  TORCH_CHECK(num_samples >= 0 && num_samples <= N, "num_samples must be in [0, N] with N = ",
              N, " (points is ", points.sizes(), "), got ", num_samples);
  check_lengths(lengths, "lengths", B, N, points, "points");
  TORCH_CHECK(start_index.dim() == 1 && start_index.size(0) == B &&
                  start_index.scalar_type() == at::kLong,
              "start_index must be (B,) int64 with B = ", B, ", got ", start_index.sizes(), " ",
              start_index.scalar_type());
  check_same_device(start_index, "start_index", points, "points");
  check_finite(points, "points");
  // Per cloud, on the host (B values; .cpu() copies nothing for a CPU tensor).
  const at::Tensor len_host = lengths.contiguous().cpu();
  const at::Tensor start_host = start_index.contiguous().cpu();
  const int64_t* len = len_host.data_ptr<int64_t>();
  const int64_t* st = start_host.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(len[b] == 0 || (st[b] >= 0 && st[b] < len[b]), "start_index[", b, "] = ", st[b],
                " is outside the cloud's ", len[b], " points");
  }
}

}  // namespace pcseg
