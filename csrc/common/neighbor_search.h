// The CPU driver shared by knn, ball_query and ring_query: one search tree per cloud, then
// every query searched in parallel with a distance window lo2 <= d < hi2, keeping the k
// smallest (d, original index) pairs (ties in distance -> the lower index, the rule of a
// stable sort of the brute-force distances). Results equal the brute force bit for bit.
//
// What makes it fast:
//   * queries are searched in groups of up to kSearchLeafSize nearby ones -- the leaves of
//     the points' own tree for a self-query, of a tree over the queries otherwise -- with
//     one traversal per group (group_search): the tree walk is shared, and each query only
//     checks its own distance to the leaves the group reaches;
//   * the tree is re-laid out for searching (SearchTree, common/search_tree.h): siblings are
//     adjacent, leaves start at multiples of kLeafPad points and are padded with +inf points,
//     so a leaf's distances are one branch-free, vectorised loop, filtered by a SIMD compare
//     into a bit mask;
//   * for k <= kSortedMaxK the k best are a sorted array of packed (distance, index) keys
//     (one integer compare per step of an insertion, no final sort); larger k use a heap
//     (common/k_best.h);
//   * the window's upper end is one inclusive bound (d <= bound) that shrinks to the k-th
//     best distance once k candidates are held: one compare filters points and prunes boxes;
//   * each group is searched in two steps, first within a little more than the k-th distance
//     of the group searched before (search_group), so the first leaves a group reaches do
//     not leave a loose bound to its farther queries;
//   * one parallel region per call, its work handed out from atomic counters, so a thread
//     slowed down by other load on the machine does not hold the others up; the input checks
//     run no torch ops on CPU tensors (common/search_checks.h: on a loaded machine every
//     parallel region of a torch op spins for longer than the scan takes); large outputs ask
//     for transparent huge pages (common/huge_pages.h).
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/equal.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/huge_pages.h"
#include "common/k_best.h"
#include "common/kdtree.h"
#include "common/search_tree.h"

namespace pcseg {

// Bit j set where lo2 <= dist[j] <= bound (kHasLo) or dist[j] <= bound, for j < n (n a
// multiple of kLeafPad, at most 64).
template <bool kHasLo, typename T>
inline uint64_t passing_mask(const T* dist, int n, T lo2, T bound) {
  uint64_t m = 0;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    const __m128 vb = _mm_set1_ps(bound), vl = _mm_set1_ps(lo2);
    for (int j = 0; j < n; j += 4) {
      const __m128 v = _mm_loadu_ps(dist + j);
      __m128 ok = _mm_cmple_ps(v, vb);
      if constexpr (kHasLo) ok = _mm_and_ps(ok, _mm_cmpge_ps(v, vl));
      m |= uint64_t(_mm_movemask_ps(ok)) << j;
    }
    return m;
  }
#endif
  for (int j = 0; j < n; ++j)
    m |= uint64_t(dist[j] <= bound && (!kHasLo || dist[j] >= lo2)) << j;
  return m;
}

template <typename T>
struct SearchStackEntry {
  T d;
  int32_t id;
};

// The bounding box of a group of queries, and its centre (which only orders the search).
template <typename T>
struct QueryBox {
  T lo[3], hi[3], c[3];
};

