#include "knn/knn.h"

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <limits>

#include "common/neighbor_search.h"

namespace pcseg {

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& query, const at::Tensor& points,
                                           const at::Tensor& query_lengths,
                                           const at::Tensor& lengths, int64_t k) {
  check_knn_inputs(query, points, query_lengths, lengths, k);
  return AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "knn_cpu", [&] {
    return bounded_neighbor_search<scalar_t>(query, points, query_lengths, lengths, k,
                                             scalar_t(-1),
                                             std::numeric_limits<scalar_t>::infinity(),
                                             KeepDistanceOrder{});
  });
}

}  // namespace pcseg

TORCH_LIBRARY_IMPL(pcseg, CPU, m) { m.impl("knn", &pcseg::knn_cpu); }
