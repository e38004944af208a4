// Preparation of the rows a kNN search ranks: one pass of column statistics,
// then a compact copy without the columns that are constant (they add exactly
// zero to every difference, so every distance is unchanged: raw MNIST has 88
// of its 784 pixels constant in the first 20k images, 11% of the flops).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "knn.h"

namespace fastrl {

void knn_column_stats(const float* A, int64_t n, int64_t d, Metric metric, double* col_sum,
                      uint8_t* varies, int n_jobs) {
  const int nt = resolve_threads(n_jobs);
  std::fill(col_sum, col_sum + d, 0.0);
  std::fill(varies, varies + d, uint8_t(0));
  const bool cosine = metric == Metric::kCosine;
#pragma omp parallel num_threads(nt)
  {
    std::vector<double> sum(d, 0.0);
    std::vector<uint8_t> var(d, 0);
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < n; ++i) {
      const float* r = A + i * d;
      for (int64_t c = 0; c < d; ++c) {
        sum[c] += r[c];
        // Euclidean: a column equal to row 0's value everywhere is constant;
        // cosine (rows get normalised): only an all-zero column stays constant.
        var[c] |= uint8_t(cosine ? r[c] != 0.f : r[c] != A[c]);
      }
    }
#pragma omp critical
    for (int64_t c = 0; c < d; ++c) {
      col_sum[c] += sum[c];
      varies[c] |= var[c];
    }
  }
}

void knn_compact_rows(const float* A, int64_t n, int64_t d, Metric metric, const float* center,
                      const int64_t* keep, int64_t dk, float* out, int64_t dout, int n_jobs) {
  const int nt = resolve_threads(n_jobs);
  const bool cosine = metric == Metric::kCosine;
  // Fault the fresh output in on one thread first: concurrent first-touch
  // faults serialise in the kernel and cost 4x a serial memset (65 vs 15 ms
  // for 56 MB on the 2-core VM the benchmarks run on).
  std::memset(out, 0, size_t(n) * size_t(dout) * sizeof(float));  // also the padding
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t i = 0; i < n; ++i) {
    const float* r = A + i * d;
    float* o = out + i * dout;
    if (cosine) {  // unit rows (a zero row stays zero), norm over every column
      double s = 0.0;
      for (int64_t c = 0; c < d; ++c) s += double(r[c]) * r[c];
      const float inv = s > 0.0 ? float(1.0 / std::sqrt(s)) : 1.f;
      for (int64_t j = 0; j < dk; ++j) o[j] = r[keep[j]] * inv;
    } else if (center) {
      for (int64_t j = 0; j < dk; ++j) o[j] = r[keep[j]] - center[keep[j]];
    } else {
      for (int64_t j = 0; j < dk; ++j) o[j] = r[keep[j]];
    }
  }
}

}  // namespace fastrl
