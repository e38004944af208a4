// t-SNE gradient pieces that are plain loops over points: attractive forces
// over sparse P, FFT-interpolation spreading / gathering, and the
// gains-and-momentum update step.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"
#include "cpu_features.h"
#include "tsne.h"

namespace fastrl {

namespace {

// Rows [0, n) of the attractive forces. DIM > 0 fixes the dimension at
// compile time (the 2-D case vectorises and keeps the accumulators in
// registers); DIM == 0 reads it at run time.
template <int DIM, bool KL, typename PT>
void attractive_rows(const int64_t* indptr, const int32_t* indices, const PT* P,
                     const double* Y, const double* Yref, int64_t n, int dim_rt, double dof,
                     double exaggeration, double* out, double* row_kl, int n_jobs) {
  const int dim = DIM > 0 ? DIM : dim_rt;
  const double inv_dof = 1.0 / dof;
#pragma omp parallel for num_threads(tsne_threads(n_jobs, 8 * indptr[n])) schedule(dynamic, 256)
  for (int64_t i = 0; i < n; ++i) {
    double kl = 0.0;
    const double* yi = Y + i * dim;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t e = indptr[i]; e < indptr[i + 1]; ++e) {
      const double* yj = Yref + int64_t(indices[e]) * dim;
      double diff[8];
      double d2 = 0.0;
      for (int c = 0; c < dim; ++c) { diff[c] = yi[c] - yj[c]; d2 += diff[c] * diff[c]; }
      const double u = 1.0 / (1.0 + d2 * inv_dof);
      const double p = P[e], pu = p * u;
      for (int c = 0; c < dim; ++c) acc[c] += pu * diff[c];
      if (KL && p > 0) kl += p * (std::log(p) - dof * std::log(u));
    }
    for (int c = 0; c < dim; ++c) out[i * dim + c] = exaggeration * acc[c];
    if (KL) row_kl[i] = kl;
  }
}

// The SIMD builds of the 2-D, no-KL case (csrc/tsne_attr_impl.h); the KL
// evaluation (every 50 iterations) and other dimensions take the loop above.
template <typename PT>
using Attr2dFn = void (*)(const int64_t*, const int32_t*, const PT*, const double*, const double*, int64_t,
                          int64_t, double, double, double*);

template <typename PT>
struct Attr2dLoop {
  Attr2dFn<PT> fn;   // null: the portable loop
  const char* name;  // as tsne_attractive_loop reports it
};

template <typename PT>
Attr2dLoop<PT> simd_attractive2d(int64_t n_ref, int dim, bool eval_kl, CpuKernel kernel, GatherMode gather) {
  // n_ref < 2^30: the gathers double int32 indices (the loads would not need
  // it; one limit keeps fastrl/manifold/tsne/gradients.py's fallback rule).
  if (dim != 2 || eval_kl || n_ref >= (int64_t(1) << 30)) return {nullptr, "base"};
  const bool hw = gather == GatherMode::kHw;
  switch (kernel) {
#ifdef FASTRL_HAVE_AVX512
    case CpuKernel::kAvx512:
      return hw ? Attr2dLoop<PT>{isa_avx512::attractive2d_rows_hw, "avx512-hw"}
                : Attr2dLoop<PT>{isa_avx512::attractive2d_rows_loads, "avx512-scalar"};
#endif
#ifdef FASTRL_HAVE_AVX2
    case CpuKernel::kAvx2:
      return hw ? Attr2dLoop<PT>{isa_avx2::attractive2d_rows_hw, "avx2-hw"}
                : Attr2dLoop<PT>{isa_avx2::attractive2d_rows_loads, "avx2-scalar"};
#endif
    default: return {nullptr, "base"};
  }
}

}  // namespace

const char* tsne_attractive_loop(int64_t n_ref, int dim, bool eval_kl, CpuKernel kernel, GatherMode gather) {
  return simd_attractive2d<double>(n_ref, dim, eval_kl, kernel, gather).name;
}

