// Register-blocked distance tile with a fused top-k epilogue. Included by one
// translation unit per instruction set; FASTRL_ISA_NS names the namespace,
// FASTRL_VBYTES the native vector width (64 zmm, 32 ymm, 16 xmm) and
// FASTRL_MR / FASTRL_NP the row and panel tile sizes for that ISA.
//
//   acc[r][p] = sum_d q[r, d] * X[panel p][d][0:16]          (MR x NP*16 tile)
//   score     = |x|^2 - 2 acc
//   if any(score < heap_r.top()) -> scalar insert into the bounded max-heap
//
// Accumulators are native vectors (a 16-float panel row is 1 zmm, 2 ymm or 4
// xmm), so the whole MR x NP*16 tile stays in registers: AVX2 6x16 = 12 ymm,
// AVX-512 8x32 = 16 zmm, SSE2 2x16 = 8 xmm. The score tile never leaves
// registers unless a lane beats its row threshold, which after the first few
// panels is rare, so the scan runs at GEMM speed. The index is walked in
// blocks of panels sized to stay in L2 while every query row tile passes.
#include <cstring>
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif
#include "knn_tile.h"

namespace fastrl {
namespace FASTRL_ISA_NS {

constexpr int VB = FASTRL_VBYTES;
constexpr int VL = VB / 4;            // floats per native vector
constexpr int L = kPanel / VL;        // native vectors per panel row
constexpr int MR = FASTRL_MR;
constexpr int NP = FASTRL_NP;
typedef float vf __attribute__((vector_size(VB)));
constexpr int64_t kL2Budget = 256 * 1024;  // bytes of packed index per block

// Non-zero when any lane of a < b.
static inline bool any_less(vf a, vf b) {
#if defined(__AVX512F__) && FASTRL_VBYTES == 64
  return _mm512_cmp_ps_mask(reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b), _CMP_LT_OQ) != 0;
#elif defined(__AVX__) && FASTRL_VBYTES == 32
  return _mm256_movemask_ps(_mm256_cmp_ps(reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b), _CMP_LT_OQ)) != 0;
#elif defined(__SSE__)
  return _mm_movemask_ps(_mm_cmplt_ps(reinterpret_cast<__m128>(a), reinterpret_cast<__m128>(b))) != 0;
#else  // portable (aarch64, arm64 macOS): lane-wise GCC/Clang vector compare
  for (int l = 0; l < VL; ++l)
    if (a[l] < b[l]) return true;
  return false;
#endif
}

static inline void offer(const vf* s, int64_t base, int64_t self_id, HeapView& h) {
  float tmp[kPanel];
  std::memcpy(tmp, s, sizeof(tmp));
  for (int j = 0; j < kPanel; ++j) {
    if (tmp[j] < h.top() && base + j != self_id) h.replace_top(tmp[j], base + j);
  }
}

int row_tile() { return MR; }

// Column offers of one native vector of scores: row_id's scores s against
// the VL slots c0.. (their heaps' roots in tops).
static inline void offer_cols(vf s, int64_t c0, int64_t row_id, const SymCols& cols) {
  float tmp[VL];
  std::memcpy(tmp, &s, sizeof(tmp));
  for (int l = 0; l < VL; ++l) {
    if (tmp[l] < cols.tops[c0 + l]) {
      HeapView& h = cols.heaps[c0 + l];
      h.replace_top(tmp[l], row_id);
      cols.tops[c0 + l] = h.top();
    }
  }
}

