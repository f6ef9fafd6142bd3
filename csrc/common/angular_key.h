// The angular key that orders ring_query's neighbours, shared by the CPU kernel and the CUDA
// window search (host + device). Every operation is spelled out in float64 in the same order
// as ring_query_naive, so the keys, and therefore the order, are identical to the reference.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/host_device.h"

namespace pcseg {

// A monotone stand-in for atan2(c, a) mapped to [0, 4): cheaper than atan2 and exact to
// compare, which is all an ordering needs. Quadrant by quadrant it is c / (a + c),
// 1 + (-a) / (-a + c), 2 + (-c) / (-a - c) and 3 + a / (a - c); every denominator is exactly
// |a| + |c| and every numerator |c| or |a|, so it is written without branches (the signs of
// a and c are as good as random, and a mispredicted branch costs more than the division).
PCSEG_HOST_DEVICE inline double pseudo_angle(double a, double c) {
  const bool c_up = c >= 0.0, a_right = a >= 0.0;
  const double abs_a = fabs(a), abs_c = fabs(c);
  const double num = c_up == a_right ? abs_c : abs_a;
  const double den = abs_a + abs_c;
  const double quadrant = c_up ? (a_right ? 0.0 : 1.0) : (a_right ? 3.0 : 2.0);
  // Divides unconditionally (by 1 at the centre itself) and selects without short-circuits,
  // so that the compiler may turn the selects into masks and vectorise a loop of keys.
  const double angle = quadrant + num / (den > 0.0 ? den : 1.0);
  return den > 0.0 ? angle : 0.0;
}

// The tangent frame of one ring: u along the reference (the farthest kept neighbour)
// projected on the tangent plane, w = normal x u, and the reference's offset v from the centre.
struct AngularFrame {
  double q0, q1, q2;  // the centre
  double u0, u1, u2, w0, w1, w2;
  double v0, v1, v2;
};

// Builds the frame of the centre q with normal `normal` whose reference point is r. Returns
// false when there is none (zero normal, or the reference on the normal axis); the ring then
// keeps its distance order.
template <typename T>
PCSEG_HOST_DEVICE inline bool angular_frame(const T* q, const T* normal, const T* r,
                                            AngularFrame& f) {
  const double n0 = normal[0], n1 = normal[1], n2 = normal[2];
  const double nn = n0 * n0 + n1 * n1 + n2 * n2;
  if (!(nn > 0.0)) return false;
  const double inv = sqrt(nn);
  const double h0 = n0 / inv, h1 = n1 / inv, h2 = n2 / inv;
  f.q0 = q[0];
  f.q1 = q[1];
  f.q2 = q[2];
  f.v0 = double(r[0]) - f.q0;
  f.v1 = double(r[1]) - f.q1;
  f.v2 = double(r[2]) - f.q2;
  const double s = f.v0 * h0 + f.v1 * h1 + f.v2 * h2;
  const double t0 = f.v0 - s * h0, t1 = f.v1 - s * h1, t2 = f.v2 - s * h2;
  const double tt = t0 * t0 + t1 * t1 + t2 * t2;
  if (!(tt > 0.0)) return false;
  const double tl = sqrt(tt);
  f.u0 = t0 / tl;
  f.u1 = t1 / tl;
  f.u2 = t2 / tl;
  f.w0 = h1 * f.u2 - h2 * f.u1;
  f.w1 = h2 * f.u0 - h0 * f.u2;
  f.w2 = h0 * f.u1 - h1 * f.u0;
  return true;
}

// The key of a neighbour at offset (a0, a1, a2) = p - q (in float64) from the centre.
PCSEG_HOST_DEVICE inline double angular_key(const AngularFrame& f, double a0, double a1,
                                            double a2) {
  const double a = a0 * f.u0 + a1 * f.u1 + a2 * f.u2;
  const double c = a0 * f.w0 + a1 * f.w1 + a2 * f.w2;
  // A duplicate of the reference point is the reference direction: angle 0 exactly, not
  // whatever rounding makes of its (mathematically zero) c, which could put it at ~4.
  const bool on_reference = (a0 == f.v0) & (a1 == f.v1) & (a2 == f.v2);
  return on_reference ? 0.0 : pseudo_angle(a, c);
}

// Fills key[j] for the n kept neighbours (ascending by distance, so item n-1 is the farthest,
// the reference at angle 0). Returns false when there is no tangent frame.
template <typename T, typename Item>
PCSEG_HOST_DEVICE inline bool angular_keys(const T* q, const T* normal, const T* cloud,
                                           const Item* items, int64_t n, double* key) {
  AngularFrame f;
  if (!angular_frame(q, normal, cloud + 3 * items[n - 1].i, f)) return false;
  for (int64_t j = 0; j < n; ++j) {
    const T* p = cloud + 3 * items[j].i;
    key[j] = angular_key(f, double(p[0]) - f.q0, double(p[1]) - f.q1, double(p[2]) - f.q2);
  }
  return true;
}

}  // namespace pcseg
