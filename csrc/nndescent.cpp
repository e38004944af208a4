// NN-descent (Dong, Moses & Li 2011) started from a random-projection forest,
// as in pynndescent.
//
//   init:  every point offers its leaf-mates in n_trees RP trees to its heap
//   loop:  for each v, sample up to max_candidates "new" (unexplored) and "old"
//          neighbours, forward and reverse; the local join offers every pair
//          (a, b) in new x (new + old) to both heaps; stop when fewer than
//          delta * n * k heap updates happen in an iteration.
//
// Distances are squared Euclidean on the prepared rows (unit rows for cosine),
// which ranks exactly like the requested metric; the output converts them to
// the metric's distance (recomputed in float64 where the Gram expansion could
// be inaccurate). During the join a point's heap is written under a spinlock
// (striped: StripedLocks) and read without one only through relaxed atomics: its
// root distance (the admission threshold) and its ids (the already-listed
// check); Graph::push stores those with relaxed atomic stores.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "cpu_features.h"
#include "knn.h"
#include "rp_forest.h"
#include "simd_dist.h"

namespace fastrl {
namespace {

// Graph ids are 32-bit: half the memory traffic of the random heap and
// candidate-list accesses that dominate NN-descent (n < 2^31 is checked).
using node_t = int32_t;

// Squared distances among the points ids[0:m]: out[a * mpad + b] for a < rows
// and a < b < m (the other entries are scratch), mpad >= gram_stride(m).
// GEMM-style micro-kernel: the m candidates are packed once into panels of 8
// (pack[(b / 8) * 8 * d + t * 8 + b % 8] = x_b[t], zero past m), then each
// 4-row x 16-column tile runs one pass over t of 2 panel loads, 4 broadcasts
// and 8 FMAs into 8-wide accumulators that stay in registers: no horizontal
// sums and no tail loop over d (the packing is O(m d), the tiles O(rows m d)).
//   |x_a - x_b|^2 = |x_a|^2 + |x_b|^2 - 2 <x_a, x_b>      (norms precomputed)
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));

// Row stride of gram's output for m points (room for a full last tile).
inline int gram_stride(int m) { return ((m + 7) & ~7) + 8; }

struct GramScratch {
  std::vector<float> pack, norms;
};

__attribute__((always_inline)) inline void gram_body(const float* X, int64_t d, const node_t* ids, int m,
                                                     int rows, const float* gnorm, float* out, int mpad,
                                                     GramScratch& s) {
  constexpr int RA = 4;
  const int m8 = (m + 7) & ~7, npan = m8 / 8 + 1;  // one zero panel past the end: tiles of 2 panels
  s.pack.resize(size_t(npan) * 8 * d);
  s.norms.resize(size_t(npan) * 8);
  float* pack = s.pack.data();
  for (int b = 0; b < npan * 8; ++b) {
    float* pb = pack + size_t(b / 8) * 8 * d + b % 8;
    if (b < m) {
      const float* x = X + int64_t(ids[b]) * d;
      for (int64_t t = 0; t < d; ++t) pb[8 * t] = x[t];
      s.norms[b] = gnorm[ids[b]];
    } else {
      for (int64_t t = 0; t < d; ++t) pb[8 * t] = 0.f;
      s.norms[b] = 0.f;
    }
  }
  for (int a0 = 0; a0 < rows; a0 += RA) {
    const float* pa[RA];
    for (int i = 0; i < RA; ++i) pa[i] = X + int64_t(ids[std::min(a0 + i, rows - 1)]) * d;
    for (int b0 = a0 & ~7; b0 < m; b0 += 16) {
      const float* p0 = pack + size_t(b0) * d;
      const float* p1 = p0 + 8 * d;
      v8 acc[RA][2] = {};
      for (int64_t t = 0; t < d; ++t) {
        const v8 vb0 = *reinterpret_cast<const v8u*>(p0 + 8 * t);
        const v8 vb1 = *reinterpret_cast<const v8u*>(p1 + 8 * t);
        for (int i = 0; i < RA; ++i) {
          const v8 va = v8{} + pa[i][t];
          acc[i][0] += va * vb0;
          acc[i][1] += va * vb1;
        }
      }
      const v8 nb0 = *reinterpret_cast<const v8u*>(s.norms.data() + b0);
      const v8 nb1 = *reinterpret_cast<const v8u*>(s.norms.data() + b0 + 8);
      for (int i = 0; i < RA; ++i) {
        if (a0 + i >= rows) break;
        const v8 na = v8{} + gnorm[ids[a0 + i]];
        v8 r0 = na + nb0 - 2.f * acc[i][0], r1 = na + nb1 - 2.f * acc[i][1];
        r0 = r0 > 0.f ? r0 : v8{};
        r1 = r1 > 0.f ? r1 : v8{};
        float* o = out + size_t(a0 + i) * mpad + b0;
        *reinterpret_cast<v8u*>(o) = r0;
        *reinterpret_cast<v8u*>(o + 8) = r1;
      }
    }
  }
}

