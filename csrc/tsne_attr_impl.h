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
#include <cstring>

#include "tsne.h"

namespace fastrl {
namespace FASTRL_ISA_NS {

namespace {
typedef double vd __attribute__((vector_size(FASTRL_VBYTES)));  // GCC vector: operators are lane-wise
constexpr int W = FASTRL_VBYTES / 8;

// x, y coordinates of the W rows indices[0:W] of the [n, 2] array Y.
inline void gather2(const double* Y, const int32_t* idx, vd* x, vd* y) {
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

inline double hsum(vd a) {
  double s = 0.0;
  for (int l = 0; l < W; ++l) s += a[l];
  return s;
}
}  // namespace

void attractive2d_rows(const int64_t* indptr, const int32_t* indices, const double* P, const double* Y,
                       const double* Yref, int64_t r0, int64_t r1, double inv_dof, double exaggeration,
                       double* out) {
  for (int64_t i = r0; i < r1; ++i) {
    const double xi = Y[2 * i], yi = Y[2 * i + 1];
    vd ax = vd{}, ay = vd{};
    int64_t e = indptr[i];
    const int64_t end = indptr[i + 1];
    for (; e + W <= end; e += W) {
      vd xj, yj, p;
      gather2(Yref, indices + e, &xj, &yj);
      std::memcpy(&p, P + e, sizeof(p));
      const vd dx = xi - xj, dy = yi - yj;
      const vd pu = p / (1.0 + (dx * dx + dy * dy) * inv_dof);
      ax += pu * dx;
      ay += pu * dy;
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
