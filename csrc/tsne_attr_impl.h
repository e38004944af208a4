// Attractive t-SNE forces of a 2-D embedding, one SIMD build per instruction
// set (included by tsne_attr_avx2.cpp / tsne_attr_avx512.cpp with
// FASTRL_ISA_NS and FASTRL_VBYTES set; the portable build is the scalar loop
// in tsne_forces.cpp).
//
// Row i: A_i = exaggeration * sum_e p_e u_e (y_i - y_j(e)), u = 1 / (1 + d^2 / dof)
// (and, when asked, its KL terms p log(p / w) with a lane-wise log, vlog),
// W edges at a time, in float64 (P is float64 or float32, converted on load),
// lane-wise; the lanes are summed once per row (the sum order differs from
// the scalar loop only by rounding). The
// neighbours' coordinates reach the lanes one of two ways (the GatherMode of
// csrc/cpu_features.h, same lanes, same results bit for bit):
// * kHw: hardware gathers (vgatherdpd; j doubled into an int32 index, so
//   Yref must have < 2^30 rows);
// * kScalar: one 16-byte load of (x_j, y_j) per edge, the pairs interleaved
//   into the x and y lanes by shuffles. Faster on AMD Zen 1-4 (1.5x on a
//   Zen 3, where vgatherdpd is microcoded, benchmarks/results/
//   tsne_attractive.json; 1.2-1.6x on a Zen 4, tsne_attractive_zen4.json).
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "tsne.h"

