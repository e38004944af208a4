// Shared helpers for the fastrl C++ core: thread-count resolution, bounded
// max-heaps for k-nearest-neighbour selection, aligned buffers, relaxed
// atomic access to plain arrays and a spin-wait pause.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <utility>
#include <vector>
#ifdef FASTRL_OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fastrl {

// n_jobs follows the scikit-learn convention: None/0 -> all cores, -1 -> all
// cores, -2 -> all but one, positive -> that many.
inline int resolve_threads(int n_jobs) {
#ifdef FASTRL_OPENMP
  int avail = omp_get_max_threads();
#else
  int avail = 1;
#endif
  if (n_jobs == 0 || n_jobs == -1) return avail;
  if (n_jobs < 0) return std::max(1, avail + 1 + n_jobs);
  return n_jobs;
}

inline int max_threads() { return resolve_threads(-1); }

// SplitMix64 finaliser: a well-mixed 64-bit hash, the source of every
// hashed random choice (NN-descent's sampling, the RP forest's splits).
inline uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Replaces the root of a max-heap of k (distance, id[, flag]) slots by
// (dist, idx, flag) and sifts it down. flags may be null.
template <typename Id>
inline void heap_replace_top(float* d, Id* ids, uint8_t* flags, int k, float dist, Id idx, uint8_t flag = 0) {
  int pos = 0;
  for (;;) {
    int l = 2 * pos + 1, r = l + 1, big = pos;
    float bd = dist;
    if (l < k && d[l] > bd) { big = l; bd = d[l]; }
    if (r < k && d[r] > bd) { big = r; bd = d[r]; }
    if (big == pos) break;
    d[pos] = d[big]; ids[pos] = ids[big];
    if (flags) flags[pos] = flags[big];
    pos = big;
  }
  d[pos] = dist; ids[pos] = idx;
  if (flags) flags[pos] = flag;
}

// A max-heap of (distance, index) pairs of fixed capacity k kept in two flat
// arrays; the root holds the current k-th smallest distance, the admission
// threshold for new candidates.
struct HeapView {
  float* d;
  int64_t* i;
  int k;

  inline float top() const { return d[0]; }

  // Replace the root by (dist, idx) and restore the heap property.
  inline void replace_top(float dist, int64_t idx) { heap_replace_top<int64_t>(d, i, nullptr, k, dist, idx); }

  // Admit (dist, idx) if it beats the current k-th distance.
  inline bool push(float dist, int64_t idx) {
    if (!(dist < d[0])) return false;
    replace_top(dist, idx);
    return true;
  }

  // Like push, but refuses an index already present (NN-descent candidates
  // arrive repeatedly). Linear scan: k is small.
  inline bool push_unique(float dist, int64_t idx) {
    if (!(dist < d[0])) return false;
    for (int j = 0; j < k; ++j) if (i[j] == idx) return false;
    replace_top(dist, idx);
    return true;
  }

  inline void fill_empty() {
    std::fill(d, d + k, std::numeric_limits<float>::infinity());
    std::fill(i, i + k, int64_t(-1));
  }

  // Sort ascending by (distance, index) in place.
  inline void sort_ascending() {
    std::vector<std::pair<float, int64_t>> tmp(k);
    for (int j = 0; j < k; ++j) tmp[j] = {d[j], i[j]};
    std::sort(tmp.begin(), tmp.end());
    for (int j = 0; j < k; ++j) { d[j] = tmp[j].first; i[j] = tmp[j].second; }
  }
};

// Relaxed atomic load / store of a plain array element (what C++20's
// std::atomic_ref does): for data that one phase of a kernel reads without a
// lock while other threads write it under one. Plain accesses elsewhere are
// fine when no other thread touches the element at the same time. On x86 and
// ARM these are ordinary moves; ThreadSanitizer sees them as atomic.
template <typename T>
inline T load_relaxed(const T* p) {
  T v;
  __atomic_load(p, &v, __ATOMIC_RELAXED);
  return v;
}
template <typename T>
inline void store_relaxed(T* p, T v) {
  __atomic_store(p, &v, __ATOMIC_RELAXED);
}

// One step of a spin-wait loop: PAUSE on x86 (frees the core's resources for
// the sibling hyper-thread and avoids the memory-order flush when the wait
// ends), YIELD on ARM, nothing elsewhere.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield");
#endif
}

struct AlignedFree { void operator()(float* p) const { std::free(p); } };
using AlignedFloats = std::unique_ptr<float[], AlignedFree>;

inline AlignedFloats aligned_floats(size_t n) {
  size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
  if (bytes == 0) bytes = 64;
  return AlignedFloats(static_cast<float*>(std::aligned_alloc(64, bytes)));
}

}  // namespace fastrl
