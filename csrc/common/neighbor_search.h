// The CPU driver shared by knn, ball_query and ring_query: one kd-tree per cloud, then every
// query searched in parallel with a distance window lo2 <= d < hi2.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <limits>
#include <tuple>
#include <vector>

#include "common/checks.h"
#include "common/kdtree.h"

namespace pcseg {

constexpr int kSearchLeafSize = 12;

// Builds one tree per cloud of points (B, N, 3), in parallel over the batch.
template <typename T>
std::vector<KdTree<T>> build_trees(const at::Tensor& points, const at::Tensor& lengths,
                                   int leaf_size) {
  const int64_t B = points.size(0), N = points.size(1);
  std::vector<KdTree<T>> trees(B);
  const T* pts = points.data_ptr<T>();
  const int64_t* len = lengths.data_ptr<int64_t>();
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) trees[b].build(pts + b * N * 3, len[b], leaf_size);
  });
  return trees;
}

// finish(b, m, heap) may reorder heap.items (already ascending by distance) before they are
// written out; ring_query uses it for the angular order.
template <typename T, typename Finish>
std::tuple<at::Tensor, at::Tensor> bounded_neighbor_search(
    const at::Tensor& query_in, const at::Tensor& points_in, const at::Tensor& query_lengths,
    const at::Tensor& lengths, int64_t k, T lo2, T hi2, Finish finish) {
  const at::Tensor query = query_in.contiguous();
  const at::Tensor points = points_in.contiguous();
  const at::Tensor qlen_t = query_lengths.contiguous();
  const at::Tensor len_t = lengths.contiguous();
  const int64_t B = query.size(0), M = query.size(1);
  auto dists = at::full({B, M, k}, std::numeric_limits<T>::infinity(), query.options());
  auto idx = at::full({B, M, k}, -1, query.options().dtype(at::kLong));
  if (B == 0 || M == 0) return {dists, idx};

  const auto trees = build_trees<T>(points, len_t, kSearchLeafSize);
  const T* q = query.data_ptr<T>();
  const int64_t* qlen = qlen_t.data_ptr<int64_t>();
  T* dout = dists.template data_ptr<T>();
  int64_t* iout = idx.template data_ptr<int64_t>();
  // A self-query walks the queries in tree order: consecutive queries then touch the same
  // leaves, which keeps them in cache.
  const bool self_query = query.data_ptr() == points.data_ptr() && query.sizes() == points.sizes() &&
                          at::equal(qlen_t, len_t);

  at::parallel_for(0, B * M, 256, [&](int64_t begin, int64_t end) {
    BoundedHeap<T> heap;
    std::vector<std::pair<T, int32_t>> stack;
    stack.reserve(128);
    for (int64_t flat = begin; flat < end; ++flat) {
      const int64_t b = flat / M;
      int64_t m = flat % M;
      if (m >= qlen[b]) continue;
      if (self_query) m = trees[b].index[m];
      const T* qp = q + (b * M + m) * 3;
      heap.reset(k);
      kdtree_search(trees[b], qp[0], qp[1], qp[2], lo2, hi2, heap, stack);
      heap.sort();
      finish(b, m, heap);
      T* drow = dout + (b * M + m) * k;
      int64_t* irow = iout + (b * M + m) * k;
      for (size_t j = 0; j < heap.items.size(); ++j) {
        drow[j] = heap.items[j].d;
        irow[j] = heap.items[j].i;
      }
    }
  });
  return {dists, idx};
}

// Checks common to knn, ball_query and ring_query.
inline void check_search_inputs(const at::Tensor& query, const at::Tensor& points,
                                const at::Tensor& query_lengths, const at::Tensor& lengths,
                                int64_t k) {
  check_points(query, "query");
  check_points(points, "points");
  check_same_dtype(query, "query", points, "points");
  check_same_device(query, "query", points, "points");
  TORCH_CHECK(query.size(0) == points.size(0), "query and points must have the same batch size, got ",
              query.size(0), " and ", points.size(0));
  TORCH_CHECK(k >= 1, "k must be >= 1, got ", k);
  check_lengths(query_lengths, "query_lengths", query.size(0), query.size(1), query, "query");
  check_lengths(lengths, "lengths", points.size(0), points.size(1), points, "points");
  check_finite(query, "query");
  check_finite(points, "points");
}

}  // namespace pcseg
