// Blocked brute-force kNN scan: declarations of the per-instruction-set
// kernels (csrc/knn_tile_impl.h is compiled once per ISA) and the packed
// index layout they share.
#pragma once
#include <cstdint>
#include "common.h"
#include "cpu_features.h"

namespace fastrl {

// Index points are packed in panels of 16: panel p holds points 16p..16p+15 as
// a [D][16] block, so a panel row is one 64-byte vector (1 zmm, 2 ymm or 4 xmm).
constexpr int kPanel = 16;

struct PackedIndex {
  const float* data;    // [n_panels][D][16], 64-byte aligned
  const float* norms;   // [n_panels*16]: |x|^2, +inf for padding points
  int64_t n_panels;
  int64_t dim;
};

// Scans the query rows Q[0:m] (a [m_pad, D] row-major block, zero padded to a
// multiple of the kernel's row tile) against every packed index point and
// offers score_j = |x_j|^2 - 2 <q, x_j> to heaps[r] (the |q|^2 term does not
// change the ranking). self_ids[r] (or nullptr) is excluded from row r.
using ScanFn = void (*)(const float* Q, int64_t m, const int64_t* self_ids,
                        const PackedIndex& X, HeapView* heaps);

// The other side of a symmetric (self-join) scan: the query rows are packed
// points too, so each score of row r against point c is also offered to c's
// heap, as |x_r|^2 - 2 <x_r, x_c> (the same product, bit for bit). Ids are
// packed slots.
struct SymCols {
  HeapView* heaps;         // by slot: the columns' heaps
  const float* row_norms;  // by slot: |x|^2 (0 for cosine rows), +inf for padding slots
  float* tops;             // by slot: every heap's root, kept in step (-inf for padding slots)
};

// The same against the panels [p0, p1) only; with cols (else nullptr) the
// column offers too, the rows' heap roots then kept in cols->tops (row r of
// Q is slot row_base + r).
using RangeFn = void (*)(const float* Q, int64_t m, const int64_t* self_ids, const PackedIndex& X, int64_t p0,
                         int64_t p1, HeapView* heaps, const SymCols* cols, int64_t row_base);

#define FASTRL_SCAN_DECLS                                                                             \
  void scan_block(const float*, int64_t, const int64_t*, const PackedIndex&, HeapView*);             \
  void scan_range(const float*, int64_t, const int64_t*, const PackedIndex&, int64_t, int64_t, HeapView*, \
                  const SymCols*, int64_t);                                                          \
  int row_tile();
namespace isa_base { FASTRL_SCAN_DECLS }
#ifdef FASTRL_HAVE_AVX2
namespace isa_avx2 { FASTRL_SCAN_DECLS }
#endif
#ifdef FASTRL_HAVE_AVX512
namespace isa_avx512 { FASTRL_SCAN_DECLS }
#endif
#undef FASTRL_SCAN_DECLS

// The scan of CPU kernel `kernel`, and its row tile (queries are padded to it).
struct ScanKernel { ScanFn fn; RangeFn range; int row_tile; const char* name; };
ScanKernel scan_kernel(CpuKernel kernel);

}  // namespace fastrl