namespace fastrl {
namespace FASTRL_ISA_NS {

namespace {
typedef double vd __attribute__((vector_size(FASTRL_VBYTES)));  // GCC vector: operators are lane-wise
constexpr int W = FASTRL_VBYTES / 8;

// x, y coordinates of the W rows idx[0:W] of the [n, 2] array Y, by hardware gathers.
inline void gather_hw(const double* Y, const int32_t* idx, vd* x, vd* y) {
#if FASTRL_VBYTES == 64
  __m256i j = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx));
  j = _mm256_add_epi32(j, j);
  *x = vd(_mm512_i32gather_pd(j, Y, 8));
  *y = vd(_mm512_i32gather_pd(j, Y + 1, 8));
#else
  __m128i j = _mm_loadu_si128(reinterpret_cast<const __m128i*>(idx));
  j = _mm_add_epi32(j, j);
  *x = vd(_mm256_i32gather_pd(Y, j, 8));
  *y = vd(_mm256_i32gather_pd(Y + 1, j, 8));
#endif
}

inline __m128d load_xy(const double* Y, int32_t j) { return _mm_loadu_pd(Y + 2 * int64_t(j)); }

// The same lanes from scalar loads: v0 holds the (x, y) pairs of the even
// edges 0, 2, ... in its 128-bit slots, v1 those of the odd edges; the
// in-slot unpacks then give x = (x0, x1, x2, ...) and y = (y0, y1, y2, ...).
inline void gather_loads(const double* Y, const int32_t* idx, vd* x, vd* y) {
  const __m256d e0 = _mm256_insertf128_pd(_mm256_castpd128_pd256(load_xy(Y, idx[0])), load_xy(Y, idx[2]), 1);
  const __m256d o0 = _mm256_insertf128_pd(_mm256_castpd128_pd256(load_xy(Y, idx[1])), load_xy(Y, idx[3]), 1);
#if FASTRL_VBYTES == 64
  const __m256d e1 = _mm256_insertf128_pd(_mm256_castpd128_pd256(load_xy(Y, idx[4])), load_xy(Y, idx[6]), 1);
  const __m256d o1 = _mm256_insertf128_pd(_mm256_castpd128_pd256(load_xy(Y, idx[5])), load_xy(Y, idx[7]), 1);
  const __m512d ev = _mm512_insertf64x4(_mm512_castpd256_pd512(e0), e1, 1);
  const __m512d od = _mm512_insertf64x4(_mm512_castpd256_pd512(o0), o1, 1);
  *x = vd(_mm512_unpacklo_pd(ev, od));
  *y = vd(_mm512_unpackhi_pd(ev, od));
#else
  *x = vd(_mm256_unpacklo_pd(e0, o0));
  *y = vd(_mm256_unpackhi_pd(e0, o0));
#endif
}

// W affinities P[0:W] as doubles (float32 P: converted lane-wise).
inline vd load_p(const double* P) {
  vd p;
  std::memcpy(&p, P, sizeof(p));
  return p;
}

inline vd load_p(const float* P) {
  typedef float vf __attribute__((vector_size(FASTRL_VBYTES / 2)));
  vf p;
  std::memcpy(&p, P, sizeof(p));
  return __builtin_convertvector(p, vd);
}

inline double hsum(vd a) {
  double s = 0.0;
  for (int l = 0; l < W; ++l) s += a[l];
  return s;
}

typedef int64_t vi __attribute__((vector_size(FASTRL_VBYTES)));

// Natural log, lane-wise, for x > 0 (+inf gives +inf; x = 0 is masked by
// the caller): x = 2^e m with m in [sqrt(1/2), sqrt(2)), t = (m - 1) / (m + 1),
//   log m = 2 atanh t = 2 t (1 + t^2/3 + t^4/5 + ... + t^22/23)
// (|t| <= 0.1716: the first term left out is below 1e-17 relative), and
// log x = e ln2_hi + (e ln2_lo + log m). Within a few ulp of std::log.
inline vd vlog(vd x) {
  const vd tiny = x < 2.2250738585072014e-308 ? vd{} + 18014398509481984.0 : vd{} + 1.0;  // 2^54 for subnormals
  const vd xs = x * tiny;
  vi bits;
  std::memcpy(&bits, &xs, sizeof(bits));
  vi e = ((bits >> 52) & 0x7ff) - 1023;
  vi mb = (bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL;  // mantissa in [1, 2)
  vd m;
  std::memcpy(&m, &mb, sizeof(m));
  const vi big = m > 1.4142135623730951;  // lanes of all ones where m >= sqrt(2)
  m = big ? m * 0.5 : m;
  e -= big;  // big is -1 there
  const vd ef = __builtin_convertvector(e, vd) - (tiny > 1.0 ? vd{} + 54.0 : vd{});
  const vd t = (m - 1.0) / (m + 1.0), t2 = t * t;
  vd poly = vd{} + 1.0 / 23;
  poly = poly * t2 + 1.0 / 21;
  poly = poly * t2 + 1.0 / 19;
  poly = poly * t2 + 1.0 / 17;
  poly = poly * t2 + 1.0 / 15;
  poly = poly * t2 + 1.0 / 13;
  poly = poly * t2 + 1.0 / 11;
  poly = poly * t2 + 1.0 / 9;
  poly = poly * t2 + 1.0 / 7;
  poly = poly * t2 + 1.0 / 5;
  poly = poly * t2 + 1.0 / 3;
  const vd logm = 2.0 * t + 2.0 * t * t2 * poly;
  const vd r = ef * 0.6931471803691238 + (ef * 1.9082149292705877e-10 + logm);  // ln2 = hi + lo
  return x == __builtin_inf() ? x : r;
}

// Rows [r0, r1); with KL also row_kl[i] = sum_e p log(p / w), log w = -dof log(1 + d^2 / dof).
template <bool kHwGather, bool KL, typename PT>
void rows(const int64_t* indptr, const int32_t* indices, const PT* P, const double* Y, const double* Yref,
          int64_t r0, int64_t r1, double inv_dof, double exaggeration, double* out, double* row_kl) {
  const double dof = 1.0 / inv_dof;
  for (int64_t i = r0; i < r1; ++i) {
    const double xi = Y[2 * i], yi = Y[2 * i + 1];
    vd ax = vd{}, ay = vd{}, akl = vd{};
    int64_t e = indptr[i];
    const int64_t end = indptr[i + 1];
    for (; e + W <= end; e += W) {
      vd xj, yj;
      if (kHwGather)
        gather_hw(Yref, indices + e, &xj, &yj);
      else
        gather_loads(Yref, indices + e, &xj, &yj);
      const vd p = load_p(P + e);
      const vd dx = xi - xj, dy = yi - yj;
      const vd q = 1.0 + (dx * dx + dy * dy) * inv_dof;
      const vd pu = p / q;
      ax += pu * dx;
      ay += pu * dy;
      if (KL) {
        const vd pos = p > 0.0 ? p : vd{} + 1.0;  // p = 0 adds nothing (and takes no log of 0)
        akl += p > 0.0 ? p * (vlog(pos) + dof * vlog(q)) : vd{};
      }
    }
    double sx = hsum(ax), sy = hsum(ay), kl = KL ? hsum(akl) : 0.0;
    for (; e < end; ++e) {
      const double* yj = Yref + 2 * int64_t(indices[e]);
      const double dx = xi - yj[0], dy = yi - yj[1];
      const double q = 1.0 + (dx * dx + dy * dy) * inv_dof;
      const double p = double(P[e]), pu = p / q;
      sx += pu * dx;
      sy += pu * dy;
      if (KL && p > 0) kl += p * (std::log(p) + dof * std::log(q));
    }
    out[2 * i] = exaggeration * sx;
    out[2 * i + 1] = exaggeration * sy;
    if (KL) row_kl[i] = kl;
  }
}
}  // namespace

// One symbol per gather mode and P dtype (declared in csrc/tsne.h).
#define FASTRL_ATTR2D_DEF(name, hw, PT)                                                                      \
  void name(const int64_t* indptr, const int32_t* indices, const PT* P, const double* Y, const double* Yref, \
            int64_t r0, int64_t r1, double inv_dof, double exaggeration, double* out, double* row_kl) {    \
    if (row_kl)                                                                                            \
      rows<hw, true>(indptr, indices, P, Y, Yref, r0, r1, inv_dof, exaggeration, out, row_kl);             \
    else                                                                                                   \
      rows<hw, false>(indptr, indices, P, Y, Yref, r0, r1, inv_dof, exaggeration, out, nullptr);           \
  }
FASTRL_ATTR2D_DEF(attractive2d_rows_hw, true, double)
FASTRL_ATTR2D_DEF(attractive2d_rows_hw, true, float)
FASTRL_ATTR2D_DEF(attractive2d_rows_loads, false, double)
FASTRL_ATTR2D_DEF(attractive2d_rows_loads, false, float)
#undef FASTRL_ATTR2D_DEF

}  // namespace FASTRL_ISA_NS
}  // namespace fastrl