// Scores of `nr` rows against `np` (<= NP) panels starting at p; offers them
// (SYM: to the columns' heaps too).
template <int NPT, bool SYM>
static inline void tile(const float* q, int64_t D, int64_t r0, int64_t m, int64_t p,
                        const int64_t* self_ids, const PackedIndex& X, HeapView* heaps, const SymCols* cols,
                        int64_t row_base) {
  const int64_t panel_stride = D * kPanel;
  vf acc[MR][NPT * L];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < NPT * L; ++t) acc[r][t] = vf{};
  const float* xp = X.data + p * panel_stride;
  for (int64_t d = 0; d < D; ++d) {
    vf b[NPT * L];
#pragma GCC unroll 8
    for (int t = 0; t < NPT; ++t)
#pragma GCC unroll 8
      for (int l = 0; l < L; ++l)
        b[t * L + l] = *reinterpret_cast<const vf*>(xp + t * panel_stride + d * kPanel + l * VL);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const float a = q[r * D + d];
#pragma GCC unroll 8
      for (int t = 0; t < NPT * L; ++t) acc[r][t] += a * b[t];
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < NPT; ++t) {
    vf xn[L];
    for (int l = 0; l < L; ++l) xn[l] = *reinterpret_cast<const vf*>(X.norms + (p + t) * kPanel + l * VL);
    for (int r = 0; r < MR && r0 + r < m; ++r) {
      HeapView& h = heaps[r0 + r];
      const float top = h.top();
      const vf thr = top - vf{};
      vf s[L];
      bool hit = false;
      for (int l = 0; l < L; ++l) {
        s[l] = xn[l] - 2.0f * acc[r][t * L + l];
        hit |= any_less(s[l], thr);
      }
      if (hit) {
        offer(s, (p + t) * kPanel, self_ids ? self_ids[r0 + r] : -1, h);
        if (SYM) cols->tops[row_base + r0 + r] = h.top();
      }
    }
    if (SYM) {  // column side: slot c's score for row r is |x_r|^2 - 2 acc[r][c]
      for (int l = 0; l < L; ++l) {
        const int64_t c0 = (p + t) * kPanel + l * VL;
        vf thr;
        std::memcpy(&thr, cols->tops + c0, sizeof(thr));
        for (int r = 0; r < MR; ++r) {
          const vf s = cols->row_norms[row_base + r0 + r] - 2.0f * acc[r][t * L + l];
          if (any_less(s, thr)) {
            offer_cols(s, c0, row_base + r0 + r, *cols);
            std::memcpy(&thr, cols->tops + c0, sizeof(thr));
          }
        }
      }
    }
  }
}

template <bool SYM>
static void range_impl(const float* Q, int64_t m, const int64_t* self_ids, const PackedIndex& X, int64_t p0,
                       int64_t p1, HeapView* heaps, const SymCols* cols, int64_t row_base) {
  const int64_t D = X.dim;
  int64_t block_panels = kL2Budget / (D * kPanel * int64_t(sizeof(float)));
  block_panels = block_panels < NP ? NP : (block_panels / NP) * NP;
  for (int64_t pb = p0; pb < p1; pb += block_panels) {
    const int64_t pe = pb + block_panels < p1 ? pb + block_panels : p1;
    for (int64_t r0 = 0; r0 < m; r0 += MR) {
      const float* q = Q + r0 * D;
      int64_t p = pb;
      for (; p + NP <= pe; p += NP) tile<NP, SYM>(q, D, r0, m, p, self_ids, X, heaps, cols, row_base);
      for (; p < pe; ++p) tile<1, SYM>(q, D, r0, m, p, self_ids, X, heaps, cols, row_base);  // leftover panels
    }
  }
}

void scan_range(const float* Q, int64_t m, const int64_t* self_ids, const PackedIndex& X, int64_t p0, int64_t p1,
                HeapView* heaps, const SymCols* cols, int64_t row_base) {
  if (cols)
    range_impl<true>(Q, m, self_ids, X, p0, p1, heaps, cols, row_base);
  else
    range_impl<false>(Q, m, self_ids, X, p0, p1, heaps, nullptr, 0);
}

void scan_block(const float* Q, int64_t m, const int64_t* self_ids, const PackedIndex& X, HeapView* heaps) {
  range_impl<false>(Q, m, self_ids, X, 0, X.n_panels, heaps, nullptr, 0);
}

}  // namespace FASTRL_ISA_NS
}  // namespace fastrl
