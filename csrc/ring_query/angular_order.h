// The angular key of ring_query, shared by the CPU and CUDA kernels (host + device).
// Every operation is spelled out in float64 in the same order as ring_query_naive, so the
// keys, and therefore the order, are identical to the reference.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define PCSEG_HOST_DEVICE __host__ __device__
#else
#define PCSEG_HOST_DEVICE
#endif

namespace pcseg {

// A monotone stand-in for atan2(c, a) mapped to [0, 4): cheaper than atan2 and exact to
// compare, which is all an ordering needs.
PCSEG_HOST_DEVICE inline double pseudo_angle(double a, double c) {
  if (a == 0.0 && c == 0.0) return 0.0;
  if (c >= 0.0) return a >= 0.0 ? c / (a + c) : 1.0 + (-a) / (-a + c);
  return a < 0.0 ? 2.0 + (-c) / (-a - c) : 3.0 + a / (a - c);
}

// Fills key[j] for the n kept neighbours (ascending by distance, so item n-1 is the farthest,
// the reference at angle 0). Returns false when no tangent frame exists (zero normal, or the
// reference on the normal axis); the ring then keeps its distance order.
template <typename T, typename Item>
PCSEG_HOST_DEVICE inline bool angular_keys(const T* q, const T* normal, const T* cloud,
                                           const Item* items, int64_t n, double* key) {
  const double n0 = normal[0], n1 = normal[1], n2 = normal[2];
  const double nn = n0 * n0 + n1 * n1 + n2 * n2;
  if (!(nn > 0.0)) return false;
  const double inv = sqrt(nn);
  const double h0 = n0 / inv, h1 = n1 / inv, h2 = n2 / inv;
  const double q0 = q[0], q1 = q[1], q2 = q[2];
  const T* r = cloud + 3 * items[n - 1].i;
  const double v0 = double(r[0]) - q0, v1 = double(r[1]) - q1, v2 = double(r[2]) - q2;
  const double s = v0 * h0 + v1 * h1 + v2 * h2;
  const double t0 = v0 - s * h0, t1 = v1 - s * h1, t2 = v2 - s * h2;
  const double tt = t0 * t0 + t1 * t1 + t2 * t2;
  if (!(tt > 0.0)) return false;
  const double tl = sqrt(tt);
  const double u0 = t0 / tl, u1 = t1 / tl, u2 = t2 / tl;
  const double w0 = h1 * u2 - h2 * u1, w1 = h2 * u0 - h0 * u2, w2 = h0 * u1 - h1 * u0;
  for (int64_t j = 0; j < n; ++j) {
    const T* p = cloud + 3 * items[j].i;
    const double a0 = double(p[0]) - q0, a1 = double(p[1]) - q1, a2 = double(p[2]) - q2;
    const double a = a0 * u0 + a1 * u1 + a2 * u2;
    const double c = a0 * w0 + a1 * w1 + a2 * w2;
    key[j] = pseudo_angle(a, c);
  }
  key[n - 1] = 0.0;  // the reference itself, whatever rounding says of its c component
  return true;
}

}  // namespace pcseg
