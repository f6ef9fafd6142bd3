// Deterministic scatter-add on the GPU: the backward passes of gather_rows and
// three_interpolate sum many entries into shared rows. Instead of atomicAdd (whose float sum
// order changes from run to run), the entries are grouped by target row with a stable sort, and
// one thread per (row, channel) adds its row's entries in ascending entry order. That is the
// order of the CPU kernels' loops, so the gradients equal theirs bit for bit, run after run.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>

#include <tuple>

namespace pcseg {

// The entries of each target row, in ascending entry order.
struct RowSegments {
  at::Tensor entries;  // (E_total,) int64: flat entry ids (b * E + e), grouped by target row
  at::Tensor offsets;  // (B * num_rows + 1,) int64: row r owns entries[offsets[r]:offsets[r+1]]
};

// target (B, E) int64 in [-1, num_rows): entry (b, e) adds into row (b, target[b, e]); -1 adds
// nowhere. Needs B * num_rows > 0.
inline RowSegments row_segments(const at::Tensor& target, int64_t num_rows) {
  const int64_t B = target.size(0);
  const at::Tensor batch_base = at::arange(B, target.options()).mul_(num_rows).unsqueeze(1);
  // -1 entries get the key B * num_rows, past every row, so they sort last and belong to none.
  const at::Tensor keys =
      target.add(batch_base).masked_fill_(target.lt(0), B * num_rows).reshape({-1});
  // Stable: entries of one row keep their ascending order.
  const auto sorted = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor row_ids = at::arange(B * num_rows + 1, target.options());
  return {std::get<1>(sorted), at::searchsorted(std::get<0>(sorted), row_ids)};
}

}  // namespace pcseg
