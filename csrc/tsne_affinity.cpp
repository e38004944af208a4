// t-SNE input affinities: per-point perplexity calibration by bisection and
// the sparse symmetrisation P = (P + P^T) / 2N.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "common.h"
#include "tsne.h"

namespace fastrl {

// Row i: P_ij = exp(-beta (d_ij^2 - d_min^2)) / S; entropy
// H = log S + beta * sum_j P_ij (d_ij^2 - d_min^2). H decreases in beta, so we
// bisect beta (doubling / halving while no bracket is known) until
// |H - log(perplexity)| < tol.
int64_t tsne_perplexity(const float* D, int64_t n, int k, double perplexity,
                        double tol, int max_iter, double* P, double* beta, int n_jobs) {
  const double target = std::log(perplexity);
  int64_t missed = 0;
#pragma omp parallel num_threads(tsne_threads(n_jobs, n * int64_t(k) * 20)) reduction(+ : missed)
  {
    std::vector<double> d2(k);
#pragma omp for schedule(dynamic, 256)
    for (int64_t i = 0; i < n; ++i) {
      const float* di = D + i * k;
      double* pi = P + i * k;
      double dmin = std::numeric_limits<double>::infinity();
      for (int j = 0; j < k; ++j) {
        d2[j] = double(di[j]) * double(di[j]);
        dmin = std::min(dmin, d2[j]);
      }
      for (int j = 0; j < k; ++j) d2[j] -= dmin;
      double b = 1.0, lo = 0.0, hi = std::numeric_limits<double>::infinity();
      // Scale the start to the data: beta ~ 1 / mean shifted squared distance.
      double mean = 0.0;
      for (int j = 0; j < k; ++j) mean += d2[j];
      mean /= k;
      if (mean > 0) b = 1.0 / mean;
      bool ok = false;
      for (int it = 0; it < max_iter; ++it) {
        double s = 0.0, sd = 0.0;
        for (int j = 0; j < k; ++j) {
          double e = std::exp(-b * d2[j]);
          pi[j] = e;
          s += e;
          sd += e * d2[j];
        }
        double H = std::log(s) + b * sd / s;
        double diff = H - target;
        if (std::fabs(diff) < tol) { ok = true; break; }
        if (diff > 0) {  // too flat: sharpen
          lo = b;
          b = std::isinf(hi) ? b * 2.0 : 0.5 * (b + hi);
        } else {
          hi = b;
          b = 0.5 * (b + lo);
        }
      }
      // Final normalised row at the last beta.
      double s = 0.0;
      for (int j = 0; j < k; ++j) { pi[j] = std::exp(-b * d2[j]); s += pi[j]; }
      for (int j = 0; j < k; ++j) pi[j] /= s;
      beta[i] = b;
      if (!ok) ++missed;
    }
  }
  return missed;
}

namespace {

// Transposed kNN graph: for each column j, the rows i with j in nbr[i] (in
// increasing i) and the position i * k + slot of that edge. Positions are
// int32 when n k < 2^31 (half the bytes: at 1M points and k = 90, 360 MB
// instead of 720 MB while P is built).
template <typename Pos>
struct Transposed {
  std::vector<int64_t> ptr;
  std::vector<Pos> pos;
};

template <typename Pos, typename I>
Transposed<Pos> transpose(const I* nbr, int64_t n, int k) {
  Transposed<Pos> t;
  t.ptr.assign(n + 1, 0);
  const int64_t m = n * int64_t(k);
  for (int64_t e = 0; e < m; ++e) ++t.ptr[nbr[e] + 1];
  for (int64_t j = 0; j < n; ++j) t.ptr[j + 1] += t.ptr[j];
  t.pos.resize(m);
  std::vector<int64_t> fill(t.ptr.begin(), t.ptr.end() - 1);
  for (int64_t e = 0; e < m; ++e) t.pos[fill[nbr[e]]++] = Pos(e);
  return t;
}

// Merge row i's out-edges (sorted copy) and in-edges into sorted unique
// columns; calls emit(col, value_out, value_in) per column.
template <typename Pos, typename I, typename V, typename Emit>
void merge_row(const I* nbr, const V* Pc, int k, int64_t i, const Transposed<Pos>& t,
               std::vector<std::pair<int64_t, double>>& out, Emit emit) {
  out.clear();
  for (int j = 0; j < k; ++j) out.emplace_back(int64_t(nbr[i * k + j]), Pc ? double(Pc[i * k + j]) : 0.0);
  std::sort(out.begin(), out.end());
  size_t a = 0;
  int64_t b = t.ptr[i];
  const int64_t bend = t.ptr[i + 1];
  while (a < out.size() || b < bend) {
    int64_t ca = a < out.size() ? out[a].first : std::numeric_limits<int64_t>::max();
    int64_t cb = b < bend ? int64_t(t.pos[b]) / k : std::numeric_limits<int64_t>::max();
    double pin = (b < bend && Pc) ? double(Pc[t.pos[b]]) : 0.0;
    if (ca == cb) { emit(ca, out[a].second, pin); ++a; ++b; }
    else if (ca < cb) { emit(ca, out[a].second, 0.0); ++a; }
    else { emit(cb, 0.0, pin); ++b; }
  }
}

// One transpose for both passes: count (indptr), allocate, fill. Pc's values
// (float64, or float32 where P is compact) are summed in float64, rounded once to T.
template <typename Pos, typename T, typename I, typename V>
void symmetrize_with(const I* nbr, const V* Pc, int64_t n, int k, int64_t* indptr,
                     const SymAlloc<T>& alloc, int n_jobs) {
  const Transposed<Pos> t = transpose<Pos, I>(nbr, n, k);
  const int threads = tsne_threads(n_jobs, n * int64_t(k) * 8);
  indptr[0] = 0;
#pragma omp parallel num_threads(threads)
  {
    std::vector<std::pair<int64_t, double>> buf;
#pragma omp for schedule(dynamic, 512)
    for (int64_t i = 0; i < n; ++i) {
      int64_t c = 0;
      merge_row(nbr, static_cast<const V*>(nullptr), k, i, t, buf, [&](int64_t, double, double) { ++c; });
      indptr[i + 1] = c;
    }
  }
  for (int64_t i = 0; i < n; ++i) indptr[i + 1] += indptr[i];
  const std::pair<int32_t*, T*> dst = alloc(indptr[n]);
  int32_t* indices = dst.first;
  T* data = dst.second;
  const double scale = 1.0 / (2.0 * double(n));
#pragma omp parallel num_threads(threads)
  {
    std::vector<std::pair<int64_t, double>> buf;
#pragma omp for schedule(dynamic, 512)
    for (int64_t i = 0; i < n; ++i) {
      int64_t o = indptr[i];
      merge_row(nbr, Pc, k, i, t, buf, [&](int64_t c, double pout, double pin) {
        indices[o] = int32_t(c);
        data[o] = T((pout + pin) * scale);
        ++o;
      });
    }
  }
}

}  // namespace

template <typename T, typename I, typename V>
void tsne_symmetrize(const I* nbr, const V* Pc, int64_t n, int k, int64_t* indptr,
                     const SymAlloc<T>& alloc, int n_jobs) {
  if (n * int64_t(k) < (int64_t(1) << 31))
    symmetrize_with<int32_t, T, I, V>(nbr, Pc, n, k, indptr, alloc, n_jobs);
  else
    symmetrize_with<int64_t, T, I, V>(nbr, Pc, n, k, indptr, alloc, n_jobs);
}

#define FASTRL_SYM_INST(T, I, V) \
  template void tsne_symmetrize<T, I, V>(const I*, const V*, int64_t, int, int64_t*, const SymAlloc<T>&, int);
#define FASTRL_SYM_INST_V(T, I) FASTRL_SYM_INST(T, I, double) FASTRL_SYM_INST(T, I, float)
FASTRL_SYM_INST_V(double, int64_t)
FASTRL_SYM_INST_V(float, int64_t)
FASTRL_SYM_INST_V(double, int32_t)
FASTRL_SYM_INST_V(float, int32_t)
#undef FASTRL_SYM_INST_V
#undef FASTRL_SYM_INST

}  // namespace fastrl