// Lower bound of the squared distance between any query in g and any point in the node's
// box: per axis the gap lo - hi' (or 0), which rounds no larger than any qx - px it bounds.
template <typename T, typename Node>
PCSEG_ALWAYS_INLINE T box_box_dist2(const Node& nd, const QueryBox<T>& g) {
  const T gx = max_of(max_of(nd.lo[0] - g.hi[0], g.lo[0] - nd.hi[0]), T(0));
  const T gy = max_of(max_of(nd.lo[1] - g.hi[1], g.lo[1] - nd.hi[1]), T(0));
  const T gz = max_of(max_of(nd.lo[2] - g.hi[2], g.lo[2] - nd.hi[2]), T(0));
  return gx * gx + gy * gy + gz * gz;
}
// Upper bound of the same (the farthest pair of corners).
template <typename T, typename Node>
PCSEG_ALWAYS_INLINE T box_box_far2(const Node& nd, const QueryBox<T>& g) {
  const T fx = max_of(nd.hi[0] - g.lo[0], g.hi[0] - nd.lo[0]);
  const T fy = max_of(nd.hi[1] - g.lo[1], g.hi[1] - nd.lo[1]);
  const T fz = max_of(nd.hi[2] - g.lo[2], g.hi[2] - nd.lo[2]);
  return fx * fx + fy * fy + fz * fz;
}

// The largest bound among the group's g queries: what a box must be within to be entered.
template <typename Best>
PCSEG_ALWAYS_INLINE auto largest_bound(const Best* best, int g) {
  auto m = best[0].bound;
  for (int i = 1; i < g; ++i) m = max_of(m, best[i].bound);
  return m;
}

// Offers the query (px, py, pz) every point of leaf nd with lo2 <= d <= bi.bound (kHasLo:
// lo2 > 0 is in force), unless the leaf's box lies outside that window.
template <bool kHasLo, typename T, typename Best>
PCSEG_ALWAYS_INLINE void scan_leaf(const SearchTree<T>& tree,
                                   const typename SearchTree<T>::Node& nd, T px, T py, T pz,
                                   T lo2, Best& bi) {
  using Tree = SearchTree<T>;
  if (Tree::box_dist2(nd, px, py, pz) > bi.bound) return;
  if (kHasLo && Tree::box_far2(nd, px, py, pz) < lo2) return;
  const int32_t f = nd.first;
  const int cp = (nd.count + kLeafPad - 1) / kLeafPad * kLeafPad;
  const T* xs = tree.x.data();
  const T* ys = tree.y.data();
  const T* zs = tree.z.data();
  // All distances first (padding slots give +inf), then the few that pass.
  T dist[kSearchLeafSize + kLeafPad];
  for (int b = 0; b < cp; b += kLeafPad) {
    for (int l = 0; l < kLeafPad; ++l) {
      const T dx = xs[f + b + l] - px, dy = ys[f + b + l] - py, dz = zs[f + b + l] - pz;
      dist[b + l] = dx * dx + dy * dy + dz * dz;
    }
  }
  const int32_t* ids = tree.index.data();
  uint64_t pass = passing_mask<kHasLo>(dist, cp, lo2, bi.bound);
  while (pass) {
    const int j = __builtin_ctzll(pass);
    pass &= pass - 1;
    const T d = dist[j];
    if (d <= bi.bound) bi.offer(d, ids[f + j]);  // the bound may have shrunk
  }
}

