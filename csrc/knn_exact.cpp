// Exact kNN driver: packs the index into 16-wide panels, runs the best ISA
// kernel over blocks of queries in parallel, then recomputes exact distances
// for the k survivors (the |x|^2 - 2<q,x> scores lose precision for large norms).
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "cpu_features.h"
#include "knn.h"
#include "knn_tile.h"

namespace fastrl {

ScanKernel best_scan_kernel() {
  switch (selected_cpu_kernel()) {
#ifdef FASTRL_HAVE_AVX512
    case CpuKernel::kAvx512: return {isa_avx512::scan_block, isa_avx512::row_tile(), "avx512"};
#endif
#ifdef FASTRL_HAVE_AVX2
    case CpuKernel::kAvx2: return {isa_avx2::scan_block, isa_avx2::row_tile(), "avx2"};
#endif
    default: return {isa_base::scan_block, isa_base::row_tile(), "base"};
  }
}

const char* knn_kernel_name() { return best_scan_kernel().name; }

void knn_finalize(const float* X, const float* Q, int64_t m, int64_t d, int k,
                  Metric metric, int64_t* out_idx, float* out_dist, int n_jobs) {
  const int nt = resolve_threads(n_jobs);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t i = 0; i < m; ++i) {
    const float* q = Q + i * d;
    HeapView h{out_dist + i * k, out_idx + i * k, k};
    for (int j = 0; j < k; ++j) {
      const int64_t idx = h.i[j];
      if (idx < 0) { h.d[j] = INFINITY; continue; }
      const float* x = X + idx * d;
      double acc = 0.0;
      if (metric == Metric::kCosine) {
        for (int64_t t = 0; t < d; ++t) acc += double(q[t]) * double(x[t]);
        acc = std::max(0.0, 1.0 - acc);
      } else {
        for (int64_t t = 0; t < d; ++t) { double diff = double(q[t]) - double(x[t]); acc += diff * diff; }
        acc = std::sqrt(acc);
      }
      h.d[j] = float(acc);
    }
    h.sort_ascending();
  }
}

void knn_exact(const float* X, int64_t n, const float* Q, int64_t m, int64_t d,
               int k, Metric metric, bool exclude_self, int64_t* out_idx,
               float* out_dist, int n_jobs) {
  const int nt = resolve_threads(n_jobs);
  const ScanKernel kern = best_scan_kernel();
  const int64_t n_panels = (n + kPanel - 1) / kPanel;
  AlignedFloats pdata = aligned_floats(size_t(n_panels) * d * kPanel);
  AlignedFloats pnorm = aligned_floats(size_t(n_panels) * kPanel);

  // Pack X into [panel][d][16]; padding points get zero coordinates and an
  // infinite norm so their score is +inf and they are never admitted.
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t p = 0; p < n_panels; ++p) {
    float* dst = pdata.get() + p * d * kPanel;
    for (int j = 0; j < kPanel; ++j) {
      const int64_t row = p * kPanel + j;
      float nrm = INFINITY;
      if (row < n) {
        const float* x = X + row * d;
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

  const int64_t mr = kern.row_tile;
  const int64_t block = mr * 32;
  const int64_t n_blocks = (m + block - 1) / block;
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
        heaps[r] = HeapView{out_dist + (r0 + r) * k, out_idx + (r0 + r) * k, k};
        heaps[r].fill_empty();
        self[r] = r0 + r;
      }
      kern.fn(qbuf.data(), rows, exclude_self ? self.data() : nullptr, packed, heaps.data());
    }
  }
  knn_finalize(X, Q, m, d, k, metric, out_idx, out_dist, nt);
}

}  // namespace fastrl
