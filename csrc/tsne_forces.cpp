// t-SNE gradient pieces that are plain loops over points: attractive forces
// over sparse P, FFT-interpolation spreading / gathering, and the
// gains-and-momentum update step.
#include <algorithm>
#include <cmath>
#include <complex>
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

// The SIMD builds of the 2-D case (csrc/tsne_attr_impl.h), the KL
// evaluation (every 50 iterations) included; other dimensions take the loop above.
template <typename PT>
using Attr2dFn = void (*)(const int64_t*, const int32_t*, const PT*, const double*, const double*, int64_t,
                          int64_t, double, double, double*, double*);

template <typename PT>
struct Attr2dLoop {
  Attr2dFn<PT> fn;   // null: the portable loop
  const char* name;  // as tsne_attractive_loop reports it
};

template <typename PT>
Attr2dLoop<PT> simd_attractive2d(int64_t n_ref, int dim, bool eval_kl, CpuKernel kernel, GatherMode gather) {
  // n_ref < 2^30: the gathers double int32 indices (the loads would not need
  // it; one limit keeps fastrl/manifold/tsne/gradients.py's fallback rule).
  if (dim != 2 || n_ref >= (int64_t(1) << 30)) return {nullptr, "base"};
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
  // Per-row KL terms summed serially afterwards: results do not depend on
  // the thread schedule (bitwise reproducible runs).
  std::vector<double> row_kl(eval_kl ? n : 0);
  double* rk = row_kl.data();
  if (Attr2dFn<PT> fn = simd_attractive2d<PT>(n_ref, dim, eval_kl, kernel, gather).fn) {
    constexpr int64_t kRows = 256;
    const int64_t chunks = (n + kRows - 1) / kRows;
#pragma omp parallel for num_threads(tsne_threads(n_jobs, 8 * indptr[n])) schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; ++c)
      fn(indptr, indices, P, Y, Yref, c * kRows, std::min(n, (c + 1) * kRows), 1.0 / dof, exaggeration, out,
         eval_kl ? rk : nullptr);
  } else if (dim == 2 && eval_kl)
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

// One axis of the interpolation grid: boxes of width 3h from lo, 3 equispaced
// Lagrange nodes per box at 1/6, 1/2, 5/6 of its width. With u the position in
// the box (0..1) and d_a = u - 1/6, d_b = u - 1/2, d_c = u - 5/6:
//   L0 = d_b d_c / ((1/6 - 1/2)(1/6 - 5/6)) = 4.5 d_b d_c,
//   L1 = d_a d_c / ((1/2 - 1/6)(1/2 - 5/6)) = -9 d_a d_c,
//   L2 = d_a d_b / ((5/6 - 1/6)(5/6 - 1/2)) = 4.5 d_a d_b
// (exact constants: one multiply per factor, no division per point).
struct GridAxis {
  double lo, inv_box;
  int n_boxes;
  GridAxis(double lo_, double h, int n_boxes_) : lo(lo_), inv_box(1.0 / (3.0 * h)), n_boxes(n_boxes_) {}
  // Box index of x (clamped to the grid) and its 3 weights.
  inline int locate(double x, double* L) const {
    const double t = (x - lo) * inv_box;
    int b = int(t);
    b = b < 0 ? 0 : (b >= n_boxes ? n_boxes - 1 : b);
    const double u = t - b;
    const double da = u - 1.0 / 6.0, db = u - 0.5, dc = u - 5.0 / 6.0;
    L[0] = 4.5 * db * dc;
    L[1] = -9.0 * da * dc;
    L[2] = 4.5 * da * db;
    return b;
  }
  inline int box(double x) const {
    const int b = int((x - lo) * inv_box);
    return b < 0 ? 0 : (b >= n_boxes ? n_boxes - 1 : b);
  }
};

// Charges of point i: the given [n, nc] rows, or a unit charge (NC == 1, q == nullptr).
template <int NC>
struct Charges {
  const double* q;  // [n, nc] or nullptr
  int nc;
  inline void get(int64_t i, double* out) const {
    if (NC == 1 && !q) {
      out[0] = 1.0;
    } else {
      for (int c = 0; c < (NC ? NC : nc); ++c) out[c] = q[i * nc + c];
    }
  }
};

// Adds point i's 9 node weights times its charges to the grid planes.
template <int NC, typename T>
inline void spread_point(const GridAxis& ax, const double* y, const double* q, int nc, int64_t ld, int64_t gg,
                         T* grid) {
  double Lx[3], Ly[3];
  const int bx = ax.locate(y[0], Lx);
  const int by = ax.locate(y[1], Ly);
  const int ncc = NC ? NC : nc;
  for (int b = 0; b < 3; ++b) {
    T* row = grid + int64_t(3 * by + b) * ld + 3 * bx;
    for (int a = 0; a < 3; ++a) {
      const double w = Lx[a] * Ly[b];
      for (int c = 0; c < ncc; ++c) row[c * gg + a] += T(w * q[c]);
    }
  }
}

template <int NC, typename T>
void spread_bands(const double* Y, int64_t n, const GridAxis& ax, const Charges<NC>& ch, int nc, T* grid,
                  int64_t ld, int threads) {
  const int n_boxes = ax.n_boxes, g = 3 * n_boxes;
  const int64_t gg = int64_t(g) * ld;
  // Pass 1 (parallel): each point's box row, and per-thread counts per box row.
  std::vector<int32_t> brow(n);
  std::vector<int64_t> count(size_t(threads) * (n_boxes + 1), 0);
  std::vector<int> band(threads + 1, n_boxes);
  band[0] = 0;
#pragma omp parallel num_threads(threads)
  {
#ifdef FASTRL_OPENMP
    const int tid = omp_get_thread_num();
#else
    const int tid = 0;
#endif
    int64_t* cnt = count.data() + size_t(tid) * (n_boxes + 1);
    const int64_t i0 = n * tid / threads, i1 = n * (tid + 1) / threads;
    for (int64_t i = i0; i < i1; ++i) ++cnt[1 + (brow[i] = ax.box(Y[2 * i + 1]))];
#pragma omp barrier
#pragma omp single
    {
      // Bands of box rows holding ~equal numbers of points.
      for (int t = 1; t < threads; ++t)
        for (int b = 0; b <= n_boxes; ++b) count[b] += count[size_t(t) * (n_boxes + 1) + b];
      for (int b = 0; b < n_boxes; ++b) count[b + 1] += count[b];  // points in box rows < b
      for (int t = 1, b = 0; t < threads; ++t) {
        while (b < n_boxes && count[b] * threads < n * t) ++b;
        band[t] = std::max(b, band[t - 1]);
      }
    }
    // Pass 2: a point in box row b writes only node rows 3b..3b+2, so each
    // thread zeroes and fills its band's rows, adding its points in point
    // order: the same sums, bit for bit, whatever the thread count.
    const int b0 = band[tid], b1 = band[tid + 1];
    for (int c = 0; c < nc; ++c)
      std::fill(grid + c * gg + int64_t(3 * b0) * ld, grid + c * gg + int64_t(3 * b1) * ld, T(0));
    double q[8];
    for (int64_t i = 0; i < n; ++i) {
      if (brow[i] < b0 || brow[i] >= b1) continue;
      ch.get(i, q);
      spread_point<NC>(ax, Y + 2 * i, q, nc, ld, gg, grid);
    }
  }
}

}  // namespace