// Searches the tree for a group of g nearby queries at once (coordinates qx/qy/qz[0..g)):
// best[i] is offered every point with lo2 <= d <= best[i].bound (kHasLo: lo2 > 0 is in
// force). One traversal serves the whole group: a subtree is entered unless its box is
// strictly farther from the group's box than the largest bound in the group (a box at a
// distance equal to a k-th best may still hold an equally far point with a lower index),
// children nearest to the group's centre first; at a leaf each query first checks its own
// distance to the leaf's box. stack must hold tree.depth + 1 entries.
template <bool kHasLo, typename T, typename Best>
inline void group_search(const SearchTree<T>& tree, const T* qx, const T* qy, const T* qz,
                         int g, T lo2, Best* best, SearchStackEntry<T>* stack) {
  using Node = typename SearchTree<T>::Node;
  using Tree = SearchTree<T>;
  QueryBox<T> box;
  KdTree<T>::bounding_box(qx, qy, qz, 0, g, box.lo, box.hi);
  for (int d = 0; d < 3; ++d) box.c[d] = box.lo[d] + (box.hi[d] - box.lo[d]) / 2;
  const Node* nodes = tree.nodes.data();
  T gbound = largest_bound(best, g);
  if (box_box_dist2(nodes[0], box) > gbound) return;
  int sp = 0;
  int32_t id = 0;
  for (;;) {
    const Node& nd = nodes[id];
    if (!kHasLo || !(box_box_far2(nd, box) < lo2)) {
      if (nd.count > 0) {
        for (int i = 0; i < g; ++i) scan_leaf<kHasLo>(tree, nd, qx[i], qy[i], qz[i], lo2, best[i]);
        gbound = largest_bound(best, g);
      } else {
        const Node* ch = nodes + nd.first;
        const T p0 = box_box_dist2(ch[0], box), p1 = box_box_dist2(ch[1], box);
        const T o0 = Tree::box_dist2(ch[0], box.c[0], box.c[1], box.c[2]);
        const T o1 = Tree::box_dist2(ch[1], box.c[0], box.c[1], box.c[2]);
        const bool left_near = o0 < o1 || (o0 == o1 && p0 <= p1);
        const T pn = left_near ? p0 : p1, pf = left_near ? p1 : p0;
        const int32_t near = nd.first + (left_near ? 0 : 1);
        if (pf <= gbound) stack[sp++] = {pf, nd.first + (left_near ? 1 : 0)};
        if (pn <= gbound) {
          id = near;
          continue;
        }
      }
    }
    for (;;) {  // the most recently deferred subtree still within the bound
      if (sp == 0) return;
      --sp;
      if (stack[sp].d <= gbound) {
        id = stack[sp].id;
        break;
      }
    }
  }
}

// Everything one call of bounded_neighbor_search shares between its threads.
template <typename T>
struct NeighborSearch {
  const T* points;               // (B, N, 3), contiguous
  const T* query;                // (B, M, 3), contiguous
  const int64_t* lengths;        // (B,)
  const int64_t* query_lengths;  // (B,)
  int64_t B = 0, M = 0, N = 0, k = 0;
  T lo2 = 0;                     // the window's lower end (in force when > 0)
  T lim = 0;                     // the window's upper end as an inclusive bound
  bool self_query = false;       // query is points: the points' tree groups the queries too
  T* dists;                      // (B, M, k) output
  int64_t* idx;                  // (B, M, k) output
  std::vector<SearchTree<T>> trees;            // per cloud: the tree over its points
  std::vector<SearchTree<T>> own_query_trees;  // per cloud: over its queries (not self_query)
  // Units of search work: chunk c holds kLeavesPerChunk query groups (leaves of the query
  // tree) of the cloud b with chunk_start[b] <= c < chunk_start[b + 1].
  std::vector<int64_t> chunk_start;
  int max_depth = 0;  // of every cloud's tree: sizes the search stacks

  static constexpr int64_t kLeavesPerChunk = 4;

  const SearchTree<T>& query_tree(int64_t b) const {
    return self_query ? trees[b] : own_query_trees[b];
  }
};

// Builds cloud b's trees and writes -1 / +inf into its padding query rows.
template <typename T>
void prepare_cloud(NeighborSearch<T>& s, int64_t b) {
  const int64_t n = s.lengths[b], m = s.query_lengths[b];
  s.trees[b].build(s.points + b * s.N * 3, n, kSearchLeafSize);
  if (!s.self_query) {
    // Groups about as large as the points' leaves keep a group's box about as small as a
    // leaf's.
    const double per_leaf =
        double(kSearchLeafSize) * double(m) / double(std::max<int64_t>(n, 1));
    const double leaf_size = std::clamp(per_leaf, 1.0, double(kSearchLeafSize));
    s.own_query_trees[b].build(s.query + b * s.M * 3, m, static_cast<int>(leaf_size));
  }
  std::fill(s.dists + (b * s.M + m) * s.k, s.dists + (b + 1) * s.M * s.k,
            std::numeric_limits<T>::infinity());
  std::fill(s.idx + (b * s.M + m) * s.k, s.idx + (b + 1) * s.M * s.k, int64_t(-1));
}

