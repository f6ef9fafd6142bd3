// The argument checks of the neighbour searches (knn, ball_query, ring_query), shared by their
// CPU and CUDA entry points so that both raise the same messages.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/checks.h"

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
  TORCH_CHECK(query.size(0) == points.size(0),
              "query and points must have the same batch size, got ", query.size(0), " and ",
              points.size(0));
  TORCH_CHECK(k >= 1, "k must be >= 1, got ", k);
  check_lengths(query_lengths, "query_lengths", query.size(0), query.size(1), query, "query");
  check_lengths(lengths, "lengths", points.size(0), points.size(1), points, "points");
  check_finite_coordinates(query, "query");
  check_finite_coordinates(points, "points");
}

}  // namespace pcseg
