// CUDA ring query: the window search of common/window_search.cuh with
// r_inner^2 <= d < r_outer^2, then the kept points reordered by pcseg::angular_keys, the
// float64 code ring_query_cpu runs, so the order equals the CPU kernel's bit for bit.
#include "ring_query/ring_query.h"

#include <cmath>

#include "common/window_search.cuh"

namespace pcseg {

std::tuple<at::Tensor, at::Tensor> ring_query_cuda(const at::Tensor& query,
                                                   const at::Tensor& points,
                                                   const at::Tensor& normals,
                                                   const at::Tensor& query_lengths,
                                                   const at::Tensor& lengths, double r_inner,
                                                   double r_outer, int64_t k) {
  check_search_inputs(query, points, query_lengths, lengths, k);
  TORCH_CHECK(normals.sizes() == query.sizes(), "normals must be (B, M, 3) like query ",
              query.sizes(), ", got ", normals.sizes());
  check_same_dtype(normals, "normals", query, "query");
  check_same_device(normals, "normals", query, "query");
  check_finite(normals, "normals");
  TORCH_CHECK(std::isfinite(r_inner) && std::isfinite(r_outer) && r_inner >= 0 &&
                  r_outer > r_inner,
              "ring radii must satisfy 0 <= r_inner < r_outer, got r_inner=", r_inner,
              " r_outer=", r_outer);
  const c10::cuda::CUDAGuard device_guard(query.device());
  return AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "ring_query_cuda", [&] {
    const scalar_t ri = static_cast<scalar_t>(r_inner), ro = static_cast<scalar_t>(r_outer);
    return window_search_cuda<scalar_t, true>(query, points, normals, query_lengths, lengths,
                                              k, ri * ri, ro * ro);
  });
}

}  // namespace pcseg
