// k-nearest-neighbour graph kernels: the narrow C++ contract (contiguous
// float32 arrays in, output arrays passed in, n_jobs).
#pragma once
#include <cstdint>

#include "cpu_features.h"

namespace fastrl {

enum class Metric : int { kEuclidean = 0, kCosine = 1 };

// `kernel` (every entry point below that has one) picks the per-ISA loops;
// the caller has parsed it with parse_cpu_kernel (csrc/cpu_features.h).
//
// Exact kNN by blocked brute force. X: [n, d] index points, Q: [m, d] queries,
// both row-major float32. If exclude_self, Q must be X (m == n) and row i never
// lists i. Writes out_idx [m, k] (int64) and out_dist [m, k] (float32, the true
// distance: Euclidean, or cosine distance 1 - cos for unit-normalised rows),
// each row sorted ascending by (distance, index), ties at the k boundary
// included. Xr / Qr (or nullptr: X / Q) hold the same points as the caller
// gave them (X and Q may be centred copies for the scan); the returned
// distances and the tie order are computed exactly on them.
void knn_exact(const float* X, int64_t n, const float* Q, int64_t m, int64_t d,
               int k, Metric metric, bool exclude_self, int64_t* out_idx,
               float* out_dist, int n_jobs, CpuKernel kernel, const float* Xr = nullptr,
               const float* Qr = nullptr);

// Approximate kNN graph of X (self excluded) by NN-descent started from a
// random-projection forest. Same output layout as knn_exact. verbose: phase
// timings on stderr. X_scratch: null, or X itself when the caller lets the
// search permute X's rows in place (its rows are then left in an unspecified
// order) instead of working on a renumbered copy (n d floats less).
void knn_nndescent(const float* X, int64_t n, int64_t d, int k, Metric metric,
                   int n_trees, int leaf_size, int max_candidates, int n_iters,
                   float delta, uint64_t seed, int64_t* out_idx,
                   float* out_dist, int n_jobs, CpuKernel kernel, bool verbose = false,
                   float* X_scratch = nullptr);

// Name of the distance kernel `kernel` runs ("avx512", "avx2", "base").
const char* knn_kernel_name(CpuKernel kernel);

// One parallel pass over A [n, d]: col_sum[c] (float64 sums) and varies[c]
// (0 where the column is constant: equal to row 0's value for Euclidean, all
// zero for cosine, whose rows are normalised).
void knn_column_stats(const float* A, int64_t n, int64_t d, Metric metric, double* col_sum,
                      uint8_t* varies, int n_jobs);

// out [n, dout] (dout >= dk): the columns keep[0:dk] of A's rows, prepared for
// the search: minus center (Euclidean, center may be nullptr) or divided by
// the row's norm over all d columns (cosine); columns dk..dout-1 are zero.
void knn_compact_rows(const float* A, int64_t n, int64_t d, Metric metric, const float* center,
                      const int64_t* keep, int64_t dk, float* out, int64_t dout, int n_jobs);

}  // namespace fastrl
