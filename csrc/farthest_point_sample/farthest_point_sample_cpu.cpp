// Exact FPS that skips work instead of approximating it (the idea of QuickFPS and fpsample's
// bucket variants): points live in kd-tree leaves, and every tree node keeps the largest
// nearest-sample distance of the points below it. When a new sample's distance to a node's
// box is at least that maximum, no point inside can move closer, so the whole subtree is
// skipped. The root then holds the next sample. Results equal the brute force bit for bit
// (see common/kdtree.h for why the box bound is safe in floating point).
#include "farthest_point_sample/farthest_point_sample.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/full.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "common/kdtree.h"

namespace pcseg {
namespace {

constexpr int kFpsLeafSize = 32;

template <typename T>
struct FpsState {
  const KdTree<T>& tree;
  std::vector<T> min_d2;         // per tree-order point: squared distance to nearest sample
  std::vector<T> node_max;       // per node: max of min_d2 below it
  std::vector<int64_t> node_arg; // per node: original index of that max (lowest on ties)

  explicit FpsState(const KdTree<T>& t)
      : tree(t),
        min_d2(t.x.size(), std::numeric_limits<T>::infinity()),
        node_max(t.nodes.size(), std::numeric_limits<T>::infinity()),
        node_arg(t.nodes.size(), 0) {}

  void update(int32_t id, T sx, T sy, T sz) {
    const auto& nd = tree.nodes[id];
    if (tree.box_dist2(nd, sx, sy, sz) >= node_max[id]) return;
    if (nd.left < 0) {
      const T* xs = tree.x.data();
      const T* ys = tree.y.data();
      const T* zs = tree.z.data();
      T* md = min_d2.data();
      const int32_t b = nd.begin, e = nd.end;
#pragma omp simd
      for (int32_t j = b; j < e; ++j) {
        const T dx = xs[j] - sx, dy = ys[j] - sy, dz = zs[j] - sz;
        const T d = dx * dx + dy * dy + dz * dz;
        md[j] = d < md[j] ? d : md[j];
      }
      T best = -std::numeric_limits<T>::infinity();
      int64_t arg = std::numeric_limits<int64_t>::max();
      for (int32_t j = b; j < e; ++j) {
        const int64_t oi = tree.index[j];
        if (md[j] > best || (md[j] == best && oi < arg)) {
          best = md[j];
          arg = oi;
        }
      }
      node_max[id] = best;
      node_arg[id] = arg;
      return;
    }
    update(nd.left, sx, sy, sz);
    update(nd.right, sx, sy, sz);
    const T ml = node_max[nd.left], mr = node_max[nd.right];
    const int64_t al = node_arg[nd.left], ar = node_arg[nd.right];
    const bool take_left = ml > mr || (ml == mr && al < ar);
    node_max[id] = take_left ? ml : mr;
    node_arg[id] = take_left ? al : ar;
  }
};

template <typename T>
void fps_one_cloud(const T* pts, int64_t n, int64_t num_samples, int64_t start,
                   int64_t* out) {
  const int64_t m = std::min(num_samples, n);
  if (m == 0) return;
  const KdTree<T> tree(pts, n, kFpsLeafSize);
  FpsState<T> state(tree);
  int64_t cur = start;
  for (int64_t i = 0; i < m; ++i) {
    out[i] = cur;
    const T* s = pts + 3 * cur;
    state.update(0, s[0], s[1], s[2]);
    cur = state.node_arg[0];
  }
}

}  // namespace

at::Tensor farthest_point_sample_cpu(const at::Tensor& points_in, const at::Tensor& lengths_in,
                                     int64_t num_samples, const at::Tensor& start_in) {
  check_farthest_point_sample_inputs(points_in, lengths_in, num_samples, start_in);
  const int64_t B = points_in.size(0), N = points_in.size(1);
  const at::Tensor points = points_in.contiguous();
  const at::Tensor lengths = lengths_in.contiguous();
  const at::Tensor start = start_in.contiguous();
  const int64_t* len = lengths.data_ptr<int64_t>();
  const int64_t* st = start.data_ptr<int64_t>();
  auto idx = at::full({B, num_samples}, -1, points.options().dtype(at::kLong));
  int64_t* out = idx.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "farthest_point_sample_cpu", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        fps_one_cloud(p + b * N * 3, len[b], num_samples, st[b], out + b * num_samples);
    });
  });
  return idx;
}

}  // namespace pcseg

TORCH_LIBRARY_IMPL(pcseg, CPU, m) {
  m.impl("farthest_point_sample", &pcseg::farthest_point_sample_cpu);
}