using GramFn = void (*)(const float*, int64_t, const node_t*, int, int, const float*, float*, int, GramScratch&);
#if defined(FASTRL_HAVE_AVX512)
__attribute__((target("avx512f,avx2,fma")))
void gram_avx512(const float* X, int64_t d, const node_t* ids, int m, int rows, const float* gn, float* out, int mpad,
                 GramScratch& s) {
  gram_body(X, d, ids, m, rows, gn, out, mpad, s);
}
#endif
#if defined(FASTRL_HAVE_AVX2)
__attribute__((target("avx2,fma")))
void gram_avx2(const float* X, int64_t d, const node_t* ids, int m, int rows, const float* gn, float* out, int mpad,
               GramScratch& s) {
  gram_body(X, d, ids, m, rows, gn, out, mpad, s);
}
#endif
void gram_base(const float* X, int64_t d, const node_t* ids, int m, int rows, const float* gn, float* out, int mpad,
               GramScratch& s) {
  gram_body(X, d, ids, m, rows, gn, out, mpad, s);
}

// The Gram kernel of CPU kernel `kernel`.
GramFn select_gram(CpuKernel kernel) {
  switch (kernel) {
#if defined(FASTRL_HAVE_AVX512)
    case CpuKernel::kAvx512: return gram_avx512;
#endif
#if defined(FASTRL_HAVE_AVX2)
    case CpuKernel::kAvx2: return gram_avx2;
#endif
    default: return gram_base;
  }
}

// Branch-free membership test: the compiler vectorises it (8-16 ids a step),
// which beats an early-exit scan on the ~90-entry rows.
inline bool contains(const node_t* ids, int n, node_t idx) {
  int found = 0;
  for (int j = 0; j < n; ++j) found |= ids[j] == idx;
  return found != 0;
}

// contains() on a heap row that other threads may be rewriting (under their
// lock), vectorised as contains() is. Most offers of the join end here (the edge is already
// listed), and the scalar loop of relaxed atomic loads this replaces was 40%
// of NN-descent's time. Each id is an aligned 32-bit word, written whole by
// store_relaxed, so a lane sees the old or the new id, never a torn one. A
// stale row only misleads the unlocked pre-check: a false "listed" skips an
// offer (as a stale threshold does, and pynndescent's unlocked reads), a false
// "absent" takes the lock, where push() checks again. The vector loads are a
// deliberate race, hidden from ThreadSanitizer
// (not inlined: the attribute applies to a whole function).
using ContainsFn = bool (*)(const node_t*, int, node_t);
__attribute__((no_sanitize("thread"), noinline)) bool contains_snapshot_base(const node_t* ids, int n, node_t idx) {
  return contains(ids, n, idx);
}
#if defined(FASTRL_HAVE_AVX2)
// 8 ids a compare instead of 4: the join's membership tests take a third less.
__attribute__((no_sanitize("thread"), noinline, target("avx2"))) bool contains_snapshot_avx2(const node_t* ids, int n,
                                                                                           node_t idx) {
  return contains(ids, n, idx);
}
#endif
ContainsFn select_contains(CpuKernel kernel) {
#if defined(FASTRL_HAVE_AVX2)
  if (kernel == CpuKernel::kAvx2 || kernel == CpuKernel::kAvx512) return contains_snapshot_avx2;
#endif
  (void)kernel;
  return contains_snapshot_base;
}

