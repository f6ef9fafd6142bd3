// CUDA ring query: the window search of common/window_search.cuh with
// r_inner^2 <= d < r_outer^2, then the kept points reordered by pcseg::angular_keys, the
// float64 code ring_query_cpu runs, so the order equals the CPU kernel's bit for bit.
#include "ring_query/ring_query.h"

#include <ATen/Dispatch.h>

#include "common/window_search.cuh"

namespace pcseg {

std::tuple<at::Tensor, at::Tensor> ring_query_cuda(const at::Tensor& query,
                                                   const at::Tensor& points,
                                                   const at::Tensor& normals,
                                                   const at::Tensor& query_lengths,
                                                   const at::Tensor& lengths, double r_inner,
                                                   double r_outer, int64_t k) {
  check_ring_query_inputs(query, points, normals, query_lengths, lengths, r_inner, r_outer, k);
  const c10::cuda::CUDAGuard device_guard(query.device());
  return AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "ring_query_cuda", [&] {
    const scalar_t ri = static_cast<scalar_t>(r_inner), ro = static_cast<scalar_t>(r_outer);
    return window_search_cuda<scalar_t, true>(query, points, normals, query_lengths, lengths,
                                              k, ri * ri, ro * ro);
  });
}

}  // namespace pcseg