// A_i = exaggeration * sum_j p_ij u_ij (y_i - y_j), u = 1 / (1 + d^2 / dof);
// KL part: sum p log(p / w), log w = dof * log u.
template <typename PT>
double tsne_attractive(const int64_t* indptr, const int32_t* indices, const PT* P,
                       const double* Y, const double* Yref, int64_t n, int64_t n_ref, int dim, double dof,
                       double exaggeration, bool eval_kl, double* out, int n_jobs, CpuKernel kernel,
                       GatherMode gather) {
  if (Attr2dFn<PT> fn = simd_attractive2d<PT>(n_ref, dim, eval_kl, kernel, gather).fn) {
    constexpr int64_t kRows = 256;
    const int64_t chunks = (n + kRows - 1) / kRows;
#pragma omp parallel for num_threads(tsne_threads(n_jobs, 8 * indptr[n])) schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; ++c)
      fn(indptr, indices, P, Y, Yref, c * kRows, std::min(n, (c + 1) * kRows), 1.0 / dof, exaggeration, out);
    return 0.0;
  }
  // Per-row KL terms summed serially afterwards: results do not depend on
  // the thread schedule (bitwise reproducible runs).
  std::vector<double> row_kl(eval_kl ? n : 0);
  double* rk = row_kl.data();
  if (dim == 2 && eval_kl)
    attractive_rows<2, true>(indptr, indices, P, Y, Yref, n, dim, dof, exaggeration, out, rk, n_jobs);
  else if (dim == 2)
    attractive_rows<2, false>(indptr, indices, P, Y, Yref, n, dim, dof, exaggeration, out, rk, n_jobs);
  else if (eval_kl)
    attractive_rows<0, true>(indptr, indices, P, Y, Yref, n, dim, dof, exaggeration, out, rk, n_jobs);
  else
    attractive_rows<0, false>(indptr, indices, P, Y, Yref, n, dim, dof, exaggeration, out, rk, n_jobs);
  double kl = 0.0;
  for (double v : row_kl) kl += v;
  return kl;
}

template double tsne_attractive<double>(const int64_t*, const int32_t*, const double*, const double*, const double*,
                                        int64_t, int64_t, int, double, double, bool, double*, int, CpuKernel,
                                        GatherMode);
template double tsne_attractive<float>(const int64_t*, const int32_t*, const float*, const double*, const double*,
                                       int64_t, int64_t, int, double, double, bool, double*, int, CpuKernel,
                                       GatherMode);

namespace {

inline int sign(double x) { return (x > 0) - (x < 0); }

// Lagrange basis of the 3 equispaced nodes at 1/6, 1/2, 5/6 of a unit box.
inline void lagrange3(double u, double* L) {
  const double a = 1.0 / 6, b = 0.5, c = 5.0 / 6;
  L[0] = (u - b) * (u - c) / ((a - b) * (a - c));
  L[1] = (u - a) * (u - c) / ((b - a) * (b - c));
  L[2] = (u - a) * (u - b) / ((c - a) * (c - b));
}

// Box index and the 3 basis weights of coordinate x on one axis.
inline int locate(double x, double lo, double box, int n_boxes, double* L) {
  double t = (x - lo) / box;
  int b = int(t);
  if (b < 0) b = 0;
  if (b >= n_boxes) b = n_boxes - 1;
  lagrange3(t - b, L);
  return b;
}

}  // namespace

// Spreading without per-thread grids: a point in box row b writes only node rows
// 3b..3b+2, so each thread owns a band of box rows (bands hold ~equal numbers
// of points), zeroes its band and spreads the points that fall in it; every
// thread reads all box rows, which is cheap next to the scatter. Thread count:
// a point costs ~64 operations per charge (locate, weights, 9 updates).
template <typename T>
void tsne_fft_spread(const double* Y, int64_t n, double lo, double h, int n_boxes,
                     const double* charges, int nc, T* grid, int n_jobs) {
  const int g = 3 * n_boxes;
  const int64_t gg = int64_t(g) * g;
  const double box = 3.0 * h;
  const int threads = std::max(1, std::min(tsne_threads(n_jobs, n * 64 * int64_t(nc)), n_boxes));
  std::vector<int32_t> brow(n);
  std::vector<int64_t> count(n_boxes + 1, 0);
  double L[3];
  for (int64_t i = 0; i < n; ++i) ++count[1 + (brow[i] = locate(Y[2 * i + 1], lo, box, n_boxes, L))];
  for (int b = 0; b < n_boxes; ++b) count[b + 1] += count[b];  // points in box rows < b
  std::vector<int> band(threads + 1, n_boxes);
  band[0] = 0;
  for (int t = 1, b = 0; t < threads; ++t) {
    while (b < n_boxes && count[b] * threads < n * t) ++b;
    band[t] = std::max(b, band[t - 1]);
  }
#pragma omp parallel num_threads(threads)
  {
#ifdef FASTRL_OPENMP
    const int tid = omp_get_thread_num();
#else
    const int tid = 0;
#endif
    const int b0 = band[tid], b1 = band[tid + 1];
    for (int c = 0; c < nc; ++c)
      std::fill(grid + c * gg + int64_t(3 * b0) * g, grid + c * gg + int64_t(3 * b1) * g, T(0));
    for (int64_t i = 0; i < n; ++i) {
      if (brow[i] < b0 || brow[i] >= b1) continue;
      double Lx[3], Ly[3];
      const int bx = locate(Y[2 * i], lo, box, n_boxes, Lx);
      const int by = locate(Y[2 * i + 1], lo, box, n_boxes, Ly);
      for (int b = 0; b < 3; ++b)
        for (int a = 0; a < 3; ++a) {
          const double w = Lx[a] * Ly[b];
          const int64_t node = int64_t(3 * by + b) * g + (3 * bx + a);
          for (int c = 0; c < nc; ++c) grid[c * gg + node] += T(w * charges[i * nc + c]);
        }
    }
  }
}

