// SearchTree: the kd-tree of common/kdtree.h re-laid out for the CPU neighbour search
// (common/neighbor_search.h), plus the small branch-free helpers the search shares with it.
#pragma once
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/kdtree.h"

namespace pcseg {

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

}  // namespace pcseg
