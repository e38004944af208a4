// Register-blocked distance tile with a fused top-k epilogue. Included by one
// translation unit per instruction set; FASTRL_ISA_NS names the namespace and
// FASTRL_MR / FASTRL_NP the row and panel tile sizes for that ISA.
//
//   acc[r][p] = sum_d q[r, d] * X[panel p][d][0:16]          (MR x NP*16 tile)
//   score     = |x|^2 - 2 acc
//   if any(score < heap_r.top()) -> scalar insert into the bounded max-heap
//
// The score tile never leaves registers unless a lane beats its row threshold,
// which after the first few panels is rare, so the scan runs at GEMM speed.
#include <cstring>
#include "knn_tile.h"

namespace fastrl {
namespace FASTRL_ISA_NS {

typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));
typedef int v8i __attribute__((vector_size(32)));
typedef int v4i __attribute__((vector_size(16)));

constexpr int MR = FASTRL_MR;
constexpr int NP = FASTRL_NP;
constexpr int64_t kBlockPanels = 16;  // 256 index points stay hot in L1/L2

static inline bool any_true(v16i m) {
  v8i a = __builtin_shufflevector(m, m, 0, 1, 2, 3, 4, 5, 6, 7);
  v8i b = __builtin_shufflevector(m, m, 8, 9, 10, 11, 12, 13, 14, 15);
  v8i c = a | b;
  v4i e = __builtin_shufflevector(c, c, 0, 1, 2, 3);
  v4i f = __builtin_shufflevector(c, c, 4, 5, 6, 7);
  v4i g = e | f;
  return (g[0] | g[1] | g[2] | g[3]) != 0;
}

static inline void offer(const v16& s, int64_t base, int64_t self_id, HeapView& h) {
  float tmp[16];
  std::memcpy(tmp, &s, sizeof(tmp));
  for (int j = 0; j < 16; ++j) {
    if (tmp[j] < h.top() && base + j != self_id) h.replace_top(tmp[j], base + j);
  }
}

int row_tile() { return MR; }

void scan_block(const float* Q, int64_t m, const int64_t* self_ids,
                const PackedIndex& X, HeapView* heaps) {
  const int64_t D = X.dim;
  const int64_t panel_stride = D * kPanel;
  for (int64_t pb = 0; pb < X.n_panels; pb += kBlockPanels) {
    const int64_t pe = pb + kBlockPanels < X.n_panels ? pb + kBlockPanels : X.n_panels;
    for (int64_t r0 = 0; r0 < m; r0 += MR) {
      const float* q = Q + r0 * D;
      int64_t p = pb;
      for (; p + NP <= pe; p += NP) {
        v16 acc[MR][NP];
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
          for (int t = 0; t < NP; ++t) acc[r][t] = v16{};
        const float* xp = X.data + p * panel_stride;
        for (int64_t d = 0; d < D; ++d) {
          v16 b[NP];
#pragma GCC unroll 4
          for (int t = 0; t < NP; ++t) b[t] = *reinterpret_cast<const v16*>(xp + t * panel_stride + d * kPanel);
#pragma GCC unroll 16
          for (int r = 0; r < MR; ++r) {
            const float a = q[r * D + d];
#pragma GCC unroll 4
            for (int t = 0; t < NP; ++t) acc[r][t] += a * b[t];
          }
        }
#pragma GCC unroll 4
        for (int t = 0; t < NP; ++t) {
          const v16 xn = *reinterpret_cast<const v16*>(X.norms + (p + t) * kPanel);
          for (int r = 0; r < MR && r0 + r < m; ++r) {
            const v16 s = xn - 2.0f * acc[r][t];
            HeapView& h = heaps[r0 + r];
            if (any_true(s < h.top())) offer(s, (p + t) * kPanel, self_ids ? self_ids[r0 + r] : -1, h);
          }
        }
      }
      for (; p < pe; ++p) {  // leftover panels, one at a time
        v16 acc[MR];
        for (int r = 0; r < MR; ++r) acc[r] = v16{};
        const float* xp = X.data + p * panel_stride;
        for (int64_t d = 0; d < D; ++d) {
          const v16 b = *reinterpret_cast<const v16*>(xp + d * kPanel);
          for (int r = 0; r < MR; ++r) acc[r] += q[r * D + d] * b;
        }
        const v16 xn = *reinterpret_cast<const v16*>(X.norms + p * kPanel);
        for (int r = 0; r < MR && r0 + r < m; ++r) {
          const v16 s = xn - 2.0f * acc[r];
          HeapView& h = heaps[r0 + r];
          if (any_true(s < h.top())) offer(s, p * kPanel, self_ids ? self_ids[r0 + r] : -1, h);
        }
      }
    }
  }
}

}  // namespace FASTRL_ISA_NS
}  // namespace fastrl
