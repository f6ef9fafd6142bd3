#include "ball_query/ball_query.h"

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common/neighbor_search.h"

namespace pcseg {

std::tuple<at::Tensor, at::Tensor> ball_query_cpu(const at::Tensor& query,
                                                  const at::Tensor& points,
                                                  const at::Tensor& query_lengths,
                                                  const at::Tensor& lengths, double radius,
                                                  int64_t k) {
  check_ball_query_inputs(query, points, query_lengths, lengths, radius, k);
  return AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "ball_query_cpu", [&] {
    const scalar_t r = static_cast<scalar_t>(radius);
    return bounded_neighbor_search<scalar_t>(query, points, query_lengths, lengths, k,
                                             scalar_t(-1), r * r, KeepDistanceOrder{});
  });
}

}  // namespace pcseg

TORCH_LIBRARY_IMPL(pcseg, CPU, m) { m.impl("ball_query", &pcseg::ball_query_cpu); }
