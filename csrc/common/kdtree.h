// A static kd-tree over one cloud, shared by the CPU kernels of farthest_point_sample, knn,
// ball_query, ring_query and three_nn. Points are copied in tree order as a structure of
// arrays, so each leaf is a contiguous run that the distance loops stream through.
//
// Exactness: every squared distance is computed as (dx*dx + dy*dy) + dz*dz in the input dtype
// (the build disables FMA contraction), exactly like the pure-PyTorch references. The lower
// bound from a query to a node's box is computed with the same formula on the clamped
// coordinate, and rounding is monotone, so box_dist2 <= dist2 of every point inside holds in
// floating point too: pruning never drops a point the brute force would keep.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace pcseg {

template <typename T>
struct KdTree {
  struct Node {
    T lo[3], hi[3];
    int32_t begin, end;    // range in tree order
    int32_t left, right;   // children; left == -1 for a leaf
  };
  std::vector<Node> nodes;
  std::vector<T> x, y, z;          // coordinates in tree order
  std::vector<int64_t> index;      // original index of each tree-order point

  KdTree() = default;

  // pts: n rows of 3 coordinates (contiguous). Leaves hold at most leaf_size points.
  KdTree(const T* pts, int64_t n, int leaf_size) { build(pts, n, leaf_size); }

  void build(const T* pts, int64_t n, int leaf_size) {
    nodes.clear();
    index.resize(n);
    for (int64_t i = 0; i < n; ++i) index[i] = i;
    if (n > 0) {
      nodes.reserve(static_cast<size_t>(4 * n / std::max(leaf_size, 1) + 4));
      build_node(pts, 0, static_cast<int32_t>(n), leaf_size);
    }
    x.resize(n);
    y.resize(n);
    z.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const T* p = pts + 3 * index[i];
      x[i] = p[0];
      y[i] = p[1];
      z[i] = p[2];
    }
  }

  bool empty() const { return nodes.empty(); }

  static inline T axis_gap(T q, T lo, T hi) {
    return q < lo ? lo - q : (q > hi ? q - hi : T(0));
  }
  // Squared distance from q to the node's box (0 inside).
  inline T box_dist2(const Node& nd, T qx, T qy, T qz) const {
    const T gx = axis_gap(qx, nd.lo[0], nd.hi[0]);
    const T gy = axis_gap(qy, nd.lo[1], nd.hi[1]);
    const T gz = axis_gap(qz, nd.lo[2], nd.hi[2]);
    return gx * gx + gy * gy + gz * gz;
  }
  // Squared distance from q to the farthest corner of the node's box (an upper bound).
  inline T box_far2(const Node& nd, T qx, T qy, T qz) const {
    const T fx = std::max(qx - nd.lo[0], nd.hi[0] - qx);
    const T fy = std::max(qy - nd.lo[1], nd.hi[1] - qy);
    const T fz = std::max(qz - nd.lo[2], nd.hi[2] - qz);
    return fx * fx + fy * fy + fz * fz;
  }

 private:
  int32_t build_node(const T* pts, int32_t begin, int32_t end, int leaf_size) {
    const int32_t id = static_cast<int32_t>(nodes.size());
    nodes.emplace_back();
    Node nd;
    nd.begin = begin;
    nd.end = end;
    nd.left = nd.right = -1;
    for (int d = 0; d < 3; ++d) {
      nd.lo[d] = std::numeric_limits<T>::infinity();
      nd.hi[d] = -std::numeric_limits<T>::infinity();
    }
    for (int32_t i = begin; i < end; ++i) {
      const T* p = pts + 3 * index[i];
      for (int d = 0; d < 3; ++d) {
        nd.lo[d] = std::min(nd.lo[d], p[d]);
        nd.hi[d] = std::max(nd.hi[d], p[d]);
      }
    }
    if (end - begin > leaf_size) {
      int dim = 0;
      for (int d = 1; d < 3; ++d)
        if (nd.hi[d] - nd.lo[d] > nd.hi[dim] - nd.lo[dim]) dim = d;
      if (nd.hi[dim] > nd.lo[dim]) {  // all-equal points (duplicates) stay in one leaf
        const int32_t mid = begin + (end - begin) / 2;
        std::nth_element(index.begin() + begin, index.begin() + mid, index.begin() + end,
                         [pts, dim](int64_t a, int64_t b) {
                           return pts[3 * a + dim] < pts[3 * b + dim];
                         });
        nd.left = build_node(pts, begin, mid, leaf_size);
        nd.right = build_node(pts, mid, end, leaf_size);
      }
    }
    nodes[id] = nd;
    return id;
  }
};

