// t-SNE kernels: the narrow C++ contract (contiguous arrays in, output arrays
// passed in, n_jobs). Embeddings are float64 row-major [n, dim]; sparse P is
// CSR with int64 indptr, int32 column indices and float64 values (float32
// also, in tsne_attractive).
//
// Gradient convention (as openTSNE / FIt-SNE): the functions return the KL
// gradient divided by 4, split into an attractive part
//   A_i = sum_j p_ij u_ij (y_i - y_j)
// and an unnormalised repulsive part
//   R_i = sum_{j != i} w_ij u_ij (y_i - y_j),   Z = sum_{i != j} w_ij,
// where w_ij = (1 + d_ij^2 / dof)^(-dof) is the output kernel and
// u_ij = (1 + d_ij^2 / dof)^(-1); then dKL/dy_i / 4 = A_i - R_i / Z.
#pragma once
#include <algorithm>
#include <complex>
#include <cstdint>
#include <functional>
#include <utility>

#include "common.h"
#include "cpu_features.h"

namespace fastrl {

// Threads for a loop of `work` elementary operations: one thread per ~1M
// operations, at most resolve_threads(n_jobs). Small loops stay serial, which
// avoids fork/join costs that dominate on busy or oversubscribed machines.
inline int tsne_threads(int n_jobs, int64_t work) {
  const int64_t want = std::max<int64_t>(1, work >> 20);
  return int(std::min<int64_t>(resolve_threads(n_jobs), want));
}

// Perplexity calibration: for each row i of the kNN distances D [n, k] (true
// distances, self excluded) find beta_i with perplexity exp(H(P_i)) = perplexity,
// P_ij = exp(-beta_i d_ij^2) / sum_j exp(-beta_i d_ij^2). Writes P [n, k] and
// beta [n]. Returns the number of rows that missed the tolerance.
int64_t tsne_perplexity(const float* D, int64_t n, int k, double perplexity,
                        double tol, int max_iter, double* P, double* beta, int n_jobs);

// Symmetrisation (P + P^T) / (2 n) of the conditional kNN affinities
// (nbr [n, k], Pc [n, k]) as CSR with sorted columns, values computed in
// float64 and stored as T. One transpose of the graph serves two passes:
// the first fills indptr [n + 1], then alloc(nnz) returns the indices [nnz]
// and data [nnz] the second writes (called once, from the calling thread).
template <typename T>
using SymAlloc = std::function<std::pair<int32_t*, T*>(int64_t)>;
// nbr: int64 or int32 ids (int32: half the bytes of the graph held while P is built);
// Pc: float64, or float32 (V) where P is stored in float32 anyway.
template <typename T, typename I, typename V>
void tsne_symmetrize(const I* nbr, const V* Pc, int64_t n, int k, int64_t* indptr,
                     const SymAlloc<T>& alloc, int n_jobs);

// Attractive forces out[i] = exaggeration * A_i, rows of P against the points
// Yref (Yref == Y for a plain fit). Returns sum_ij p_ij log(p_ij / w_ij) if
// eval_kl (KL = that + log Z when P sums to 1), else 0. P (PT = double or
// float: half the bytes streamed per edge) is read as is; all arithmetic and
// sums are float64.
// n_ref: rows of Yref. The 2-D case (with or without KL) runs a SIMD build when
// `kernel` (csrc/cpu_features.h) is avx2 or avx512, its lanes filled by
// hardware gathers or scalar loads as `gather` says.
template <typename PT>
double tsne_attractive(const int64_t* indptr, const int32_t* indices, const PT* P,
                       const double* Y, const double* Yref, int64_t n, int64_t n_ref, int dim, double dof,
                       double exaggeration, bool eval_kl, double* out, int n_jobs, CpuKernel kernel,
                       GatherMode gather = GatherMode::kHw);

// The loop tsne_attractive runs for these arguments: "avx2-hw",
// "avx2-scalar", "avx512-hw", "avx512-scalar" (SIMD build and how it loads
// the neighbours) or "base" (the portable scalar loop).
const char* tsne_attractive_loop(int64_t n_ref, int dim, bool eval_kl, CpuKernel kernel, GatherMode gather);

// The SIMD row loops (csrc/tsne_attr_impl.h): rows [r0, r1), 2-D, and the
// rows' KL terms where row_kl (the last argument) is not null; _hw gathers
// the neighbours' coordinates, _loads loads them one by one.
#define FASTRL_ATTR2D_DECL(name, PT)                                                                           \
  void name(const int64_t*, const int32_t*, const PT*, const double*, const double*, int64_t, int64_t, double, \
            double, double*, double*);
#define FASTRL_ATTR2D_DECLS(ns)                      \
  namespace ns {                                     \
  FASTRL_ATTR2D_DECL(attractive2d_rows_hw, double)    \
  FASTRL_ATTR2D_DECL(attractive2d_rows_hw, float)     \
  FASTRL_ATTR2D_DECL(attractive2d_rows_loads, double) \
  FASTRL_ATTR2D_DECL(attractive2d_rows_loads, float)  \
  }
#ifdef FASTRL_HAVE_AVX2
FASTRL_ATTR2D_DECLS(isa_avx2)
#endif
#ifdef FASTRL_HAVE_AVX512
FASTRL_ATTR2D_DECLS(isa_avx512)
#endif
#undef FASTRL_ATTR2D_DECLS
#undef FASTRL_ATTR2D_DECL

// Barnes-Hut repulsion (dim == 2, quadtree over Yref): out[i] = R_i for each
// query point Y[i]; zsum[i] = sum_j w_ij (may be null). If same, Y is Yref and
// the pair (i, i) is skipped. Returns sum_i zsum[i]. theta = 0 is exact.
double tsne_bh_repulsive(const double* Yref, int64_t n_ref, const double* Y, int64_t n,
                         bool same, double theta, double dof, double* out, double* zsum,
                         int n_jobs);

// FFT-interpolation helpers (dim == 2): a uniform grid of g = 3 * n_boxes nodes
// per axis, node t at lo + (t + 0.5) * h, Lagrange interpolation with the 3
// nodes of each point's box (box width 3h).
// Spread: grid [nc, g, ld] (ld >= g; zeroed here, the padding columns g..ld
// included) += L(y_i) * charges[i, c]; T is the grid's type (float32 feeds
// the single-precision transforms directly).
// charges == nullptr: unit charges (nc == 1), the one grid of t-SNE's repulsion.
template <typename T>
void tsne_fft_spread(const double* Y, int64_t n, double lo, double h, int n_boxes,
                     const double* charges, int nc, T* grid, int64_t ld, int n_jobs);
// Spectral step of the one-grid repulsion: spec [m, mh] (half spectrum of
// the charge-1 grid), fk [3, m, mh] (I_x, I_y: the imaginary spectra of the
// odd kernels; K_z: the real one of u^dof) -> out [2, m, mh] = i I_c spec;
// returns sum_f |spec(f)|^2 K_z(f) / m^2 over the full spectrum (Parseval).
template <typename T>
double tsne_fft_spectral(const std::complex<T>* spec, int64_t m, int64_t mh, const T* fk, std::complex<T>* out,
                         int n_jobs);
// Gather: phi[i, c] = sum over the 9 nodes L(y_i) * pot[c, node], node (r, s)
// of channel c at pot[c * ch_stride + r * row_stride + s] (a view of a padded
// inverse transform, read in place). out [n, nc] = phi.
template <typename T>
void tsne_fft_gather(const double* Y, int64_t n, double lo, double h, int n_boxes,
                     const T* pot, int nc, int64_t ch_stride, int64_t row_stride, double* out, int n_jobs);

// One gradient-descent step with gains and momentum (openTSNE's rule):
// gains += 0.2 where sign(grad) != sign(update), else gains = 0.8 gains + min_gain;
// update = momentum update - lr gains grad, clipped to max_step_norm per row
// (if > 0); Y += update; then Y is centred if center.
void tsne_step(double* Y, double* update, double* gains, const double* grad, int64_t n,
               int dim, double lr, double momentum, double min_gain, double max_step_norm,
               bool center, int n_jobs);

}  // namespace fastrl