// Spreading without per-thread grids: each thread owns a band of box rows
// (see spread_bands); every thread scans the box rows of all points, which is
// cheap next to the scatter. Thread count: a point costs ~64 operations per
// charge (locate, weights, 9 updates).
template <typename T>
void tsne_fft_spread(const double* Y, int64_t n, double lo, double h, int n_boxes,
                     const double* charges, int nc, T* grid, int64_t ld, int n_jobs) {
  const int threads = std::max(1, std::min(tsne_threads(n_jobs, n * 64 * int64_t(nc)), n_boxes));
  const GridAxis ax(lo, h, n_boxes);
  if (!charges) {  // unit charges: the one grid of t-SNE's repulsion
    const Charges<1> ch{nullptr, 1};
    spread_bands<1>(Y, n, ax, ch, 1, grid, ld, threads);
  } else if (nc == 3) {
    const Charges<3> ch{charges, 3};
    spread_bands<3>(Y, n, ax, ch, 3, grid, ld, threads);
  } else {
    const Charges<0> ch{charges, nc};
    spread_bands<0>(Y, n, ax, ch, nc, grid, ld, threads);
  }
}

template <typename T>
void tsne_fft_gather(const double* Y, int64_t n, double lo, double h, int n_boxes,
                     const T* pot, int nc, int64_t ch_stride, int64_t row_stride, double* out, int n_jobs) {
  const GridAxis ax(lo, h, n_boxes);
#pragma omp parallel for num_threads(tsne_threads(n_jobs, n * 64 * int64_t(nc))) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    double Lx[3], Ly[3], phi[8];
    const int bx = ax.locate(Y[2 * i], Lx);
    const int by = ax.locate(Y[2 * i + 1], Ly);
    const T* base = pot + int64_t(3 * by) * row_stride + 3 * bx;
    for (int c = 0; c < nc; ++c) {
      const T* p = base + c * ch_stride;
      double s = 0.0;
      for (int b = 0; b < 3; ++b, p += row_stride)
        s += Ly[b] * (Lx[0] * double(p[0]) + Lx[1] * double(p[1]) + Lx[2] * double(p[2]));
      phi[c] = s;
    }
    for (int c = 0; c < nc; ++c) out[i * nc + c] = phi[c];
  }
}

template void tsne_fft_spread<float>(const double*, int64_t, double, double, int, const double*, int, float*,
                                     int64_t, int);
template void tsne_fft_spread<double>(const double*, int64_t, double, double, int, const double*, int, double*,
                                      int64_t, int);

