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
//   * the tree is re-laid out for searching (SearchTree): siblings are adjacent, leaves start
//     at multiples of kLeafPad points and are padded with +inf points, so a leaf's distances
//     are one branch-free, vectorised loop, filtered by a SIMD compare into a bit mask;
//   * for k <= kSortedMaxK the k best are a sorted array of packed (distance, index) keys
//     (one integer compare per step of an insertion, no final sort); larger k use a heap;
//   * the window's upper end is one inclusive bound (d <= bound) that shrinks to the k-th
//     best distance once k candidates are held: one compare filters points and prunes boxes;
//   * one parallel region per call, its work handed out from atomic counters, so a thread
//     slowed down by other load on the machine does not hold the others up; the input checks
//     run no torch ops on CPU tensors (on a loaded machine every parallel region of a torch
//     op costs milliseconds of spinning); large outputs ask for transparent huge pages.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(__SSE2__) && !defined(__CUDACC__)
#include <emmintrin.h>
#endif
#if defined(__linux__) && !defined(__CUDACC__)
#include <sys/mman.h>
#endif

#include "common/checks.h"
#include "common/kdtree.h"

namespace pcseg {

// check_finite, but a contiguous CPU tensor is scanned in place on this thread: no bool
// tensor, no parallel region (which costs more than the scan when the machine is loaded).
inline void check_finite_coordinates(const at::Tensor& t, const char* name) {
  if (!t.is_cpu() || !t.is_contiguous() || t.numel() == 0) return check_finite(t, name);
  bool finite = true;
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "check_finite_coordinates", [&] {
    using Bits = std::conditional_t<sizeof(scalar_t) == 4, uint32_t, uint64_t>;
    constexpr Bits kExp = sizeof(scalar_t) == 4 ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
    const scalar_t* v = t.data_ptr<scalar_t>();
    const int64_t n = t.numel();
    for (int64_t i0 = 0; i0 < n && finite; i0 += 4096) {  // all exponent bits set: Inf / NaN
      Bits bad = 0;
      for (int64_t i = i0; i < std::min(n, i0 + 4096); ++i) {
        Bits bits;
        std::memcpy(&bits, v + i, sizeof bits);
        bad |= Bits((bits & kExp) == kExp);
      }
      finite = bad == 0;
    }
  });
  if (!finite) check_finite(t, name);  // throws its message
}

// Checks common to knn, ball_query and ring_query (shared with the CUDA entry points).
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
  check_finite_coordinates(query, "query");
  check_finite_coordinates(points, "points");
}

#if !defined(__CUDACC__)

#if defined(__GNUC__)
#define PCSEG_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define PCSEG_ALWAYS_INLINE inline
#endif

// max(a, b) as one maxss / maxsd (std::max sometimes becomes a branch). No NaN reaches it.
template <typename T>
PCSEG_ALWAYS_INLINE T max_of(T a, T b) {
  return a > b ? a : b;
}

constexpr int kSearchLeafSize = 32;  // most points per leaf (at most 64 - kLeafPad)
constexpr int kLeafPad = 4;          // leaves start at multiples of this many points
constexpr int kSortedMaxK = 64;      // k up to this: sorted array; beyond: binary heap

