// Attractive t-SNE forces of a 2-D embedding, one SIMD build per instruction
// set (included by tsne_attr_avx2.cpp / tsne_attr_avx512.cpp with
// FASTRL_ISA_NS and FASTRL_VBYTES set; the portable build is the scalar loop
// in tsne_forces.cpp).
//
// Row i: A_i = exaggeration * sum_e p_e u_e (y_i - y_j(e)), u = 1 / (1 + d^2 / dof),
// W edges at a time: the neighbours' coordinates are gathered (j doubled into
// an int32 index, so Yref must have < 2^30 rows), the rest is lane-wise; the
// lanes are summed once per row (the sum order differs from the scalar loop
// only by rounding).
#include <immintrin.h>

#include <cstdint>

#include "tsne.h"

namespace fastrl {
namespace FASTRL_ISA_NS {

namespace {
#if FASTRL_VBYTES == 64
using vd = __m512d;
constexpr int W = 8;
inline vd set1(double x) { return _mm512_set1_pd(x); }
inline vd zero() { return _mm512_setzero_pd(); }
inline vd loadu(const double* p) { return _mm512_loadu_pd(p); }
inline vd fmadd(vd a, vd b, vd c) { return _mm512_fmadd_pd(a, b, c); }
inline vd sub(vd a, vd b) { return _mm512_sub_pd(a, b); }
inline vd mul(vd a, vd b) { return _mm512_mul_pd(a, b); }
inline vd div(vd a, vd b) { return _mm512_div_pd(a, b); }
inline double hsum(vd a) { return _mm512_reduce_add_pd(a); }
// coordinates c of the W rows indices[0:W] of the [n, 2] array Y
inline void gather2(const double* Y, const int32_t* idx, vd* x, vd* y) {
  __m256i j = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx));
  j = _mm256_add_epi32(j, j);
  *x = _mm512_i32gather_pd(j, Y, 8);
  *y = _mm512_i32gather_pd(j, Y + 1, 8);
}
#else
using vd = __m256d;
constexpr int W = 4;
inline vd set1(double x) { return _mm256_set1_pd(x); }
inline vd zero() { return _mm256_setzero_pd(); }
inline vd loadu(const double* p) { return _mm256_loadu_pd(p); }
inline vd fmadd(vd a, vd b, vd c) { return _mm256_fmadd_pd(a, b, c); }
inline vd sub(vd a, vd b) { return _mm256_sub_pd(a, b); }
inline vd mul(vd a, vd b) { return _mm256_mul_pd(a, b); }
inline vd div(vd a, vd b) { return _mm256_div_pd(a, b); }
inline double hsum(vd a) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
inline void gather2(const double* Y, const int32_t* idx, vd* x, vd* y) {
  __m128i j = _mm_loadu_si128(reinterpret_cast<const __m128i*>(idx));
  j = _mm_add_epi32(j, j);
  *x = _mm256_i32gather_pd(Y, j, 8);
  *y = _mm256_i32gather_pd(Y + 1, j, 8);
}
#endif
}  // namespace

void attractive2d_rows(const int64_t* indptr, const int32_t* indices, const double* P, const double* Y,
                       const double* Yref, int64_t r0, int64_t r1, double inv_dof, double exaggeration,
                       double* out) {
  const vd one = set1(1.0), vinv = set1(inv_dof);
  for (int64_t i = r0; i < r1; ++i) {
    const double xi = Y[2 * i], yi = Y[2 * i + 1];
    const vd vxi = set1(xi), vyi = set1(yi);
    vd ax = zero(), ay = zero();
    int64_t e = indptr[i];
    const int64_t end = indptr[i + 1];
    for (; e + W <= end; e += W) {
      vd xj, yj;
      gather2(Yref, indices + e, &xj, &yj);
      const vd dx = sub(vxi, xj), dy = sub(vyi, yj);
      const vd u = div(one, fmadd(fmadd(dx, dx, mul(dy, dy)), vinv, one));
      const vd pu = mul(loadu(P + e), u);
      ax = fmadd(pu, dx, ax);
      ay = fmadd(pu, dy, ay);
    }
    double sx = hsum(ax), sy = hsum(ay);
    for (; e < end; ++e) {
      const double* yj = Yref + 2 * int64_t(indices[e]);
      const double dx = xi - yj[0], dy = yi - yj[1];
      const double pu = P[e] / (1.0 + (dx * dx + dy * dy) * inv_dof);
      sx += pu * dx;
      sy += pu * dy;
    }
    out[2 * i] = exaggeration * sx;
    out[2 * i + 1] = exaggeration * sy;
  }
}

}  // namespace FASTRL_ISA_NS
}  // namespace fastrl