// Spectral step of the one-grid convolution. With S the half spectrum (rFFT
// along the last axis, M x (M/2 + 1)) of the charge-1 grid, the odd kernels
// K_x = o_x u^(dof+1), K_y = o_y u^(dof+1) have imaginary spectra i I_x, i I_y
// and K_z = u^dof a real one:
//   out_c = i I_c S  (c = x, y: the spectra of the potentials (phi_x, phi_y)),
// and Parseval gives sum_{p,q} (K_z * grid)[p, q] grid[p, q] =
// sum_f |S(f)|^2 K_z(f) / M^2 over the full spectrum: interior
// half-spectrum columns count twice (the column M/2 of an even M once). Rows
// are summed one by one in float64 and added in row order: the same sum
// whatever the thread count.
template <typename T>
double tsne_fft_spectral(const std::complex<T>* spec, int64_t m, int64_t mh, const T* fk, std::complex<T>* out,
                         int n_jobs) {
  const int64_t plane = m * mh;
  std::vector<double> rows(m, 0.0);
  const bool last_once = 2 * (mh - 1) == m;
#pragma omp parallel for num_threads(tsne_threads(n_jobs, plane * 16)) schedule(static)
  for (int64_t r = 0; r < m; ++r) {
    const T* ix = fk + r * mh;
    const T* iy = fk + plane + r * mh;
    const T* kz = fk + 2 * plane + r * mh;
    const T* s = reinterpret_cast<const T*>(spec + r * mh);
    T* ox = reinterpret_cast<T*>(out + r * mh);
    T* oy = reinterpret_cast<T*>(out + plane + r * mh);
    double acc = 0.0;
    for (int64_t f = 0; f < mh; ++f) {
      const double re = s[2 * f], im = s[2 * f + 1];
      const double w = (f == 0 || (last_once && f == mh - 1)) ? 1.0 : 2.0;
      acc += w * (re * re + im * im) * double(kz[f]);
    }
    rows[r] = acc;
#pragma omp simd
    for (int64_t f = 0; f < mh; ++f) {  // i I (re + i im) = -I im + i I re
      const T re = s[2 * f], im = s[2 * f + 1];
      ox[2 * f] = -ix[f] * im;
      ox[2 * f + 1] = ix[f] * re;
      oy[2 * f] = -iy[f] * im;
      oy[2 * f + 1] = iy[f] * re;
    }
  }
  double total = 0.0;
  for (int64_t r = 0; r < m; ++r) total += rows[r];
  return total / (double(m) * double(m));
}

template double tsne_fft_spectral<float>(const std::complex<float>*, int64_t, int64_t, const float*,
                                         std::complex<float>*, int);
template double tsne_fft_spectral<double>(const std::complex<double>*, int64_t, int64_t, const double*,
                                          std::complex<double>*, int);
template void tsne_fft_gather<float>(const double*, int64_t, double, double, int, const float*, int, int64_t, int64_t,
                                     double*, int);
template void tsne_fft_gather<double>(const double*, int64_t, double, double, int, const double*, int, int64_t,
                                      int64_t, double*, int);

// The element pass is branch-free (the sign test is data-dependent, ~half the
// elements flip in late iterations: a branch there mispredicts) and
// vectorises; the per-row clipping and centring follow over the same block.
void tsne_step(double* Y, double* update, double* gains, const double* grad, int64_t n,
               int dim, double lr, double momentum, double min_gain, double max_step_norm,
               bool center, int n_jobs) {
  const int threads = tsne_threads(n_jobs, n * int64_t(dim) * 64);
  // Column sums per fixed block of rows, added in block order: deterministic.
  const int64_t kBlock = 4096;
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(size_t(nblocks) * dim, 0.0);
  const double clip2 = max_step_norm * max_step_norm;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t i0 = blk * kBlock, i1 = std::min(n, (blk + 1) * kBlock);
    double* u = update + i0 * dim;
    double* gn = gains + i0 * dim;
    const double* gr = grad + i0 * dim;
    const int64_t len = (i1 - i0) * dim;
#pragma omp simd
    for (int64_t e = 0; e < len; ++e) {
      const double ue = u[e], ge = gr[e], g0 = gn[e];
      const bool flipped = ((ue > 0) - (ue < 0)) != ((ge > 0) - (ge < 0));
      const double gnew = flipped ? g0 + 0.2 : g0 * 0.8 + min_gain;
      gn[e] = gnew;
      u[e] = momentum * ue - lr * gnew * ge;
    }
    double* mean = partial.data() + blk * dim;
    for (int64_t i = i0; i < i1; ++i) {
      double* ui = update + i * dim;
      if (max_step_norm > 0) {
        double norm2 = 0.0;
        for (int c = 0; c < dim; ++c) norm2 += ui[c] * ui[c];
        if (norm2 > clip2) {
          const double s = max_step_norm / std::sqrt(norm2);
          for (int c = 0; c < dim; ++c) ui[c] *= s;
        }
      }
      for (int c = 0; c < dim; ++c) {
        Y[i * dim + c] += ui[c];
        mean[c] += Y[i * dim + c];
      }
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
