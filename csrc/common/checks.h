// Argument checks shared by every op: each message names the argument and the expected shape,
// so bad input from Python surfaces as a readable RuntimeError instead of a crash.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/isfinite.h>

#include <algorithm>

namespace pcseg {

inline void check_points(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 3 && t.size(2) == 3, name, " must be (B, N, 3), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                              const char* b_name) {
  TORCH_CHECK(a.device() == b.device(), a_name, " is on ", a.device(), " but ", b_name, " is on ",
              b.device());
}

inline void check_same_dtype(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                             const char* b_name) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), a_name, " is ", a.scalar_type(), " but ", b_name,
              " is ", b.scalar_type());
}

// lengths (B,) int64 with 0 <= lengths[b] <= max_len; checked on the host because every
// kernel indexes with it.
inline void check_lengths(const at::Tensor& lengths, const char* name, int64_t batch,
                          int64_t max_len, const at::Tensor& like, const char* like_name) {
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == batch, name, " must be (B,) with B = ",
              batch, " (the batch size of ", like_name, "), got ", lengths.sizes());
  TORCH_CHECK(lengths.scalar_type() == at::kLong, name, " must be int64, got ",
              lengths.scalar_type());
  check_same_device(lengths, name, like, like_name);
  if (batch > 0) {
    const auto lo = lengths.min().item<int64_t>();
    const auto hi = lengths.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi <= max_len, name, " must lie in [0, ", max_len,
                "] (the padded size of ", like_name, "), got values in [", lo, ", ", hi, "]");
  }
}

// NaN/Inf in coordinates would make every comparison false and silently corrupt the result;
// the whole padded tensor is checked, so padding must be finite too (pad with zeros).
inline void check_finite(const at::Tensor& t, const char* name) {
  if (t.numel() == 0) return;
  TORCH_CHECK(at::isfinite(t).all().item<bool>(), name,
              " contains NaN or Inf; pcseg point ops need finite coordinates (pad with zeros)");
}

inline void check_index(const at::Tensor& idx, const char* name) {
  TORCH_CHECK(idx.scalar_type() == at::kLong, name, " must be int64, got ", idx.scalar_type());
}

// lo and hi, the smallest and largest values of an index tensor, lie in [-1, num_rows).
inline void check_index_bounds(int64_t lo, int64_t hi, int64_t num_rows) {
  TORCH_CHECK(lo >= -1 && hi < num_rows, "idx values must lie in [-1, ", num_rows,
              "), got values in [", lo, ", ", hi, "]");
}

// idx (int64) values in [-1, num_rows): -1 marks a missing neighbour. A contiguous CPU
// tensor is scanned once on this thread (cheaper than two parallel reductions for the
// (B, n, k) indices of these ops); elsewhere min and max run on the tensor's device.
inline void check_index_range(const at::Tensor& idx, int64_t num_rows) {
  if (idx.numel() == 0) return;
  int64_t lo, hi;
  if (idx.is_cpu() && idx.is_contiguous()) {
    const int64_t* v = idx.data_ptr<int64_t>();
    lo = hi = v[0];
    for (int64_t i = 1; i < idx.numel(); ++i) {
      lo = std::min(lo, v[i]);
      hi = std::max(hi, v[i]);
    }
  } else {
    lo = idx.min().item<int64_t>();
    hi = idx.max().item<int64_t>();
  }
  check_index_bounds(lo, hi, num_rows);
}

}  // namespace pcseg
