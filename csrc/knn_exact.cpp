// Exact kNN driver: packs the index into 16-wide panels, runs the best ISA
// kernel over blocks of queries in parallel, then recomputes exact distances
// for the survivors (the |x|^2 - 2<q,x> scores lose precision for large norms).
//
// Ties at the k boundary go by index on every input: the scan keeps k + slack
// candidates; their distances are recomputed in float64 on the caller's
// (uncentred) data and sorted by (distance, index). If the k-th exact distance
// is not below the scan's admission threshold minus its rounding bound, a point
// outside the candidates could tie it, and that row is rescanned exactly.
#include <cmath>
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "common.h"
#include "cpu_features.h"
#include "knn.h"
#include "knn_tile.h"
#include "simd_dist.h"

namespace fastrl {

ScanKernel scan_kernel(CpuKernel kernel) {
  switch (kernel) {
#ifdef FASTRL_HAVE_AVX512
    case CpuKernel::kAvx512:
      return {isa_avx512::scan_block, isa_avx512::scan_range, isa_avx512::row_tile(), "avx512"};
#endif
#ifdef FASTRL_HAVE_AVX2
    case CpuKernel::kAvx2: return {isa_avx2::scan_block, isa_avx2::scan_range, isa_avx2::row_tile(), "avx2"};
#endif
    default: return {isa_base::scan_block, isa_base::scan_range, isa_base::row_tile(), "base"};
  }
}

const char* knn_kernel_name(CpuKernel kernel) { return scan_kernel(kernel).name; }

namespace {

constexpr int kTieSlack = 4;         // extra scan candidates per row
constexpr double kEps32 = 6.0e-8;    // float32 unit roundoff (with margin)

// Exact distance in the refinement metric: squared Euclidean, or 1 - <q, x>
// (float64 products and sums, vectorised for the CPU kernel in use).
inline double exact_dist(const DistFns& df, const float* q, const float* x, int64_t d, Metric metric) {
  return metric == Metric::kCosine ? 1.0 - df.dot64(q, x, d) : df.sqdist64(q, x, d);
}

// Inlined (not a per-ISA call): the rescans call it once per point, and at
// small d a call would cost more than the distance.
inline float approx_dist(const float* q, const float* x, int64_t d, Metric metric) {
  float acc = 0.f;
  if (metric == Metric::kCosine) {
#pragma omp simd reduction(+ : acc)
    for (int64_t t = 0; t < d; ++t) acc += q[t] * x[t];
    return 1.f - acc;
  }
#pragma omp simd reduction(+ : acc)
  for (int64_t t = 0; t < d; ++t) { const float z = q[t] - x[t]; acc += z * z; }
  return acc;
}

using Cand = std::pair<double, int64_t>;  // (exact distance, index): sorts ties by index

// All points whose exact distance to q is <= bound (with fp32 screening).
void rescan_row(const DistFns& df, const float* Xr, int64_t n, const float* q, int64_t d, Metric metric,
                int64_t self, double bound, std::vector<Cand>& out) {
  out.clear();
  const double scale = metric == Metric::kCosine ? 2.0 : 1.0;
  for (int64_t j = 0; j < n; ++j) {
    if (j == self) continue;
    const float* x = Xr + j * d;
    const float f = approx_dist(q, x, d, metric);
    const double slack = 4.0 * kEps32 * double(d + 4) * (metric == Metric::kCosine ? scale : std::max(double(f), bound));
    if (double(f) <= bound + slack) {
      const double e = exact_dist(df, q, x, d, metric);
      if (e <= bound) out.push_back({e, j});
    }
  }
  std::sort(out.begin(), out.end());
}

// A kd-tree leaf order of the n rows of X: ranges split at the median of
// their widest coordinate (widths from up to 64 sampled rows) down to 64
// rows, so that points close in the order are close in space.
void kd_order(const float* X, int64_t n, int64_t d, int64_t* perm) {
  std::iota(perm, perm + n, int64_t(0));
  std::vector<std::pair<int64_t, int64_t>> todo{{0, n}};
  std::vector<float> lo(d), hi(d);
  while (!todo.empty()) {
    const auto [a, b] = todo.back();
    todo.pop_back();
    if (b - a <= 64) continue;
    std::fill(lo.begin(), lo.end(), INFINITY);
    std::fill(hi.begin(), hi.end(), -INFINITY);
    const int64_t step = std::max<int64_t>(1, (b - a) / 64);
    for (int64_t s = a; s < b; s += step) {
      const float* x = X + perm[s] * d;
      for (int64_t t = 0; t < d; ++t) { lo[t] = std::min(lo[t], x[t]); hi[t] = std::max(hi[t], x[t]); }
    }
    int64_t axis = 0;
    for (int64_t t = 1; t < d; ++t)
      if (hi[t] - lo[t] > hi[axis] - lo[axis]) axis = t;
    const int64_t mid = a + (b - a) / 2;
    std::nth_element(perm + a, perm + mid, perm + b,
                     [&](int64_t u, int64_t v) { return X[u * d + axis] < X[v * d + axis]; });
    todo.push_back({a, mid});
    todo.push_back({mid, b});
  }
}

// A self-join in the spatial order, each unordered pair of row blocks
// scanned once (half the products of the plain scan): block I's rows against
// block J's panels offer every score to the rows' heaps and to the columns'
// (SymCols). The diagonal blocks first (rows only), then the pairs in
// increasing |I - J| (near points first), the band J - I = s in two phases
// of pairs whose blocks are all distinct (I / s even, then odd), so that
// the threads never share a heap. Ids stay slots until the caller maps them.
void symmetric_scan(const PackedIndex& packed, int64_t n, const ScanKernel& kern, const int64_t* slot, int kk,
                    int64_t block, float* cscore, int64_t* cidx, int nt) {
  const int64_t d = packed.dim, mr = kern.row_tile;
  const int64_t n_blocks = (n + block - 1) / block, bp = block / kPanel;
  std::vector<HeapView> heaps(n);
  for (int64_t s = 0; s < n; ++s) {
    heaps[s] = HeapView{cscore + slot[s] * kk, cidx + slot[s] * kk, kk};
    heaps[s].fill_empty();
  }
  std::vector<float> tops(packed.n_panels * kPanel, -INFINITY), rnorm(n_blocks * block + mr, INFINITY);
  for (int64_t s = 0; s < n; ++s) rnorm[s] = packed.norms[s];
  const SymCols cols{heaps.data(), rnorm.data(), tops.data()};
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> qbuf(size_t(block) * d);
    std::vector<int64_t> self(block);
    // block I's rows (slots I * block ..), unpacked from the panels, zero padded to the row tile
    auto load = [&](int64_t I) {
      const int64_t r0 = I * block, rows = std::min(block, n - r0);
      const int64_t rows_pad = ((rows + mr - 1) / mr) * mr;
      for (int64_t r = 0; r < rows; ++r) {
        const float* pan = packed.data + ((r0 + r) / kPanel) * d * kPanel + (r0 + r) % kPanel;
        for (int64_t t = 0; t < d; ++t) qbuf[r * d + t] = pan[t * kPanel];
      }
      std::fill(qbuf.begin() + rows * d, qbuf.begin() + rows_pad * d, 0.f);
      return rows;
    };
    auto panels = [&](int64_t J) { return std::make_pair(J * bp, std::min((J + 1) * bp, packed.n_panels)); };
#pragma omp for schedule(dynamic, 1)
    for (int64_t I = 0; I < n_blocks; ++I) {
      const int64_t rows = load(I);
      for (int64_t r = 0; r < rows; ++r) self[r] = I * block + r;
      const auto [p0, p1] = panels(I);
      kern.range(qbuf.data(), rows, self.data(), packed, p0, p1, heaps.data() + I * block, nullptr, 0);
      for (int64_t r = 0; r < rows; ++r) tops[I * block + r] = heaps[I * block + r].top();
    }
    for (int64_t sep = 1; sep < n_blocks; ++sep) {
      for (int64_t phase = 0; phase < 2; ++phase) {
#pragma omp for schedule(dynamic, 1)
        for (int64_t I = 0; I < n_blocks - sep; ++I) {
          if ((I / sep) % 2 != phase) continue;
          const int64_t rows = load(I);
          const auto [p0, p1] = panels(I + sep);
          kern.range(qbuf.data(), rows, nullptr, packed, p0, p1, heaps.data() + I * block, &cols, I * block);
        }
      }
    }
  }
}

}  // namespace

