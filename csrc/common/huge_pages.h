// advise_huge_pages: a hint for large CPU outputs that are about to be written once.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pcseg {

// A fresh output of many MB is otherwise first touched one 4 KiB page fault at a time, which
// for large k can cost as much as the search itself: ask for transparent huge pages (where
// the kernel leaves that to madvise). Only a hint; the tensor's memory and contents are unaffected.
inline void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kPage = 4096;
  const size_t bytes = t.numel() * t.element_size();
  if (bytes < (size_t(4) << 20)) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(t.data_ptr()) + kPage - 1) & ~(kPage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(t.data_ptr()) + bytes) & ~(kPage - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

}  // namespace pcseg
