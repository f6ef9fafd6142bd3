// Smallest-eigenvalue eigenvector of a symmetric 3x3 matrix by cyclic Jacobi rotations:
// a handful of sweeps reach float64 precision, with no special cases for repeated
// eigenvalues. Shared by the CPU and CUDA kernels.
#pragma once
#include <cmath>

#include "common/host_device.h"

namespace pcseg {

// a: row-major symmetric 3x3 (destroyed). Writes the unit eigenvector of the smallest
// eigenvalue into out.
PCSEG_HOST_DEVICE inline void smallest_eigenvector(double a[9], double out[3]) {
  double v[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  for (int sweep = 0; sweep < 16; ++sweep) {
    const double off = a[1] * a[1] + a[2] * a[2] + a[5] * a[5];
    const double diag = a[0] * a[0] + a[4] * a[4] + a[8] * a[8];
    if (off <= 1e-30 * diag || off == 0.0) break;
    for (int p = 0; p < 2; ++p) {
      for (int q = p + 1; q < 3; ++q) {
        const double apq = a[3 * p + q];
        if (apq == 0.0) continue;
        const double theta = (a[3 * q + q] - a[3 * p + p]) / (2.0 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
        const double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
        for (int r = 0; r < 3; ++r) {  // A <- A J
          const double arp = a[3 * r + p], arq = a[3 * r + q];
          a[3 * r + p] = c * arp - s * arq;
          a[3 * r + q] = s * arp + c * arq;
        }
        for (int r = 0; r < 3; ++r) {  // A <- J^T A
          const double apr = a[3 * p + r], aqr = a[3 * q + r];
          a[3 * p + r] = c * apr - s * aqr;
          a[3 * q + r] = s * apr + c * aqr;
        }
        for (int r = 0; r < 3; ++r) {  // V <- V J
          const double vrp = v[3 * r + p], vrq = v[3 * r + q];
          v[3 * r + p] = c * vrp - s * vrq;
          v[3 * r + q] = s * vrp + c * vrq;
        }
      }
    }
  }
  int best = 0;
  if (a[4] < a[3 * best + best]) best = 1;
  if (a[8] < a[3 * best + best]) best = 2;
  const double x = v[best], y = v[3 + best], z = v[6 + best];
  const double len = sqrt(x * x + y * y + z * z);
  out[0] = x / len;
  out[1] = y / len;
  out[2] = z / len;
}

}  // namespace pcseg