void knn_exact(const float* X, int64_t n, const float* Q, int64_t m, int64_t d,
               int k, Metric metric, bool exclude_self, int64_t* out_idx,
               float* out_dist, int n_jobs, CpuKernel kernel, const float* Xr, const float* Qr) {
  const int nt = resolve_threads(n_jobs);
  if (Xr == nullptr) Xr = X;
  if (Qr == nullptr) Qr = Q;
  const int64_t avail = n - (exclude_self ? 1 : 0);
  const int kk = int(std::min<int64_t>(avail, int64_t(k) + kTieSlack));
  std::vector<int64_t> cidx(size_t(m) * kk);
  std::vector<float> cscore(size_t(m) * kk);
  const ScanKernel kern = scan_kernel(kernel);
  const DistFns df = dist_fns(kernel);
  const int64_t n_panels = (n + kPanel - 1) / kPanel;
  AlignedFloats pdata = aligned_floats(size_t(n_panels) * d * kPanel);
  AlignedFloats pnorm = aligned_floats(size_t(n_panels) * kPanel);

  // A self-join scans in a spatial order (kd_order): packed slot s holds the
  // point slot[s], and symmetric_scan goes over the pairs of row blocks near
  // ones first. The heaps then fill with near points early and later points
  // are rarely admitted (the heap updates, not the products, bound a plain
  // scan). Same results: every point is still offered to every query.
  const bool spatial = exclude_self && Q == X && m == n;
  std::vector<int64_t> slot;
  if (spatial) {
    slot.resize(n);
    kd_order(X, n, d, slot.data());
  }
  // Pack X into [panel][d][16]; padding points get zero coordinates and an
  // infinite norm so their score is +inf and they are never admitted.
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t p = 0; p < n_panels; ++p) {
    float* dst = pdata.get() + p * d * kPanel;
    for (int j = 0; j < kPanel; ++j) {
      const int64_t row = p * kPanel + j;
      float nrm = INFINITY;
      if (row < n) {
        const float* x = X + (spatial ? slot[row] : row) * d;
        float s = 0.f;
        for (int64_t t = 0; t < d; ++t) { dst[t * kPanel + j] = x[t]; s += x[t] * x[t]; }
        // Cosine rows are unit (or zero) vectors: rank by -2<q,x> alone.
        nrm = metric == Metric::kCosine ? 0.f : s;
      } else {
        for (int64_t t = 0; t < d; ++t) dst[t * kPanel + j] = 0.f;
      }
      pnorm[p * kPanel + j] = nrm;
    }
  }
  PackedIndex packed{pdata.get(), pnorm.get(), n_panels, d};
  float max_norm2 = 0.f;
  for (int64_t j = 0; j < n; ++j) max_norm2 = std::max(max_norm2, pnorm[j]);

  const int64_t mr = kern.row_tile;
  const int64_t block = mr * 32;
  const int64_t n_blocks = (m + block - 1) / block;
  if (spatial) {
    symmetric_scan(packed, n, kern, slot.data(), kk, block, cscore.data(), cidx.data(), nt);
  } else
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> qbuf(size_t(block) * d);
    std::vector<HeapView> heaps(block);
    std::vector<int64_t> self(block);
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t r0 = b * block;
      const int64_t rows = std::min(block, m - r0);
      const int64_t rows_pad = ((rows + mr - 1) / mr) * mr;
      std::memcpy(qbuf.data(), Q + r0 * d, sizeof(float) * rows * d);
      std::fill(qbuf.begin() + rows * d, qbuf.begin() + rows_pad * d, 0.f);
      for (int64_t r = 0; r < rows; ++r) {
        heaps[r] = HeapView{cscore.data() + (r0 + r) * kk, cidx.data() + (r0 + r) * kk, kk};
        heaps[r].fill_empty();
        self[r] = r0 + r;
      }
      kern.fn(qbuf.data(), rows, exclude_self ? self.data() : nullptr, packed, heaps.data());
    }
  }
  if (spatial) {  // slot ids back to point ids
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t e = 0; e < m * int64_t(kk); ++e)
      if (cidx[e] >= 0) cidx[e] = slot[cidx[e]];
  }

  // Refinement: exact float64 distances of the kk candidates, sorted by
  // (distance, index); rescan the rows whose k-th distance is not safely
  // below the threshold every non-candidate's score was at least.
  // It reads kk rows at random per query (raw MNIST 20k, k = 90: 5 GB), so for
  // a self-join the queries go in breadth-first order over the candidate
  // graph: consecutive queries share most candidates, which stay in cache.
  std::vector<int64_t> order(m);
  std::iota(order.begin(), order.end(), int64_t(0));
  if (exclude_self) {
    std::vector<uint8_t> seen(m, 0);
    int64_t head = 0, tail = 0;
    for (int64_t s = 0; s < m; ++s) {
      if (seen[s]) continue;
      seen[s] = 1;
      order[tail++] = s;
      while (head < tail) {
        const int64_t i = order[head++];
        for (int j = 0; j < kk; ++j) {
          const int64_t u = cidx[size_t(i) * kk + j];
          if (u >= 0 && !seen[u]) { seen[u] = 1; order[tail++] = u; }
        }
      }
    }
  }