template <typename T>
void tsne_fft_gather(const double* Y, int64_t n, double lo, double h, int n_boxes,
                     const T* pot, int nc, int64_t ch_stride, int64_t row_stride, double* out, int n_jobs) {
  const double box = 3.0 * h;
#pragma omp parallel for num_threads(tsne_threads(n_jobs, n * 64 * int64_t(nc))) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    double Lx[3], Ly[3];
    const int bx = locate(Y[2 * i], lo, box, n_boxes, Lx);
    const int by = locate(Y[2 * i + 1], lo, box, n_boxes, Ly);
    for (int c = 0; c < nc; ++c) {
      const T* p = pot + c * ch_stride + int64_t(3 * by) * row_stride + 3 * bx;
      double s = 0.0;
      for (int b = 0; b < 3; ++b, p += row_stride)
        s += Ly[b] * (Lx[0] * double(p[0]) + Lx[1] * double(p[1]) + Lx[2] * double(p[2]));
      out[i * nc + c] = s;
    }
  }
}

template void tsne_fft_spread<float>(const double*, int64_t, double, double, int, const double*, int, float*, int);
template void tsne_fft_spread<double>(const double*, int64_t, double, double, int, const double*, int, double*, int);
template void tsne_fft_gather<float>(const double*, int64_t, double, double, int, const float*, int, int64_t, int64_t,
                                     double*, int);
template void tsne_fft_gather<double>(const double*, int64_t, double, double, int, const double*, int, int64_t,
                                      int64_t, double*, int);

void tsne_step(double* Y, double* update, double* gains, const double* grad, int64_t n,
               int dim, double lr, double momentum, double min_gain, double max_step_norm,
               bool center, int n_jobs) {
  const int threads = tsne_threads(n_jobs, n * int64_t(dim) * 8);
  // Column sums per fixed block of rows, added in block order: deterministic.
  const int64_t kBlock = 4096;
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(size_t(nblocks) * dim, 0.0);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t blk = 0; blk < nblocks; ++blk)
  for (int64_t i = blk * kBlock; i < std::min(n, (blk + 1) * kBlock); ++i) {
    double* mean = partial.data() + blk * dim;
    double* u = update + i * dim;
    double* gn = gains + i * dim;
    const double* gr = grad + i * dim;
    double norm2 = 0.0;
    for (int c = 0; c < dim; ++c) {
      const bool flipped = sign(u[c]) != sign(gr[c]);
      gn[c] = flipped ? gn[c] + 0.2 : gn[c] * 0.8 + min_gain;
      u[c] = momentum * u[c] - lr * gn[c] * gr[c];
      norm2 += u[c] * u[c];
    }
    if (max_step_norm > 0 && norm2 > max_step_norm * max_step_norm) {
      const double s = max_step_norm / std::sqrt(norm2);
      for (int c = 0; c < dim; ++c) u[c] *= s;
    }
    for (int c = 0; c < dim; ++c) {
      Y[i * dim + c] += u[c];
      mean[c] += Y[i * dim + c];
    }
  }
  if (!center) return;
  double mean[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t b = 0; b < nblocks; ++b)
    for (int c = 0; c < dim; ++c) mean[c] += partial[b * dim + c];
  for (int c = 0; c < dim; ++c) mean[c] /= double(n);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int c = 0; c < dim; ++c) Y[i * dim + c] -= mean[c];
}

}  // namespace fastrl
