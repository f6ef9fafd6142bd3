#include "ring_query/ring_query.h"

#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "common/angular_key.h"
#include "common/neighbor_search.h"
#include "common/search_tree.h"

namespace pcseg {
namespace {

constexpr int kMaxRankWidth = 64;  // rings up to this size are rank-sorted

// A stable sort by angle of a ring of n <= kW neighbours: order[t] is the position (in
// distance order) of the t-th neighbour counter-clockwise. Sorting is most of the cost of the
// angular order, and a comparison sort of 32 keys mispredicts a branch at almost every step,
// so the keys are ranked by counting instead: kW^2 compares, which vectorise. The compared
// keys are 32-bit: float(angle) (rounding is monotone) with the position in its low
// log2(kW) bits, so they are distinct and rank like (angle, position), except where two
// angles agree in every bit above those: only such neighbours can come out of order, which
// an exact check in float64 catches and an insertion sort repairs. On scattered points that
// is rare; exactly equal angles (duplicates, grids) take the repair every time, and it is
// exact.
template <int kW>
inline void rank_sort_by_angle(const double* angle, int64_t n, int32_t* order) {
  static_assert((kW & (kW - 1)) == 0, "kW must be a power of two");
  int32_t key[kW], rank[kW] = {};
  for (int64_t j = 0; j < n; ++j) {
    const float a = static_cast<float>(angle[j]);  // angles are >= 0: the bits order like a
    int32_t bits;
    std::memcpy(&bits, &a, sizeof bits);
    key[j] = (bits & ~int32_t(kW - 1)) | static_cast<int32_t>(j);
  }
  for (int64_t j = n; j < kW; ++j) key[j] = std::numeric_limits<int32_t>::max();
  // Integer compares: the keys' float values could be subnormal, which a flush-to-zero mode
  // would make equal.
  for (int i = 0; i < kW; ++i) {
    const int32_t ki = key[i];
    for (int j = 0; j < kW; ++j) rank[j] += ki < key[j];
  }
  for (int64_t j = 0; j < n; ++j) order[rank[j]] = static_cast<int32_t>(j);
  // The exact order: angle, then position (written without short-circuits, so that the
  // check below is one branch-free loop).
  auto before = [&](int32_t x, int32_t y) {
    return (angle[x] < angle[y]) | ((angle[x] == angle[y]) & (x < y));
  };
  bool sorted = true;
  for (int64_t t = 1; t < n; ++t) sorted &= before(order[t - 1], order[t]);
  if (sorted) return;
  for (int64_t t = 1; t < n; ++t) {
    const int32_t x = order[t];
    int64_t s = t;
    for (; s > 0 && before(x, order[s - 1]); --s) order[s] = order[s - 1];
    order[s] = x;
  }
}

// Built twice where the toolchain can (an AVX2 clone, picked at load time on CPUs that have
// it, and the baseline): the keys and the ranking are wide, branch-free loops, which AVX2
// runs in fewer instructions. The arithmetic is the same IEEE float64 (no FMA:
// -ffp-contract=off), so both clones give the same keys.
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define PCSEG_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PCSEG_AVX2_CLONES
#endif

// The angular order of a ring of 2 <= n <= kMaxRankWidth neighbours at offsets (ox, oy, oz)
// from the centre: angle[j] their keys, order[t] the position of the t-th counter-clockwise.
PCSEG_AVX2_CLONES void order_small_ring(const AngularFrame& f, const double* ox,
                                        const double* oy, const double* oz, int64_t n,
                                        double* angle, int32_t* order) {
  for (int64_t j = 0; j < n; ++j) angle[j] = angular_key(f, ox[j], oy[j], oz[j]);
  if (n <= 32)
    rank_sort_by_angle<32>(angle, n, order);
  else
    rank_sort_by_angle<64>(angle, n, order);
}

// The same for rings of any size: a comparison sort.
inline void sort_by_angle(const double* angle, int64_t n, int32_t* order) {
  for (int64_t j = 0; j < n; ++j) order[j] = static_cast<int32_t>(j);
  std::stable_sort(order, order + n, [&](int32_t x, int32_t y) { return angle[x] < angle[y]; });
}

// Per-thread buffers for rings larger than kMaxRankWidth, grown as needed.
template <typename T>
struct LargeRingScratch {
  std::vector<T> d;
  std::vector<int64_t> i;
  std::vector<double> ox, oy, oz, angle;
  std::vector<int32_t> order;
  void resize(int64_t n) {
    if (static_cast<int64_t>(d.size()) >= n) return;
    d.resize(n);
    i.resize(n);
    ox.resize(n);
    oy.resize(n);
    oz.resize(n);
    angle.resize(n);
    order.resize(n);
  }
};

// Reorders the n kept neighbours of one ring (ascending by distance in drow / irow) by angle
// around the centre's normal, with the buffers given (each of at least n entries). The
// coordinates are read from the search tree's copy of the cloud, where the ring's points lie
// in the few leaves just scanned (still in cache), rather than from the cloud itself, where
// they are scattered.
template <typename T>
void order_ring(const AngularFrame& f, const SearchTree<T>& tree, T* drow, int64_t* irow,
                int64_t n, T* d, int64_t* i, double* ox, double* oy, double* oz, double* angle,
                int32_t* order) {
  const int32_t* slot_of = tree.slot_of.data();
  const T* xs = tree.x.data();
  const T* ys = tree.y.data();
  const T* zs = tree.z.data();
  // Offsets gathered first, so that the keys are one branch-free loop the compiler
  // vectorises (the arithmetic of angular_keys, which the CUDA kernel runs).
  for (int64_t j = 0; j < n; ++j) {
    d[j] = drow[j];
    i[j] = irow[j];
    const int32_t s = slot_of[i[j]];
    ox[j] = double(xs[s]) - f.q0;
    oy[j] = double(ys[s]) - f.q1;
    oz[j] = double(zs[s]) - f.q2;
  }
  if (n <= kMaxRankWidth) {
    order_small_ring(f, ox, oy, oz, n, angle, order);
  } else {
    for (int64_t j = 0; j < n; ++j) angle[j] = angular_key(f, ox[j], oy[j], oz[j]);
    sort_by_angle(angle, n, order);
  }
  for (int64_t t = 0; t < n; ++t) {
    drow[t] = d[order[t]];
    irow[t] = i[order[t]];
  }
}

// The finish step of ring_query's search (see bounded_neighbor_search): reorders each kept
// ring of query row (b, m) by angle around its centre's normal.
template <typename T>
struct AngularOrder {
  const T* query;    // (B, M, 3), contiguous
  const T* normals;  // (B, M, 3), contiguous
  int64_t M;

