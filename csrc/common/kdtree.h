// A static spatial tree over one cloud (a bounding-volume hierarchy over Morton-sorted points,
// see build()), shared by the CPU kernels of farthest_point_sample, knn, ball_query and
// ring_query (three_nn is knn with k = 3; the searches re-lay the tree out: SearchTree in
// common/search_tree.h).
// Points are copied in tree order as a structure of arrays, so each leaf is a contiguous run
// that the distance loops stream through.
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
    x.resize(n);
    y.resize(n);
    z.resize(n);
    index.resize(n);
    if (n == 0) return;
    code_bits = morton_order(pts, n, index);
    for (int64_t i = 0; i < n; ++i) {
      const T* p = pts + 3 * index[i];
      x[i] = p[0];
      y[i] = p[1];
      z[i] = p[2];
    }
    nodes.reserve(static_cast<size_t>(4 * n / std::max(leaf_size, 1) + 4));
    build_node(0, static_cast<int32_t>(n), std::max(leaf_size, 1));
    code_bits = std::vector<uint32_t>();
  }

  bool empty() const { return nodes.empty(); }

  // The box of points [begin, end) of coordinate arrays xs, ys, zs (empty: +inf / -inf).
  static void bounding_box(const T* xs, const T* ys, const T* zs, int64_t begin, int64_t end,
                           T lo[3], T hi[3]) {
    for (int d = 0; d < 3; ++d) {
      lo[d] = std::numeric_limits<T>::infinity();
      hi[d] = -std::numeric_limits<T>::infinity();
    }
    for (int64_t i = begin; i < end; ++i) {
      lo[0] = std::min(lo[0], xs[i]);
      hi[0] = std::max(hi[0], xs[i]);
      lo[1] = std::min(lo[1], ys[i]);
      hi[1] = std::max(hi[1], ys[i]);
      lo[2] = std::min(lo[2], zs[i]);
      hi[2] = std::max(hi[2], zs[i]);
    }
  }

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

  // 10 bits per axis, so a code fits 30 bits: 1024 cells along the longest side of the
  // cloud's box. Where one cell holds more than a leaf, its points are coded again relative
  // to their own box (refine_codes), so dense clusters still split spatially.
  static constexpr int kBitsPerAxis = 10;

 private:
  std::vector<uint32_t> code_bits;  // Morton code of each point in tree order (build only)

  static inline uint32_t spread_bits(uint32_t v) {  // abc -> a..b..c
    v &= 0x3ff;
    v = (v | (v << 16)) & 0x030000ff;
    v = (v | (v << 8)) & 0x0300f00f;
    v = (v | (v << 4)) & 0x030c30c3;
    v = (v | (v << 2)) & 0x09249249;
    return v;
  }

  struct Quantizer {
    double lo[3];
    double scale;
    // 1024 cells along the longest side of the box lo..hi (scale 0 for a single point).
    static Quantizer of_box(const double lo[3], const double hi[3]) {
      Quantizer qz;
      for (int d = 0; d < 3; ++d) qz.lo[d] = lo[d];
      const double extent = std::max({hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]});
      qz.scale = extent > 0 ? double(1 << kBitsPerAxis) / extent : 0.0;
      return qz;
    }
    static Quantizer of(const T* pts, int64_t n) {
      double lo[3], hi[3];
      for (int d = 0; d < 3; ++d) {
        lo[d] = std::numeric_limits<double>::infinity();
        hi[d] = -std::numeric_limits<double>::infinity();
      }
      for (int64_t i = 0; i < n; ++i)
        for (int d = 0; d < 3; ++d) {
          lo[d] = std::min(lo[d], double(pts[3 * i + d]));
          hi[d] = std::max(hi[d], double(pts[3 * i + d]));
        }
      return of_box(lo, hi);
    }
    inline uint32_t code(T px, T py, T pz) const {
      const T p[3] = {px, py, pz};
      uint32_t c = 0;
      for (int d = 0; d < 3; ++d) {
        const double q = (double(p[d]) - lo[d]) * scale;
        const uint32_t cell = std::min<uint32_t>(static_cast<uint32_t>(std::max(q, 0.0)),
                                                 (1u << kBitsPerAxis) - 1);
        c |= spread_bits(cell) << d;
      }
      return c;
    }
  };

  // Sorts code (and order alongside) ascending: LSD radix sort, 3 passes of 10 bits; stable,
  // so equal codes keep their order.
  static void radix_sort(std::vector<uint32_t>& code, std::vector<int64_t>& order) {
    const int64_t n = static_cast<int64_t>(code.size());
    std::vector<uint32_t> code_tmp(n);
    std::vector<int64_t> tmp(n);
    for (int pass = 0; pass < 3; ++pass) {
      const int shift = 10 * pass;
      int64_t count[1025] = {0};
      for (int64_t i = 0; i < n; ++i) ++count[((code[i] >> shift) & 0x3ff) + 1];
      for (int c = 0; c < 1024; ++c) count[c + 1] += count[c];
      for (int64_t i = 0; i < n; ++i) {
        const int64_t dst = count[(code[i] >> shift) & 0x3ff]++;
        code_tmp[dst] = code[i];
        tmp[dst] = order[i];
      }
      code.swap(code_tmp);
      order.swap(tmp);
    }
  }

  // The tree is a bounding-volume hierarchy over the points sorted along a Z-order (Morton)
  // curve: one O(n) radix sort instead of a median split per level, which made the build
  // cost as much as a whole 4,096-sample FPS. Nodes split where the Morton prefix changes,
  // i.e. along octree cell boundaries, so boxes stay compact.
  // Fills order with the point indices sorted by Morton code; returns the sorted codes.
  static std::vector<uint32_t> morton_order(const T* pts, int64_t n,
                                            std::vector<int64_t>& order) {
    const Quantizer qz = Quantizer::of(pts, n);
    std::vector<uint32_t> code(n);
    for (int64_t i = 0; i < n; ++i) {
      code[i] = qz.code(pts[3 * i], pts[3 * i + 1], pts[3 * i + 2]);
      order[i] = i;
    }
    radix_sort(code, order);
    return code;
  }

  // Points [begin, end) share one Morton code: code them again relative to their own box and
  // re-sort the range by the new codes. Returns false when the points all coincide.
  bool refine_codes(int32_t begin, int32_t end) {
    T lo[3], hi[3];
    bounding_box(x.data(), y.data(), z.data(), begin, end, lo, hi);
    const double dlo[3] = {double(lo[0]), double(lo[1]), double(lo[2])};
    const double dhi[3] = {double(hi[0]), double(hi[1]), double(hi[2])};
    const Quantizer qz = Quantizer::of_box(dlo, dhi);
    if (!(qz.scale > 0)) return false;
    const int32_t n = end - begin;
    std::vector<uint32_t> code(n);
    std::vector<int64_t> order(n);
    for (int32_t i = 0; i < n; ++i) {
      code[i] = qz.code(x[begin + i], y[begin + i], z[begin + i]);
      order[i] = begin + i;
    }
    radix_sort(code, order);
    std::vector<T> xs(n), ys(n), zs(n);
    std::vector<int64_t> ids(n);
    for (int32_t i = 0; i < n; ++i) {
      xs[i] = x[order[i]];
      ys[i] = y[order[i]];
      zs[i] = z[order[i]];
      ids[i] = index[order[i]];
    }
    std::copy(xs.begin(), xs.end(), x.begin() + begin);
    std::copy(ys.begin(), ys.end(), y.begin() + begin);
    std::copy(zs.begin(), zs.end(), z.begin() + begin);
    std::copy(ids.begin(), ids.end(), index.begin() + begin);
    std::copy(code.begin(), code.end(), code_bits.begin() + begin);
    return true;
  }

  int32_t build_node(int32_t begin, int32_t end, int leaf_size) {
    const int32_t id = static_cast<int32_t>(nodes.size());
    nodes.emplace_back();
    Node nd;
    nd.begin = begin;
    nd.end = end;
    nd.left = nd.right = -1;
    if (end - begin <= leaf_size) {
      bounding_box(x.data(), y.data(), z.data(), begin, end, nd.lo, nd.hi);
      nodes[id] = nd;
      return id;
    }
    int32_t mid = begin + (end - begin) / 2;  // coinciding points: halve
    uint32_t c_first = code_bits[begin], c_last = code_bits[end - 1];
    if (c_first == c_last && refine_codes(begin, end)) {
      c_first = code_bits[begin];
      c_last = code_bits[end - 1];
    }
    if (c_first != c_last) {
      const uint32_t top = 31u - static_cast<uint32_t>(__builtin_clz(c_first ^ c_last));
      const uint32_t bit = 1u << top;
      mid = static_cast<int32_t>(
          std::partition_point(code_bits.begin() + begin, code_bits.begin() + end,
                               [bit](uint32_t c) { return (c & bit) == 0; }) -
          code_bits.begin());
    }
    nd.left = build_node(begin, mid, leaf_size);
    nd.right = build_node(mid, end, leaf_size);
    const Node& l = nodes[nd.left];
    const Node& r = nodes[nd.right];
    for (int d = 0; d < 3; ++d) {
      nd.lo[d] = std::min(l.lo[d], r.lo[d]);
      nd.hi[d] = std::max(l.hi[d], r.hi[d]);
    }
    nodes[id] = nd;
    return id;
  }
};

// A neighbour: squared distance and original index, ordered by distance, then by the lower
// index (the rule of a stable sort of the brute-force distances).
template <typename T>
struct Neighbor {
  T d;
  int64_t i;
};
template <typename T>
inline bool operator<(const Neighbor<T>& a, const Neighbor<T>& b) {
  return a.d < b.d || (a.d == b.d && a.i < b.i);
}

}  // namespace pcseg