// Test-and-test-and-set spinlock on its own cache line: waiting threads spin
// on a plain load with a pause, and locks of different points never share a
// line (a lock per point packed 64 to a line made threads working on
// unrelated points fight over it).
struct alignas(64) SpinLock {
  std::atomic<uint8_t> f{0};
  void lock() {
    while (f.exchange(1, std::memory_order_acquire))
      while (f.load(std::memory_order_relaxed)) cpu_relax();
  }
  void unlock() { f.store(0, std::memory_order_release); }
};

// Striped heap locks: point v uses lock v & mask of a power-of-two table
// (>= 256 per thread, so two threads rarely want the same stripe; 64 bytes
// each instead of a cache line per point). A thread holds one lock at a time,
// so points sharing a stripe cannot deadlock.
class StripedLocks {
 public:
  StripedLocks(int64_t n, int threads) {
    int64_t s = 1024;
    while (s < 256 * int64_t(threads)) s *= 2;
    while (s > 1024 && s / 2 >= n) s /= 2;
    locks_ = std::vector<SpinLock>(size_t(s));
    mask_ = s - 1;
  }
  SpinLock& operator[](int64_t v) { return locks_[size_t(v & mask_)]; }

 private:
  std::vector<SpinLock> locks_;
  int64_t mask_ = 0;
};

// Max-heap sift-down step: the child of node pos (of n) holding the largest
// key above `key`, or pos itself when neither child's key is larger.
template <typename K>
inline int sift_child(const K* keys, int n, int pos, K key) {
  const int l = 2 * pos + 1, r = l + 1;
  int big = pos;
  if (l < n && keys[l] > key) { big = l; key = keys[l]; }
  if (r < n && keys[r] > key) big = r;
  return big;
}

// Heap storage for all points: distance, index and "new" flag per slot.
struct Graph {
  int64_t n;
  int k;
  std::vector<float> d;
  std::vector<node_t> i;
  std::vector<uint8_t> fresh;

  Graph(int64_t n_, int k_) : n(n_), k(k_), d(size_t(n_) * k_, INFINITY), i(size_t(n_) * k_, -1), fresh(size_t(n_) * k_, 0) {}

  // push_unique that also marks the slot as new (sift keeps flags aligned).
  // In the join this runs under v's lock while other threads read the root
  // distance and the ids without it: those stores are relaxed atomic (the
  // plain reads here are safe, the only writer holds the lock).
  bool push(int64_t v, float dist, node_t idx) {
    float* hd = d.data() + v * k;
    node_t* hi = i.data() + v * k;
    uint8_t* hf = fresh.data() + v * k;
    if (!(dist < hd[0])) return false;
    if (contains(hi, k, idx)) return false;
    int pos = 0;
    for (;;) {  // heap_replace_top (csrc/common.h) with atomic stores
      const int big = sift_child(hd, k, pos, dist);
      if (big == pos) break;
      store_relaxed(hd + pos, hd[big]);
      store_relaxed(hi + pos, hi[big]);
      hf[pos] = hf[big];
      pos = big;
    }
    store_relaxed(hd + pos, dist);
    store_relaxed(hi + pos, idx);
    hf[pos] = 1;
    return true;
  }
};

// Bounded candidate list keeping the c entries of smallest priority. A full
// row is a max-heap on priority: most offers to it cost one compare with the
// root, an accepted one a membership test and an O(log c) sift (the linear
// scans for the largest priority this replaces were a third of the sampling).
struct CandLists {
  int c;
  std::vector<node_t> idx;
  std::vector<uint32_t> pri;
  std::vector<int> size;
  CandLists(int64_t n, int c_) : c(c_), idx(size_t(n) * c_), pri(size_t(n) * c_), size(n, 0) {}
  void clear() { std::fill(size.begin(), size.end(), 0); }
  void offer(int64_t v, node_t j, uint32_t p) {
    node_t* li = idx.data() + v * c;
    uint32_t* lp = pri.data() + v * c;
    int& s = size[v];
    if (s == c && p >= lp[0]) return;
    if (contains(li, s, j)) return;
    int pos;
    if (s < c) {  // sift up from the new leaf
      pos = s++;
      while (pos > 0) {
        const int up = (pos - 1) / 2;
        if (lp[up] >= p) break;
        li[pos] = li[up]; lp[pos] = lp[up];
        pos = up;
      }
    } else {  // replace the root, sift down
      pos = 0;
      for (;;) {
        const int big = sift_child(lp, c, pos, p);
        if (big == pos) break;
        li[pos] = li[big]; lp[pos] = lp[big];
        pos = big;
      }
    }
    li[pos] = j; lp[pos] = p;
  }
};

}  // namespace

