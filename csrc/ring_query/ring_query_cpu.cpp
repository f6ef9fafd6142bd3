#include "ring_query/ring_query.h"

#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/checks.h"
#include "common/neighbor_search.h"
#include "ring_query/angular_order.h"

namespace pcseg {
namespace {

// (angle, position in distance order): sorting these is a stable sort by angle.
struct AngleKey {
  double angle;
  int32_t j;
  bool operator<(const AngleKey& o) const { return angle < o.angle || (angle == o.angle && j < o.j); }
};

constexpr int64_t kSmall = 64;  // rings up to this size are bucket-sorted

// Per-thread buffers of one ring, grown as needed and kept between rings.
template <typename T>
struct RingScratch {
  std::vector<Neighbor<T>> items;
  std::vector<double> ox, oy, oz, angle;
  std::vector<AngleKey> key;
  void resize(int64_t n) {
    if (static_cast<int64_t>(items.size()) >= n) return;
    const int64_t cap = std::max<int64_t>(n, kSmall);
    items.resize(cap);
    ox.resize(cap);
    oy.resize(cap);
    oz.resize(cap);
    angle.resize(cap);
    key.resize(cap);
  }
};

}  // namespace

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
  check_finite_coordinates(normals_in, "normals");
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
        [&](int64_t b, int64_t m, scalar_t* drow, int64_t* irow, int64_t n_kept) {
          if (n_kept < 2) return;
          const scalar_t* base = p + b * N * 3;
          AngularFrame f;
          if (!angular_frame(q + (b * M + m) * 3, nrm + (b * M + m) * 3,
                             base + 3 * irow[n_kept - 1], f))
            return;
          thread_local RingScratch<scalar_t> scratch;
          scratch.resize(n_kept);
          Neighbor<scalar_t>* items = scratch.items.data();
          double* ox = scratch.ox.data();
          double* oy = scratch.oy.data();
          double* oz = scratch.oz.data();
          double* angle = scratch.angle.data();
          AngleKey* key = scratch.key.data();
          // Offsets gathered first, so that the keys are one branch-free loop the compiler
          // vectorises (the arithmetic of angular_keys, which the CUDA kernel runs).
          for (int64_t j = 0; j < n_kept; ++j) {
            items[j] = {drow[j], irow[j]};
            const scalar_t* pj = base + 3 * irow[j];
            ox[j] = double(pj[0]) - f.q0;
            oy[j] = double(pj[1]) - f.q1;
            oz[j] = double(pj[2]) - f.q2;
          }
          for (int64_t j = 0; j < n_kept; ++j) angle[j] = angular_key(f, ox[j], oy[j], oz[j]);
          const bool small = n_kept <= kSmall;
          // A stable sort by angle: ties keep the distance order (the position j).
          if (small) {
            // Angles lie in [0, 4]: a counting sort into 64 buckets (monotone in the angle,
            // stable), then an insertion sort that only has to fix each bucket's order.
            constexpr int kBuckets = 64;
            uint8_t count[kBuckets + 1] = {};
            uint8_t bucket[kSmall];
            for (int64_t j = 0; j < n_kept; ++j) {
              bucket[j] = static_cast<uint8_t>(
                  std::min(static_cast<int>(angle[j] * (kBuckets / 4)), kBuckets - 1));
              ++count[bucket[j] + 1];
            }
            for (int c = 0; c < kBuckets; ++c) count[c + 1] += count[c];
            for (int64_t j = 0; j < n_kept; ++j)
              key[count[bucket[j]]++] = AngleKey{angle[j], static_cast<int32_t>(j)};
            for (int64_t j = 1; j < n_kept; ++j) {
              const AngleKey kj = key[j];
              int64_t t = j;
              while (t > 0 && kj < key[t - 1]) {
                key[t] = key[t - 1];
                --t;
              }
              key[t] = kj;
            }
          } else {
            for (int64_t j = 0; j < n_kept; ++j)
              key[j] = AngleKey{angle[j], static_cast<int32_t>(j)};
            std::sort(key, key + n_kept);
          }
          for (int64_t j = 0; j < n_kept; ++j) {
            drow[j] = items[key[j].j].d;
            irow[j] = items[key[j].j].i;
          }
        });
  });
}

}  // namespace pcseg

TORCH_LIBRARY_IMPL(pcseg, CPU, m) { m.impl("ring_query", &pcseg::ring_query_cpu); }