// Lays out the chunks of work once every cloud is prepared.
template <typename T>
void lay_out_chunks(NeighborSearch<T>& s) {
  constexpr int64_t kPer = NeighborSearch<T>::kLeavesPerChunk;
  for (int64_t b = 0; b < s.B; ++b) {
    const int64_t n_leaves = static_cast<int64_t>(s.query_tree(b).leaves.size());
    s.chunk_start[b + 1] = s.chunk_start[b] + (n_leaves + kPer - 1) / kPer;
    s.max_depth = std::max(s.max_depth, s.trees[b].depth);
  }
}

// The first step's inclusive bound for a group, from `estimate`, the largest k-th distance of
// the group this thread searched last (-1: none yet, or one of its queries fell short of k).
// Nearby groups have about the same k-th distances, and a surface holds points in proportion
// to the window's area, so a window of a quarter more area than that usually holds k points.
template <typename T>
T first_step_bound(T estimate, T lim, T area_lo) {
  constexpr T kSlack = T(1.25);
  return estimate >= 0 ? std::min(lim, area_lo + (estimate - area_lo) * kSlack) : lim;
}

// Searches the g queries of one group (coordinates qx/qy/qz[0..g)) in two steps. Searched in
// one step, every leaf within a query's bound would be scanned until the query holds k
// candidates, and the window reaches well beyond the k nearest (for a ring, past its empty
// inner disc; for kNN, the bound the group's first leaves leave to its farther queries). So
// the first step offers best[i] only the points with lo2 <= d <= first_bound: a query then
// holding k candidates has its exact answer. The others resume in retry[retry_slot[i]] over first_bound < d <= lim,
// keeping what they hold, so the two steps together offer exactly what one search of the
// window would. retry_slot[i] = -1: best[i] holds the answer.
template <bool kHasLo, typename T, typename Best>
void search_group(const SearchTree<T>& tree, const T* qx, const T* qy, const T* qz, int g,
                  int64_t k, T lo2, T first_bound, T lim, Best* best, Best* retry,
                  int* retry_slot, SearchStackEntry<T>* stack) {
  for (int i = 0; i < g; ++i) best[i].reset(k, first_bound);
  std::fill(retry_slot, retry_slot + g, -1);
  if (tree.empty()) return;
  group_search<kHasLo>(tree, qx, qy, qz, g, lo2, best, stack);
  if (!(first_bound < lim)) return;
  T rx[kSearchLeafSize], ry[kSearchLeafSize], rz[kSearchLeafSize];
  int n_retry = 0;
  for (int i = 0; i < g; ++i) {
    if (best[i].full()) continue;
    retry_slot[i] = n_retry;
    rx[n_retry] = qx[i];
    ry[n_retry] = qy[i];
    rz[n_retry] = qz[i];
    retry[n_retry++].resume(best[i], lim);
  }
  // d > first_bound: boxes wholly within it, already scanned, are skipped.
  if (n_retry > 0)
    group_search<true>(tree, rx, ry, rz, n_retry,
                       std::nextafter(first_bound, std::numeric_limits<T>::infinity()), retry,
                       stack);
}

// Writes the output rows of the g queries of a group (slots first .. first + g of qtree) of
// cloud b, each passed to finish; returns the estimate for the next group (first_step_bound).
template <typename T, typename Best, typename Finish>
T write_group(const NeighborSearch<T>& s, int64_t b, const SearchTree<T>& qtree, int32_t first,
              int g, Best* best, Best* retry, const int* retry_slot, const Finish& finish) {
  const int64_t M = s.M, k = s.k;
  T kth = 0;  // the largest k-th distance of the group's queries
  bool all_full = true;
  for (int i = 0; i < g; ++i) {
    auto& bi = retry_slot[i] < 0 ? best[i] : retry[retry_slot[i]];
    all_full = all_full && bi.full();
    kth = max_of(kth, bi.bound);
    const int64_t m = qtree.index[first + i];
    T* drow = s.dists + (b * M + m) * k;
    int64_t* irow = s.idx + (b * M + m) * k;
    const int64_t n = bi.emit(drow, irow);
    finish(b, m, drow, irow, n, s.trees[b]);
  }
  return all_full ? kth : T(-1);
}

