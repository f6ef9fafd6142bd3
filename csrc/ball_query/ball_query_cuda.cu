// CUDA ball query: the window search of common/window_search.cuh with d < radius^2, the
// squared radius rounded in the points' dtype exactly as ball_query_cpu forms it.
#include "ball_query/ball_query.h"

#include <ATen/Dispatch.h>

#include "common/window_search.cuh"

namespace pcseg {

std::tuple<at::Tensor, at::Tensor> ball_query_cuda(const at::Tensor& query,
                                                   const at::Tensor& points,
                                                   const at::Tensor& query_lengths,
                                                   const at::Tensor& lengths, double radius,
                                                   int64_t k) {
  check_ball_query_inputs(query, points, query_lengths, lengths, radius, k);
  const c10::cuda::CUDAGuard device_guard(query.device());
  return AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "ball_query_cuda", [&] {
    const scalar_t r = static_cast<scalar_t>(radius);
    return window_search_cuda<scalar_t, false>(query, points, at::Tensor(), query_lengths,
                                               lengths, k, scalar_t(-1), r * r);
  });
}

}  // namespace pcseg
