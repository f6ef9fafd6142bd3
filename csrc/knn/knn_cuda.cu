// CUDA kNN: the brute-force window search of common/window_search.cuh with an unbounded
// window. Results equal knn_cpu bit for bit (see that header for why).
#include "knn/knn.h"

#include <ATen/Dispatch.h>

#include <limits>

#include "common/window_search.cuh"

namespace pcseg {

std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& query, const at::Tensor& points,
                                            const at::Tensor& query_lengths,
                                            const at::Tensor& lengths, int64_t k) {
  check_knn_inputs(query, points, query_lengths, lengths, k);
  const c10::cuda::CUDAGuard device_guard(query.device());
  return AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "knn_cuda", [&] {
    return window_search_cuda<scalar_t, false>(query, points, at::Tensor(), query_lengths,
                                               lengths, k, scalar_t(-1),
                                               std::numeric_limits<scalar_t>::infinity());
  });
}

}  // namespace pcseg