// One thread's share of the search: chunks taken from next_chunk until none is left.
template <bool kHasLo, typename Best, typename T, typename Finish>
void search_chunks(const NeighborSearch<T>& s, const Finish& finish,
                   std::atomic<int64_t>& next_chunk) {
  constexpr int64_t kPer = NeighborSearch<T>::kLeavesPerChunk;
  std::vector<Best> best(kSearchLeafSize), retry(kSearchLeafSize);
  std::vector<SearchStackEntry<T>> stack(s.max_depth + 2);
  const int64_t k = s.k;
  const T lo2 = s.lo2, lim = s.lim;
  const T area_lo = max_of(lo2, T(0));  // ball_query's lo2 is -1
  const int64_t n_chunks = s.chunk_start[s.B];
  T estimate = -1;
  for (;;) {
    const int64_t c = next_chunk.fetch_add(1, std::memory_order_relaxed);
    if (c >= n_chunks) return;
    const int64_t b =
        std::upper_bound(s.chunk_start.begin(), s.chunk_start.end(), c) - s.chunk_start.begin() - 1;
    const SearchTree<T>& tree = s.trees[b];
    const SearchTree<T>& qtree = s.query_tree(b);
    const int64_t l0 = (c - s.chunk_start[b]) * kPer;
    const int64_t l1 = std::min<int64_t>(qtree.leaves.size(), l0 + kPer);
    for (int64_t l = l0; l < l1; ++l) {
      const auto& leaf = qtree.nodes[qtree.leaves[l]];
      const int32_t f = leaf.first;
      const int g = leaf.count;
      int retry_slot[kSearchLeafSize];
      search_group<kHasLo>(tree, qtree.x.data() + f, qtree.y.data() + f, qtree.z.data() + f, g,
                           k, lo2, first_step_bound(estimate, lim, area_lo), lim, best.data(),
                           retry.data(), retry_slot, stack.data());
      estimate = write_group(s, b, qtree, f, g, best.data(), retry.data(), retry_slot, finish);
    }
  }
}

// search_chunks with the k-best container for k and the window test for lo2.
template <typename T, typename Finish>
void search_chunks_any(const NeighborSearch<T>& s, const Finish& finish,
                       std::atomic<int64_t>& next_chunk) {
  const bool has_lo = s.lo2 > T(0);
  if (s.k <= kSortedMaxK) {
    if (has_lo)
      search_chunks<true, SortedBest<T>>(s, finish, next_chunk);
    else
      search_chunks<false, SortedBest<T>>(s, finish, next_chunk);
  } else {
    if (has_lo)
      search_chunks<true, HeapBest<T>>(s, finish, next_chunk);
    else
      search_chunks<false, HeapBest<T>>(s, finish, next_chunk);
  }
}

