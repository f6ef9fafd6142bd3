// The k best (distance, index) candidates of one query during the CPU neighbour search
// (common/neighbor_search.h): SortedBest for small k, HeapBest for any k. Both order
// candidates by distance, then by the lower index (the tie rule of a stable sort).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace pcseg {

constexpr int kSortedMaxK = 64;  // k up to this: sorted array; beyond: binary heap

// A candidate (d, original index) as one sort key, ordered by d then index: the tie rule.
// For float, d >= 0 (or +inf), whose IEEE bits order like the values, so the pair packs into
// one uint64 (bits of d above the index) and compares in one instruction.
template <typename T>
struct CandidateKey {
  struct type {
    T d;
    int32_t i;
    bool operator<(const type& o) const { return d < o.d || (d == o.d && i < o.i); }
  };
  static type make(T d, int32_t i) { return {d, i}; }
  static type lowest() {
    return {-std::numeric_limits<T>::infinity(), std::numeric_limits<int32_t>::min()};
  }
  static T dist(const type& key) { return key.d; }
  static int32_t index(const type& key) { return key.i; }
};
template <>
struct CandidateKey<float> {
  using type = uint64_t;
  static type make(float d, int32_t i) {
    uint32_t bits;
    std::memcpy(&bits, &d, sizeof bits);
    return (uint64_t(bits) << 32) | uint32_t(i);
  }
  static type lowest() { return 0; }  // (+0, index 0): no key is smaller
  static float dist(type key) {
    const uint32_t bits = static_cast<uint32_t>(key >> 32);
    float d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }
  static int32_t index(type key) { return static_cast<int32_t>(static_cast<uint32_t>(key)); }
};

// Writes one output row of k slots from n ascending keys (then -1 / +inf); returns n.
template <typename T>
int64_t write_row(const typename CandidateKey<T>::type* keys, int64_t n, int64_t k, T* drow,
                  int64_t* irow) {
  for (int64_t j = 0; j < n; ++j) {
    drow[j] = CandidateKey<T>::dist(keys[j]);
    irow[j] = CandidateKey<T>::index(keys[j]);
  }
  std::fill(drow + n, drow + k, std::numeric_limits<T>::infinity());
  std::fill(irow + n, irow + k, int64_t(-1));
  return n;
}

// The k best candidates so far, ascending, for k <= kSortedMaxK. Every offered candidate
// must satisfy d <= bound; bound is the window's inclusive upper end until k are held, then
// the k-th best distance (an equal distance may still win on its lower index).
template <typename T>
struct SortedBest {
  using Key = CandidateKey<T>;
  typename Key::type slots[kSortedMaxK + 1];
  typename Key::type* const a = slots + 1;  // a[-1]: a sentinel no key precedes
  int n = 0, k = 0;
  T bound = 0;

  SortedBest() { slots[0] = Key::lowest(); }
  SortedBest(const SortedBest&) = delete;
  SortedBest& operator=(const SortedBest&) = delete;

  void reset(int64_t k_, T lim) {
    k = static_cast<int>(k_);
    n = 0;
    bound = lim;
  }
  inline void offer(T dv, int32_t iv) {
    const auto key = Key::make(dv, iv);
    int pos;
    if (n < k) {
      pos = n++;
    } else {
      if (!(key < a[k - 1])) return;
      pos = k - 1;
    }
    while (key < a[pos - 1]) {
      a[pos] = a[pos - 1];
      --pos;
    }
    a[pos] = key;
    if (n == k) bound = Key::dist(a[k - 1]);
  }
  bool full() const { return n == k; }
  // Continues from o's candidates (fewer than k) with the inclusive bound lim.
  void resume(const SortedBest& o, T lim) {
    k = o.k;
    n = o.n;
    std::copy(o.a, o.a + o.n, a);
    bound = lim;
  }
  // Writes the k slots of one output row (ascending, then -1 / +inf); returns the count.
  int64_t emit(T* drow, int64_t* irow) const { return write_row<T>(a, n, k, drow, irow); }
};

// The same for any k: a max-heap of keys, sorted at the end.
template <typename T>
struct HeapBest {
  using Key = CandidateKey<T>;
  std::vector<typename Key::type> items;
  int64_t k = 0;
  T bound = 0;

  void reset(int64_t k_, T lim) {
    k = k_;
    items.clear();
    bound = lim;
  }
  inline void offer(T dv, int32_t iv) {
    const auto key = Key::make(dv, iv);
    if (static_cast<int64_t>(items.size()) < k) {
      items.push_back(key);
      std::push_heap(items.begin(), items.end());
    } else if (key < items.front()) {
      std::pop_heap(items.begin(), items.end());
      items.back() = key;
      std::push_heap(items.begin(), items.end());
    } else {
      return;
    }
    if (static_cast<int64_t>(items.size()) == k) bound = Key::dist(items.front());
  }
  bool full() const { return static_cast<int64_t>(items.size()) == k; }
  void resume(const HeapBest& o, T lim) {
    k = o.k;
    items = o.items;
    bound = lim;
  }
  int64_t emit(T* drow, int64_t* irow) {
    std::sort_heap(items.begin(), items.end());
    return write_row<T>(items.data(), static_cast<int64_t>(items.size()), k, drow, irow);
  }
};

}  // namespace pcseg