// The k best (smallest (dist2, index) pairs) seen so far, as a max-heap so the worst is at
// the root. Ties on distance are broken by the lower original index, the rule of a stable
// sort of the brute-force distances.
template <typename T>
struct Neighbor {
  T d;
  int64_t i;
};
template <typename T>
inline bool operator<(const Neighbor<T>& a, const Neighbor<T>& b) {
  return a.d < b.d || (a.d == b.d && a.i < b.i);
}

template <typename T>
struct BoundedHeap {
  std::vector<Neighbor<T>> items;
  int64_t k = 0;
  void reset(int64_t k_) {
    k = k_;
    items.clear();
  }
  bool full() const { return static_cast<int64_t>(items.size()) == k; }
  const Neighbor<T>& worst() const { return items.front(); }
  inline void offer(T d, int64_t i) {
    const Neighbor<T> cand{d, i};
    if (!full()) {
      items.push_back(cand);
      std::push_heap(items.begin(), items.end());
    } else if (cand < items.front()) {
      std::pop_heap(items.begin(), items.end());
      items.back() = cand;
      std::push_heap(items.begin(), items.end());
    }
  }
  // Ascending order; the heap is consumed.
  void sort() { std::sort_heap(items.begin(), items.end()); }
};

// The k nearest points of q whose squared distance d satisfies lo2 <= d < hi2, into heap.
// lo2 = -1 and hi2 = +inf give plain kNN.
template <typename T>
void kdtree_search(const KdTree<T>& tree, T qx, T qy, T qz, T lo2, T hi2,
                   BoundedHeap<T>& heap, std::vector<std::pair<T, int32_t>>& stack) {
  if (tree.empty() || heap.k == 0) return;
  stack.clear();
  const auto& root = tree.nodes[0];
  stack.emplace_back(tree.box_dist2(root, qx, qy, qz), 0);
  while (!stack.empty()) {
    const auto [bd, id] = stack.back();
    stack.pop_back();
    // A box at distance equal to the worst kept one may still hold an equally far point with
    // a lower index, so only strictly farther boxes are pruned.
    if (bd >= hi2) continue;
    if (heap.full() && bd > heap.worst().d) continue;
    const auto& nd = tree.nodes[id];
    if (lo2 > T(0) && tree.box_far2(nd, qx, qy, qz) < lo2) continue;  // inside the inner ball
    if (nd.left < 0) {
      const T* xs = tree.x.data();
      const T* ys = tree.y.data();
      const T* zs = tree.z.data();
      for (int32_t j = nd.begin; j < nd.end; ++j) {
        const T dx = xs[j] - qx, dy = ys[j] - qy, dz = zs[j] - qz;
        const T d = dx * dx + dy * dy + dz * dz;
        if (d < hi2 && d >= lo2) heap.offer(d, tree.index[j]);
      }
    } else {
      const T dl = tree.box_dist2(tree.nodes[nd.left], qx, qy, qz);
      const T dr = tree.box_dist2(tree.nodes[nd.right], qx, qy, qz);
      // Push the farther child first so the nearer one is searched first.
      if (dl <= dr) {
        stack.emplace_back(dr, nd.right);
        stack.emplace_back(dl, nd.left);
      } else {
        stack.emplace_back(dl, nd.left);
        stack.emplace_back(dr, nd.right);
      }
    }
  }
}

}  // namespace pcseg