// Prepares every cloud, then searches, in one parallel region (each fork / join costs a lot
// on a loaded machine): clouds are prepared, then searched, both handed out from atomic
// counters; the first thread to see every cloud prepared lays out the chunks, the others
// yield until then. A cloud whose preparation throws still counts as done (so no thread waits
// forever); at::parallel_for rethrows the exception once every thread has returned.
template <typename T, typename Finish>
void run_neighbor_search(NeighborSearch<T>& s, const Finish& finish) {
  const int64_t B = s.B;
  std::atomic<int64_t> next_cloud{0}, clouds_done{0}, next_chunk{0};
  std::atomic<bool> failed{false};
  std::atomic<int> chunks_laid_out{0};  // 0: not yet, 1: being laid out, 2: done
  const int64_t n_workers = std::min<int64_t>(at::get_num_threads(), B * s.M);
  at::parallel_for(0, n_workers, 1, [&](int64_t, int64_t) {
    for (int64_t b; (b = next_cloud.fetch_add(1)) < B;) {
      try {
        prepare_cloud(s, b);
      } catch (...) {
        failed = true;
        clouds_done.fetch_add(1, std::memory_order_release);
        throw;
      }
      clouds_done.fetch_add(1, std::memory_order_release);
    }
    while (clouds_done.load(std::memory_order_acquire) < B) std::this_thread::yield();
    if (failed) return;
    int expected = 0;
    if (chunks_laid_out.compare_exchange_strong(expected, 1)) {
      lay_out_chunks(s);
      chunks_laid_out.store(2, std::memory_order_release);
    } else {
      while (chunks_laid_out.load(std::memory_order_acquire) < 2) std::this_thread::yield();
    }
    search_chunks_any(static_cast<const NeighborSearch<T>&>(s), finish, next_chunk);
  });
}

// The finish step of knn and ball_query: rows stay in distance order.
struct KeepDistanceOrder {
  template <typename... Args>
  void operator()(Args&&...) const {}
};

// The search itself: query (B, M, 3) and points (B, N, 3) of dtype T, query_lengths and
// lengths (B,) int64, all checked by check_search_inputs; the window lo2 <= d < hi2 (lo2 <= 0:
// no lower end). Returns (dists2 (B, M, k) T, idx (B, M, k) int64), ascending by distance,
// -1 / +inf past the kept neighbours.
// finish(b, m, drow, irow, n, tree) may reorder the n kept neighbours of query row (b, m),
// already written ascending by distance into drow / irow; ring_query uses it for the angular
// order. tree is the cloud's search tree, whose copy of the coordinates the search just read.
template <typename T, typename Finish>
std::tuple<at::Tensor, at::Tensor> bounded_neighbor_search(
    const at::Tensor& query_in, const at::Tensor& points_in, const at::Tensor& query_lengths,
    const at::Tensor& lengths, int64_t k, T lo2, T hi2, Finish finish) {
  const at::Tensor query = query_in.contiguous();
  const at::Tensor points = points_in.contiguous();
  const at::Tensor qlen_t = query_lengths.contiguous();
  const at::Tensor len_t = lengths.contiguous();
  const int64_t B = query.size(0), M = query.size(1);
  auto dists = at::empty({B, M, k}, query.options());
  auto idx = at::empty({B, M, k}, query.options().dtype(at::kLong));
  if (B == 0 || M == 0) return {dists, idx};
  advise_huge_pages(dists);
  advise_huge_pages(idx);

  NeighborSearch<T> s;
  s.points = points.data_ptr<T>();
  s.query = query.data_ptr<T>();
  s.lengths = len_t.data_ptr<int64_t>();
  s.query_lengths = qlen_t.data_ptr<int64_t>();
  s.B = B;
  s.M = M;
  s.N = points.size(1);
  s.k = k;
  s.lo2 = lo2;
  // The window's upper end as an inclusive bound: d < hi2  <=>  d <= the float below hi2.
  s.lim = std::nextafter(hi2, -std::numeric_limits<T>::infinity());
  s.self_query = query.data_ptr() == points.data_ptr() && query.sizes() == points.sizes() &&
                 at::equal(qlen_t, len_t);
  s.dists = dists.template data_ptr<T>();
  s.idx = idx.template data_ptr<int64_t>();
  s.trees.resize(B);
  if (!s.self_query) s.own_query_trees.resize(B);
  s.chunk_start.assign(B + 1, 0);
  run_neighbor_search(s, finish);
  return {dists, idx};
}

}  // namespace pcseg