void knn_nndescent(const float* X_in, int64_t n, int64_t d, int k, Metric metric,
                   int n_trees, int leaf_size, int max_candidates, int n_iters,
                   float delta, uint64_t seed, int64_t* out_idx, float* out_dist,
                   int n_jobs, CpuKernel kernel, bool verbose, float* X_scratch) {
  const int nt = resolve_threads(n_jobs);
  const GramFn gram_sqdist = select_gram(kernel);
  const ContainsFn contains_snapshot = select_contains(kernel);
  const DistFns df = dist_fns(kernel);
  Graph g(n, k);
  auto T0 = std::chrono::steady_clock::now();
  auto el = [&]() { return std::chrono::duration<double>(std::chrono::steady_clock::now() - T0).count(); };

  // 1. Random-projection forest.
  std::vector<std::vector<int64_t>> offs;
  std::vector<std::vector<node_t>> mems;
  rp_forest(df, X_in, n, d, n_trees, leaf_size, seed, nt, offs, mems);
  if (verbose) std::fprintf(stderr, "trees %.3f\n", el());

  // Renumber the points in the leaf order of the first tree (point v of the
  // search is X_in row perm[v]): neighbours then have nearby numbers, so the
  // rows, heaps and candidate lists a join or a sampling step touches lie
  // close together in memory instead of anywhere in arrays of N rows (a
  // cluster's working set stays in cache), and consecutive joins share their
  // candidates. Costs a copy of the rows (n d floats; none when the caller
  // hands X over as scratch) and two id maps.
  const std::vector<node_t> perm = mems[0];
  std::vector<node_t> inv(n);
  for (int64_t v = 0; v < n; ++v) inv[perm[v]] = node_t(v);
  std::vector<float> Xr;
  if (X_scratch == X_in) {  // in place, cycle by cycle: new row v = old row perm[v]
    std::vector<uint8_t> done(n, 0);
    std::vector<float> tmp(d);
    for (int64_t s0 = 0; s0 < n; ++s0) {
      if (done[s0]) continue;
      std::memcpy(tmp.data(), X_scratch + s0 * d, sizeof(float) * d);
      int64_t v = s0;
      for (int64_t src = perm[v]; src != s0; v = src, src = perm[v]) {
        std::memcpy(X_scratch + v * d, X_scratch + src * d, sizeof(float) * d);
        done[v] = 1;
      }
      std::memcpy(X_scratch + v * d, tmp.data(), sizeof(float) * d);
      done[v] = 1;
    }
  } else {
    Xr.resize(size_t(n) * d);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t v = 0; v < n; ++v) std::memcpy(Xr.data() + v * d, X_in + int64_t(perm[v]) * d, sizeof(float) * d);
  }
  for (auto& mt : mems) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t j = 0; j < int64_t(mt.size()); ++j) mt[j] = inv[mt[j]];
  }
  std::vector<node_t>().swap(inv);
  const float* X = X_scratch == X_in ? X_in : Xr.data();
  std::vector<float> gnorm(n);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t v = 0; v < n; ++v) gnorm[v] = df.dot(X + v * d, X + v * d, d);

  // Leaf-mates -> heaps. Within one tree every point lies in exactly one
  // leaf, so the leaves of a tree are processed in parallel without locks and
  // each pair's distance is computed once for both heaps.
  for (int t = 0; t < n_trees; ++t) {
    const int64_t n_leaves = int64_t(offs[t].size()) - 1;
#pragma omp parallel num_threads(nt)
    {
      std::vector<float> out;
      GramScratch scratch;
#pragma omp for schedule(dynamic, 16)
      for (int64_t l = 0; l < n_leaves; ++l) {
        const int64_t lo = offs[t][l];
        const int m = int(offs[t][l + 1] - lo);
        const int mpad = gram_stride(m);
        out.resize(size_t(m) * mpad);
        const node_t* ids = mems[t].data() + lo;
        gram_sqdist(X, d, ids, m, m, gnorm.data(), out.data(), mpad, scratch);
        for (int p = 0; p < m; ++p)
          for (int q = p + 1; q < m; ++q) {
            const float dist = out[size_t(p) * mpad + q];
            g.push(ids[p], dist, ids[q]);
            g.push(ids[q], dist, ids[p]);
          }
      }
    }
  }
  if (verbose) std::fprintf(stderr, "leaves %.3f\n", el());
  // Top up with random points where the leaves were too small.