  void operator()(int64_t b, int64_t m, T* drow, int64_t* irow, int64_t n_kept,
                  const SearchTree<T>& tree) const {
    if (n_kept < 2) return;
    // The reference, the farthest kept neighbour, from the tree's copy (see order_ring).
    const int32_t ref = tree.slot_of[irow[n_kept - 1]];
    const T reference[3] = {tree.x[ref], tree.y[ref], tree.z[ref]};
    AngularFrame f;
    if (!angular_frame(query + (b * M + m) * 3, normals + (b * M + m) * 3, reference, f)) return;
    if (n_kept <= kMaxRankWidth) {
      T d[kMaxRankWidth];
      int64_t i[kMaxRankWidth];
      double ox[kMaxRankWidth], oy[kMaxRankWidth], oz[kMaxRankWidth], angle[kMaxRankWidth];
      int32_t order[kMaxRankWidth];
      order_ring(f, tree, drow, irow, n_kept, d, i, ox, oy, oz, angle, order);
    } else {
      thread_local LargeRingScratch<T> s;
      s.resize(n_kept);
      order_ring(f, tree, drow, irow, n_kept, s.d.data(), s.i.data(), s.ox.data(), s.oy.data(),
                 s.oz.data(), s.angle.data(), s.order.data());
    }
  }
};

}  // namespace

std::tuple<at::Tensor, at::Tensor> ring_query_cpu(const at::Tensor& query,
                                                  const at::Tensor& points,
                                                  const at::Tensor& normals_in,
                                                  const at::Tensor& query_lengths,
                                                  const at::Tensor& lengths, double r_inner,
                                                  double r_outer, int64_t k) {
  check_ring_query_inputs(query, points, normals_in, query_lengths, lengths, r_inner, r_outer,
                          k);
  const at::Tensor normals = normals_in.contiguous();
  const at::Tensor pts = points.contiguous();
  const at::Tensor qry = query.contiguous();
  return AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "ring_query_cpu", [&] {
    const scalar_t ri = static_cast<scalar_t>(r_inner), ro = static_cast<scalar_t>(r_outer);
    const AngularOrder<scalar_t> by_angle{qry.data_ptr<scalar_t>(),
                                          normals.data_ptr<scalar_t>(), query.size(1)};
    return bounded_neighbor_search<scalar_t>(qry, pts, query_lengths, lengths, k, ri * ri,
                                             ro * ro, by_angle);
  });
}

}  // namespace pcseg

TORCH_LIBRARY_IMPL(pcseg, CPU, m) { m.impl("ring_query", &pcseg::ring_query_cpu); }