// A fresh output of many MB is otherwise first touched one 4 KiB page fault at a time, which
// costs as much as the search for large k: ask for transparent huge pages (where the kernel
// leaves that to madvise). Only a hint; the tensor's memory and contents are unaffected.
inline void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kPage = 4096;
  const size_t bytes = t.numel() * t.element_size();
  if (bytes < (size_t(4) << 20)) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(t.data_ptr()) + kPage - 1) & ~(kPage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(t.data_ptr()) + bytes) & ~(kPage - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

// The Morton BVH of KdTree (same leaves, same boxes), re-laid out for the neighbour search.
template <typename T>
struct SearchTree {
  struct Node {
    T lo[3];
    int32_t first;  // leaf: first slot of its points; internal: left child (right = first + 1)
    T hi[3];
    int32_t count;  // leaf: number of points (> 0); internal: 0
  };
  std::vector<Node> nodes;
  std::vector<T> x, y, z;       // coordinates per slot; padding slots are +inf
  std::vector<int32_t> index;   // original index per slot
  std::vector<int32_t> slot_of; // slot per original index
  std::vector<int32_t> leaves;  // leaf node ids in slot order
  int depth = 0;                // deepest level (root = 0): bounds the search stack

  bool empty() const { return nodes.empty(); }

  void build(const T* pts, int64_t n, int leaf_size) {
    nodes.clear();
    x.clear();
    y.clear();
    z.clear();
    index.clear();
    slot_of.clear();
    leaves.clear();
    depth = 0;
    if (n == 0) return;
    TORCH_CHECK(n < (int64_t(1) << 30), "clouds of at most 2^30 points are supported, got ", n);
    const KdTree<T> src(pts, n, leaf_size);
    int64_t n_leaves = 0;
    for (const auto& nd : src.nodes) n_leaves += nd.left < 0;
    const int64_t slots = n + (kLeafPad - 1) * n_leaves;
    const T inf = std::numeric_limits<T>::infinity();
    x.assign(slots, inf);
    y.assign(slots, inf);
    z.assign(slots, inf);
    index.assign(slots, std::numeric_limits<int32_t>::max());
    slot_of.resize(n);
    leaves.reserve(n_leaves);
    nodes.reserve(src.nodes.size());
    nodes.emplace_back();
    int32_t cursor = 0;
    copy_node(src, 0, 0, 0, cursor);
  }

  // Squared distance from q to the box (0 inside): the same formula as KdTree::box_dist2
  // (the gap on each axis is lo - q, q - hi or 0, exactly), written branch-free.
  PCSEG_ALWAYS_INLINE static T box_dist2(const Node& nd, T qx, T qy, T qz) {
    const T gx = max_of(max_of(nd.lo[0] - qx, qx - nd.hi[0]), T(0));
    const T gy = max_of(max_of(nd.lo[1] - qy, qy - nd.hi[1]), T(0));
    const T gz = max_of(max_of(nd.lo[2] - qz, qz - nd.hi[2]), T(0));
    return gx * gx + gy * gy + gz * gz;
  }
  // Squared distance from q to the farthest corner of the box (an upper bound).
  PCSEG_ALWAYS_INLINE static T box_far2(const Node& nd, T qx, T qy, T qz) {
    const T fx = max_of(qx - nd.lo[0], nd.hi[0] - qx);
    const T fy = max_of(qy - nd.lo[1], nd.hi[1] - qy);
    const T fz = max_of(qz - nd.lo[2], nd.hi[2] - qz);
    return fx * fx + fy * fy + fz * fz;
  }

 private:
  void copy_node(const KdTree<T>& src, int32_t sid, int32_t did, int level, int32_t& cursor) {
    const auto& sn = src.nodes[sid];
    Node nd;
    for (int d = 0; d < 3; ++d) {
      nd.lo[d] = sn.lo[d];
      nd.hi[d] = sn.hi[d];
    }
    depth = std::max(depth, level);
    if (sn.left < 0) {
      nd.first = cursor;
      nd.count = sn.end - sn.begin;
      for (int32_t j = 0; j < nd.count; ++j) {
        x[cursor + j] = src.x[sn.begin + j];
        y[cursor + j] = src.y[sn.begin + j];
        z[cursor + j] = src.z[sn.begin + j];
        index[cursor + j] = static_cast<int32_t>(src.index[sn.begin + j]);
        slot_of[src.index[sn.begin + j]] = cursor + j;
      }
      cursor += (nd.count + kLeafPad - 1) / kLeafPad * kLeafPad;
      nodes[did] = nd;
      leaves.push_back(did);
      return;
    }
    const int32_t c = static_cast<int32_t>(nodes.size());
    nodes.emplace_back();
    nodes.emplace_back();
    nd.first = c;
    nd.count = 0;
    nodes[did] = nd;
    copy_node(src, sn.left, c, level + 1, cursor);
    copy_node(src, sn.right, c + 1, level + 1, cursor);
  }
};

// A candidate (d, original index) as one sort key, ordered by d then index: the tie rule.
// For float, d >= 0 (or +inf), whose IEEE bits order like the values, so the pair packs into
// one uint64 (bits of d above the index) and compares in one instruction.
template <typename T>
struct CandidateKey {
  struct type {
    T d;
    int32_t i;
    bool operator<(const type& o) const { return d < o.d || (d == o.d && i < o.i); }
  };
  static type make(T d, int32_t i) { return {d, i}; }
  static type lowest() { return {-std::numeric_limits<T>::infinity(), std::numeric_limits<int32_t>::min()}; }
  static T dist(const type& key) { return key.d; }
  static int32_t index(const type& key) { return key.i; }
};
template <>
struct CandidateKey<float> {
  using type = uint64_t;
  static type make(float d, int32_t i) {
    uint32_t bits;
    std::memcpy(&bits, &d, sizeof bits);
    return (uint64_t(bits) << 32) | uint32_t(i);
  }
  static type lowest() { return 0; }  // (+0, index 0): no key is smaller
  static float dist(type key) {
    const uint32_t bits = static_cast<uint32_t>(key >> 32);
    float d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }
  static int32_t index(type key) { return static_cast<int32_t>(static_cast<uint32_t>(key)); }
};

// Writes one output row of k slots from n ascending keys (then -1 / +inf); returns n.
template <typename T>
int64_t write_row(const typename CandidateKey<T>::type* keys, int64_t n, int64_t k, T* drow,
                  int64_t* irow) {
  for (int64_t j = 0; j < n; ++j) {
    drow[j] = CandidateKey<T>::dist(keys[j]);
    irow[j] = CandidateKey<T>::index(keys[j]);
  }
  std::fill(drow + n, drow + k, std::numeric_limits<T>::infinity());
  std::fill(irow + n, irow + k, int64_t(-1));
  return n;
}

// The k best candidates so far, ascending, for k <= kSortedMaxK. Every offered candidate
// must satisfy d <= bound; bound is the window's inclusive upper end until k are held, then
// the k-th best distance (an equal distance may still win on its lower index).
template <typename T>
struct SortedBest {
  using Key = CandidateKey<T>;
  typename Key::type slots[kSortedMaxK + 1];
  typename Key::type* const a = slots + 1;  // a[-1]: a sentinel no key precedes
  int n = 0, k = 0;
  T bound = 0;

  SortedBest() { slots[0] = Key::lowest(); }
  SortedBest(const SortedBest&) = delete;
  SortedBest& operator=(const SortedBest&) = delete;

  void reset(int64_t k_, T lim) {
    k = static_cast<int>(k_);
    n = 0;
    bound = lim;
  }
  inline void offer(T dv, int32_t iv) {
    const auto key = Key::make(dv, iv);
    int pos;
    if (n < k) {
      pos = n++;
    } else {
      if (!(key < a[k - 1])) return;
      pos = k - 1;
    }
    while (key < a[pos - 1]) {
      a[pos] = a[pos - 1];
      --pos;
    }
    a[pos] = key;
    if (n == k) bound = Key::dist(a[k - 1]);
  }
  bool full() const { return n == k; }
  // Continues from o's candidates (fewer than k) with the inclusive bound lim.
  void resume(const SortedBest& o, T lim) {
    k = o.k;
    n = o.n;
    std::copy(o.a, o.a + o.n, a);
    bound = lim;
  }
  // Writes the k slots of one output row (ascending, then -1 / +inf); returns the count.
  int64_t emit(T* drow, int64_t* irow) const { return write_row<T>(a, n, k, drow, irow); }
};

// The same for any k: a max-heap of keys, sorted at the end.
template <typename T>
struct HeapBest {
  using Key = CandidateKey<T>;
  std::vector<typename Key::type> items;
  int64_t k = 0;
  T bound = 0;

  void reset(int64_t k_, T lim) {
    k = k_;
    items.clear();
    bound = lim;
  }
  inline void offer(T dv, int32_t iv) {
    const auto key = Key::make(dv, iv);
    if (static_cast<int64_t>(items.size()) < k) {
      items.push_back(key);
      std::push_heap(items.begin(), items.end());
    } else if (key < items.front()) {
      std::pop_heap(items.begin(), items.end());
      items.back() = key;
      std::push_heap(items.begin(), items.end());
    } else {
      return;
    }
    if (static_cast<int64_t>(items.size()) == k) bound = Key::dist(items.front());
  }
  bool full() const { return static_cast<int64_t>(items.size()) == k; }
  void resume(const HeapBest& o, T lim) {
    k = o.k;
    items = o.items;
    bound = lim;
  }
  int64_t emit(T* drow, int64_t* irow) {
    std::sort_heap(items.begin(), items.end());
    return write_row<T>(items.data(), static_cast<int64_t>(items.size()), k, drow, irow);
  }
};

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
  auto group_bound = [&] {
    T m = best[0].bound;
    for (int i = 1; i < g; ++i) m = max_of(m, best[i].bound);
    return m;
  };
  const Node* nodes = tree.nodes.data();
  const T* xs = tree.x.data();
  const T* ys = tree.y.data();
  const T* zs = tree.z.data();
  const int32_t* ids = tree.index.data();
  T gbound = group_bound();
  if (box_box_dist2(nodes[0], box) > gbound) return;
  int sp = 0;
  int32_t id = 0;
  for (;;) {
    const Node& nd = nodes[id];
    if (!kHasLo || !(box_box_far2(nd, box) < lo2)) {
      if (nd.count > 0) {
        const int32_t f = nd.first;
        const int cp = (nd.count + kLeafPad - 1) / kLeafPad * kLeafPad;
        for (int i = 0; i < g; ++i) {
          Best& bi = best[i];
          const T px = qx[i], py = qy[i], pz = qz[i];
          if (Tree::box_dist2(nd, px, py, pz) > bi.bound) continue;
          if (kHasLo && Tree::box_far2(nd, px, py, pz) < lo2) continue;
          // All distances first (padding slots give +inf), then the few that pass.
          T dist[kSearchLeafSize + kLeafPad];
          for (int b = 0; b < cp; b += kLeafPad) {
            for (int l = 0; l < kLeafPad; ++l) {
              const T dx = xs[f + b + l] - px, dy = ys[f + b + l] - py,
                      dz = zs[f + b + l] - pz;
              dist[b + l] = dx * dx + dy * dy + dz * dz;
            }
          }
          uint64_t pass = passing_mask<kHasLo>(dist, cp, lo2, bi.bound);
          while (pass) {
            const int j = __builtin_ctzll(pass);
            pass &= pass - 1;
            const T d = dist[j];
            if (d <= bi.bound) bi.offer(d, ids[f + j]);  // the bound may have shrunk
          }
        }
        gbound = group_bound();
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

// finish(b, m, drow, irow, n, tree) may reorder the n kept neighbours of query row (b, m), already
// written ascending by distance into drow / irow; ring_query uses it for the angular order.
// tree is the cloud's search tree, whose copy of the coordinates the search just read.
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

  const int64_t* qlen = qlen_t.data_ptr<int64_t>();
  const int64_t* len = len_t.data_ptr<int64_t>();
  T* dout = dists.template data_ptr<T>();
  int64_t* iout = idx.template data_ptr<int64_t>();
  // Queries are searched in groups of nearby ones: the leaves of a tree over the queries
  // (the points' own tree for a self-query). Groups about as large as the points' leaves
  // keep the group's box about as small as a leaf's.
  const bool self_query = query.data_ptr() == points.data_ptr() &&
                          query.sizes() == points.sizes() && at::equal(qlen_t, len_t);
  const T* pts = points.data_ptr<T>();
  const T* qry = query.data_ptr<T>();
  const int64_t N = points.size(1);
  std::vector<SearchTree<T>> trees(B), own_query_trees(self_query ? 0 : B);
  const std::vector<SearchTree<T>>& qtrees = self_query ? trees : own_query_trees;
  // Per cloud: its trees, and -1 / +inf on its padding rows.
  auto prepare = [&](int64_t b) {
    trees[b].build(pts + b * N * 3, len[b], kSearchLeafSize);
    if (!self_query) {
      const double per_leaf = double(kSearchLeafSize) * double(qlen[b]) /
                              double(std::max<int64_t>(len[b], 1));
      own_query_trees[b].build(qry + b * M * 3, qlen[b],
                               static_cast<int>(std::clamp(per_leaf, 1.0, double(kSearchLeafSize))));
    }
    std::fill(dout + (b * M + qlen[b]) * k, dout + (b + 1) * M * k,
              std::numeric_limits<T>::infinity());
    std::fill(iout + (b * M + qlen[b]) * k, iout + (b + 1) * M * k, int64_t(-1));
  };
  const T inf = std::numeric_limits<T>::infinity();
  // The window's upper end as an inclusive bound: d < hi2  <=>  d <= the float below hi2.
  const T lim = std::nextafter(hi2, -inf);
  // Units of search work: runs of kLeavesPerChunk query groups of one cloud.
  constexpr int64_t kLeavesPerChunk = 4;
  std::vector<int64_t> chunk_start(B + 1, 0);
  int max_depth = 0;

  auto search = [&](auto* best, auto* retry, auto has_lo, std::atomic<int64_t>& next_chunk) {
    constexpr bool kHasLo = decltype(has_lo)::value;
    std::vector<SearchStackEntry<T>> stack(max_depth + 2);
    // Every query is searched in two steps. Every leaf within a query's bound is scanned
    // until it holds k candidates, and the window reaches well beyond the k nearest (for a
    // ring, past its empty inner disc; for kNN, the bound the group's first leaves leave to
    // its farther queries), so the first step stops a little beyond the k-th distance of the
    // group this thread searched last, which nearby groups share: at first_bound = area_lo +
    // kSlack * (kth - area_lo), a 25 % larger window area (a surface holds points in
    // proportion to it). A query holding k candidates then has its exact answer, since every
    // point with lo2 <= d <= first_bound was offered; the others resume over first_bound < d,
    // keeping what they hold, so the two steps together offer exactly what one search of the
    // window would. Measured on 16 x 1,024 centres over 4,096 surface points, k = 32: knn
    // 17 % and ring_query 15 % faster; within 2 % either way on generated indoor blocks,
    // where many rings fall short of k.
    T estimate = -1;  // that k-th distance (-1: none yet, or a query of the group fell short)
    constexpr T kSlack = T(1.25);
    const T area_lo = max_of(lo2, T(0));  // ball_query's lo2 is -1
    for (;;) {
      const int64_t c = next_chunk.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunk_start[B]) return;
      const int64_t b =
          std::upper_bound(chunk_start.begin(), chunk_start.end(), c) - chunk_start.begin() - 1;
      const SearchTree<T>& tree = trees[b];
      const SearchTree<T>& qtree = qtrees[b];
      const int64_t l0 = (c - chunk_start[b]) * kLeavesPerChunk;
      const int64_t l1 = std::min<int64_t>(qtree.leaves.size(), l0 + kLeavesPerChunk);
      for (int64_t l = l0; l < l1; ++l) {
        const auto& leaf = qtree.nodes[qtree.leaves[l]];
        const int32_t f = leaf.first;
        const int g = leaf.count;
        const T* qx = qtree.x.data() + f;
        const T* qy = qtree.y.data() + f;
        const T* qz = qtree.z.data() + f;
        const T first_bound =
            estimate >= 0 ? std::min(lim, area_lo + (estimate - area_lo) * kSlack) : lim;
        for (int i = 0; i < g; ++i) best[i].reset(k, first_bound);
        int retry_slot[kSearchLeafSize];  // -1: the first search's answer stands
        std::fill(retry_slot, retry_slot + g, -1);
        if (!tree.empty()) {
          group_search<kHasLo>(tree, qx, qy, qz, g, lo2, best, stack.data());
          if (first_bound < lim) {
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
              group_search<true>(tree, rx, ry, rz, n_retry, std::nextafter(first_bound, inf),
                                 retry, stack.data());
          }
        }
        T kth = 0;  // the largest k-th distance of the group's queries
        bool all_full = true;
        for (int i = 0; i < g; ++i) {
          auto& bi = retry_slot[i] < 0 ? best[i] : retry[retry_slot[i]];
          all_full = all_full && bi.full();
          kth = max_of(kth, bi.bound);
          const int64_t m = qtree.index[f + i];
          T* drow = dout + (b * M + m) * k;
          int64_t* irow = iout + (b * M + m) * k;
          const int64_t n = bi.emit(drow, irow);
          finish(b, m, drow, irow, n, tree);
        }
        estimate = all_full ? kth : T(-1);
      }
    }
  };
  auto search_any = [&](std::atomic<int64_t>& next_chunk) {
    auto with_best = [&](auto has_lo) {
      if (k <= kSortedMaxK) {
        std::vector<SortedBest<T>> best(kSearchLeafSize), retry(kSearchLeafSize);
        search(best.data(), retry.data(), has_lo, next_chunk);
      } else {
        std::vector<HeapBest<T>> best(kSearchLeafSize), retry(kSearchLeafSize);
        search(best.data(), retry.data(), has_lo, next_chunk);
      }
    };
    if (lo2 > T(0))
      with_best(std::true_type{});
    else
      with_best(std::false_type{});
  };

  // One parallel region for both phases (each fork / join costs a lot on a loaded machine):
  // clouds are prepared, then searched, both handed out from atomic counters; the first
  // thread to see every cloud prepared lays out the chunks, the others yield until then.
  // A cloud whose preparation throws still counts as done (so no thread waits forever);
  // at::parallel_for rethrows the exception once every thread has returned.
  std::atomic<int64_t> next_cloud{0}, clouds_done{0}, next_chunk{0};
  std::atomic<bool> failed{false};
  std::atomic<int> chunks_laid_out{0};  // 0: not yet, 1: being laid out, 2: done
  const int64_t n_workers = std::min<int64_t>(at::get_num_threads(), B * M);
  at::parallel_for(0, n_workers, 1, [&](int64_t, int64_t) {
    for (int64_t b; (b = next_cloud.fetch_add(1)) < B;) {
      try {
        prepare(b);
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
      for (int64_t b = 0; b < B; ++b) {
        const int64_t n_leaves = static_cast<int64_t>(qtrees[b].leaves.size());
        chunk_start[b + 1] = chunk_start[b] + (n_leaves + kLeavesPerChunk - 1) / kLeavesPerChunk;
        max_depth = std::max(max_depth, trees[b].depth);
      }
      chunks_laid_out.store(2, std::memory_order_release);
    } else {
      while (chunks_laid_out.load(std::memory_order_acquire) < 2) std::this_thread::yield();
    }
    search_any(next_chunk);
  });
  return {dists, idx};
}

#endif  // !defined(__CUDACC__)

}  // namespace pcseg
