#include "ring_query/ring_query.h"

#include <torch/library.h>

#include <cmath>

#include "common/checks.h"
#include "common/neighbor_search.h"
#include "ring_query/angular_order.h"

namespace pcseg {

std::tuple<at::Tensor, at::Tensor> ring_query_cpu(const at::Tensor& query,
                                                  const at::Tensor& points,
                                                  const at::Tensor& normals_in,
                                                  const at::Tensor& query_lengths,
                                                  const at::Tensor& lengths, double r_inner,
                                                  double r_outer, int64_t k) {
  check_search_inputs(query, points, query_lengths, lengths, k);
  TORCH_CHECK(normals_in.sizes() == query.sizes(), "normals must be (B, M, 3) like query ",
              query.sizes(), ", got ", normals_in.sizes());
  check_same_dtype(normals_in, "normals", query, "query");
  check_same_device(normals_in, "normals", query, "query");
  check_finite(normals_in, "normals");
  TORCH_CHECK(std::isfinite(r_inner) && std::isfinite(r_outer) && r_inner >= 0 &&
                  r_outer > r_inner,
              "ring radii must satisfy 0 <= r_inner < r_outer, got r_inner=", r_inner,
              " r_outer=", r_outer);
  const at::Tensor normals = normals_in.contiguous();
  const at::Tensor pts = points.contiguous();
  const at::Tensor qry = query.contiguous();
  return AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "ring_query_cpu", [&] {
    const scalar_t ri = static_cast<scalar_t>(r_inner), ro = static_cast<scalar_t>(r_outer);
    const scalar_t* nrm = normals.data_ptr<scalar_t>();
    const scalar_t* p = pts.data_ptr<scalar_t>();
    const scalar_t* q = qry.data_ptr<scalar_t>();
    const int64_t M = query.size(1), N = points.size(1);
    return bounded_neighbor_search<scalar_t>(
        qry, pts, query_lengths, lengths, k, ri * ri, ro * ro,
        [&](int64_t b, int64_t m, BoundedHeap<scalar_t>& heap) {
          const int64_t n_kept = static_cast<int64_t>(heap.items.size());
          if (n_kept < 2) return;
          // Angles in a small per-call buffer: rings are at most k long.
          thread_local std::vector<double> angle;
          thread_local std::vector<int64_t> order;
          thread_local std::vector<Neighbor<scalar_t>> sorted;
          angle.resize(n_kept);
          const scalar_t* qp = q + (b * M + m) * 3;
          const scalar_t* np = nrm + (b * M + m) * 3;
          const scalar_t* base = p + b * N * 3;
          if (!angular_keys(qp, np, base, heap.items.data(), n_kept, angle.data())) return;
          order.resize(n_kept);
          for (int64_t j = 0; j < n_kept; ++j) order[j] = j;
          std::stable_sort(order.begin(), order.end(),
                           [&](int64_t a, int64_t c) { return angle[a] < angle[c]; });
          sorted.resize(n_kept);
          for (int64_t j = 0; j < n_kept; ++j) sorted[j] = heap.items[order[j]];
          std::copy(sorted.begin(), sorted.end(), heap.items.begin());
        });
  });
}

}  // namespace pcseg

TORCH_LIBRARY_IMPL(pcseg, CPU, m) { m.impl("ring_query", &pcseg::ring_query_cpu); }