#pragma omp parallel num_threads(nt)
  {
    std::vector<Cand> c(kk), wide;
#pragma omp for schedule(dynamic, 64)
    for (int64_t ii = 0; ii < m; ++ii) {
      const int64_t i = order[ii];
      const float* q = Qr + i * d;
      const int64_t* ci = cidx.data() + i * kk;
      const double top = cscore[size_t(i) * kk];  // heap root: the largest kept score
      for (int j = 0; j < kk; ++j) {
        if (j + 1 < kk && ci[j + 1] >= 0) {  // fetch the next row while this one is summed
          const char* nx = reinterpret_cast<const char*>(Xr + ci[j + 1] * d);
          for (int64_t b = 0; b < d * int64_t(sizeof(float)); b += 64) __builtin_prefetch(nx + b);
        }
        c[j] = ci[j] < 0 ? Cand{INFINITY, ci[j]} : Cand{exact_dist(df, q, Xr + ci[j] * d, d, metric), ci[j]};
      }
      std::sort(c.begin(), c.end());
      const Cand* best = c.data();
      if (kk < avail) {
        const float* qs = Q + i * d;  // the scan's (centred) query
        const double q2 = df.dot64(qs, qs, d);
        // score = |x|^2 - 2<q,x> (Euclidean: d^2 = score + |q|^2; cosine:
        // 1 - cos = (score + 2) / 2), each off by at most `err`, relative to
        // |q|^2 + |x|^2. Only an x with |x| <= |q| + (k-th distance) could
        // displace a neighbour, so that bounds |x| (cosine rows: |x| = 1).
        double x2 = 1.0;
        if (metric != Metric::kCosine) {
          const double reach = std::sqrt(q2) + std::sqrt(std::max(c[k - 1].first, 0.0)) * (1.0 + 1e-6);
          x2 = std::min(double(max_norm2), reach * reach);
        }
        const double err = 4.0 * kEps32 * double(d + 4) * (q2 + x2);
        const double floor_out = metric == Metric::kCosine ? 0.5 * (top + 2.0) - err : top + q2 - err;
        if (!(c[k - 1].first < floor_out)) {
          rescan_row(df, Xr, n, q, d, metric, exclude_self ? i : -1, c[k - 1].first, wide);
          best = wide.data();
        }
      }
      for (int j = 0; j < k; ++j) {
        const double e = best[j].first;
        out_idx[i * k + j] = best[j].second;
        out_dist[i * k + j] = float(metric == Metric::kCosine ? std::max(0.0, e) : std::sqrt(e));
      }
    }
  }
}

}  // namespace fastrl