#pragma omp parallel for schedule(dynamic, 256) num_threads(nt)
  for (int64_t v = 0; v < n; ++v) {
    const float* xv = X + v * d;
    uint64_t h = splitmix(seed ^ (uint64_t(v) * 0x9E3779B97F4A7C15ull));
    for (int tries = 0; g.d[size_t(v) * k] == INFINITY && tries < 4 * k; ++tries) {
      h = splitmix(h);
      const int64_t u = int64_t(h % uint64_t(n));
      if (u != v) g.push(v, df.sqdist(xv, X + u * d, d), node_t(u));
    }
  }
  offs.clear(); mems.clear();

  if (verbose) std::fprintf(stderr, "init %.3f\n", el());
  // 2. NN-descent iterations.
  {  // the candidate lists are freed before the output is written
  CandLists fresh(n, max_candidates), old(n, max_candidates);
  StripedLocks locks(n, nt);
  for (int it = 0; it < n_iters; ++it) {
    fresh.clear();
    old.clear();
    // Sample candidates (forward and reverse) with hashed random priorities.
    // Thread r owns the candidate rows v with v % nt == r and scans every
    // edge, offering only into rows it owns: no locks, same result for any nt.
    // New edges first; old ones then only into rows that got a new candidate
    // (a row's old list is joined with its new list, and nothing else): late
    // iterations, where few rows have one, skip most of the offers.
#pragma omp parallel num_threads(nt)
    {
#ifdef FASTRL_OPENMP
      const int64_t me = omp_get_thread_num(), T = omp_get_num_threads();
#else
      const int64_t me = 0, T = 1;
#endif
      for (int pass = 0; pass < 2; ++pass) {
        const uint8_t want = pass == 0;
        CandLists& c = pass == 0 ? fresh : old;
        for (int64_t v = 0; v < n; ++v) {
          const bool own_v = v % T == me && (pass == 0 || fresh.size[v] > 0);
          for (int j = 0; j < k; ++j) {
            const size_t e = size_t(v) * k + j;
            const node_t u = g.i[e];
            if (u < 0 || g.fresh[e] != want) continue;
            const bool own_u = u % T == me && (pass == 0 || fresh.size[u] > 0);
            if (!own_v && !own_u) continue;
            const uint32_t p = uint32_t(splitmix(seed + uint64_t(it) * 0x51ED27ull + uint64_t(v) * 0x2545F491ull + uint64_t(u)) >> 32);
            if (own_v) c.offer(v, u, p);
            if (own_u) c.offer(u, node_t(v), p);
          }
        }
        // pass 1 reads fresh.size of rows other threads own
#pragma omp barrier
      }
    }
    // Forward entries that were sampled are explored: mark them old.
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t v = 0; v < n; ++v) {
      const node_t* fl = fresh.idx.data() + v * fresh.c;
      for (int j = 0; j < k; ++j) {
        const size_t s = size_t(v) * k + j;
        if (!g.fresh[s]) continue;
        if (contains(fl, fresh.size[v], g.i[s])) g.fresh[s] = 0;
      }
    }
    if (verbose) std::fprintf(stderr, "  it %d sampled %.3f\n", it, el());
    int64_t updates = 0, attempts = 0;
#pragma omp parallel num_threads(nt) reduction(+ : updates, attempts)
    {
      const int mmax = 2 * max_candidates, mpad = gram_stride(mmax);
      std::vector<float> out(size_t(max_candidates) * mpad);
      GramScratch scratch;
      std::vector<node_t> ids(mmax);
      std::vector<float> thr(mmax);
#pragma omp for schedule(dynamic, 64)
      for (int64_t iv = 0; iv < n; ++iv) {
        const int64_t v = iv;
        const int nn = fresh.size[v], no = old.size[v];
        if (nn == 0) continue;
        std::copy_n(fresh.idx.data() + v * fresh.c, nn, ids.data());
        std::copy_n(old.idx.data() + v * old.c, no, ids.data() + nn);
        const int m = nn + no;
        gram_sqdist(X, d, ids.data(), m, nn, gnorm.data(), out.data(), mpad, scratch);
        // Heap roots are scattered in memory: read each candidate's threshold
        // once, without its lock (a stale value only costs a rejected push
        // under the lock, or a missed one, as in pynndescent).
        for (int b = 0; b < m; ++b) thr[b] = load_relaxed(&g.d[size_t(ids[b]) * k]);
        for (int a = 0; a < nn; ++a) {
          const node_t p = ids[a];
          const float* row = out.data() + size_t(a) * mpad;
          for (int b = a + 1; b < m; ++b) {
            const float dist = row[b];
            if (!(dist < thr[a]) && !(dist < thr[b])) continue;
            const node_t q = ids[b];
            if (q == p) continue;
            ++attempts;
            // Most offers repeat a known edge: an unlocked look first spares the
            // lock's cache line (push re-checks under the lock).
            if (dist < thr[a] && !contains_snapshot(g.i.data() + size_t(p) * k, k, q)) { locks[p].lock(); updates += g.push(p, dist, q); thr[a] = g.d[size_t(p) * k]; locks[p].unlock(); }
            if (dist < thr[b] && !contains_snapshot(g.i.data() + size_t(q) * k, k, p)) { locks[q].lock(); updates += g.push(q, dist, p); thr[b] = g.d[size_t(q) * k]; locks[q].unlock(); }
          }
        }
      }
    }
    if (verbose) std::fprintf(stderr, "  it %d joined %.3f updates %lld attempts %lld\n", it, el(), (long long)updates, (long long)attempts);
    if (double(updates) <= double(delta) * double(n) * double(k)) break;
  }
  }

  // 3. Output. The heaps hold squared distances from the Gram expansion,
  // whose rounding error is a few ulps of |a|^2 + |b|^2: kept where the
  // distance is at least 1/16 of that (relative error ~16 ulps of float32,
  // and no second pass over the rows), recomputed in float64 otherwise
  // (near-duplicates; 3% of the edges on centred MNIST). Cosine rows are
  // unit vectors, |a - b|^2 = 2 (1 - cos), except for zero rows.
  const bool cosine = metric == Metric::kCosine;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t v = 0; v < n; ++v) {
    HeapView h{out_dist + int64_t(perm[v]) * k, out_idx + int64_t(perm[v]) * k, k};
    for (int j = 0; j < k; ++j) {
      const node_t u = g.i[size_t(v) * k + j];
      h.i[j] = u < 0 ? -1 : perm[u];
      if (u < 0) { h.d[j] = INFINITY; continue; }
      const float sq = g.d[size_t(v) * k + j], nsum = gnorm[v] + gnorm[u];
      const bool unit = !cosine || (gnorm[v] > 0.5f && gnorm[u] > 0.5f);
      if (unit && 16.f * sq >= nsum)
        h.d[j] = cosine ? 0.5f * sq : float(std::sqrt(double(sq)));
      else
        h.d[j] = cosine ? float(std::max(0.0, 1.0 - df.dot64(X + v * d, X + int64_t(u) * d, d)))
                        : float(std::sqrt(df.sqdist64(X + v * d, X + int64_t(u) * d, d)));
    }
    h.sort_ascending();
  }
  if (verbose) std::fprintf(stderr, "finalized %.3f\n", el());
}

}  // namespace fastrl
