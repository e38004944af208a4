// Per-ISA builds of the distance loops in csrc/simd_dist.h: one generic body,
// inlined into thin wrappers that carry each instruction set's target
// attribute (the `omp simd` reductions vectorise at that width).
#include "simd_dist.h"

#include "cpu_features.h"

namespace fastrl {

namespace {

// Four independent vector accumulators: one accumulator makes a length-d
// loop a chain of d/8 dependent FMAs (4-cycle latency each), a quarter of the
// FMA throughput; the rows of a kNN search are long (raw MNIST: 784).
typedef float vf8 __attribute__((vector_size(32)));
typedef float vf8u __attribute__((vector_size(32), aligned(4)));
typedef float vf4u __attribute__((vector_size(16), aligned(4)));
typedef double vd4 __attribute__((vector_size(32)));

// Lanes of a 32-byte vector loaded from float data: 8 floats, or 4 floats
// widened to double (the float64 sums of the exact recheck).
template <typename V> struct Lanes;
template <> struct Lanes<vf8> {
  static constexpr int kW = 8;
  static vf8 load(const float* p) { return *reinterpret_cast<const vf8u*>(p); }
};
template <> struct Lanes<vd4> {
  static constexpr int kW = 4;
  static vd4 load(const float* p) { return __builtin_convertvector(*reinterpret_cast<const vf4u*>(p), vd4); }
};

// sum_t (a_t - b_t)^2 (kSq) or sum_t a_t b_t, in V's precision.
template <typename V, bool kSq, typename S = decltype(V{}[0] + 0)>
__attribute__((always_inline)) inline S sum_body(const float* a, const float* b, int64_t d) {
  constexpr int W = Lanes<V>::kW;
  auto add = [](V& acc, V x, V y) {
    if constexpr (kSq) { const V z = x - y; acc += z * z; } else { acc += x * y; }
  };
  V acc[4] = {};
  int64_t t = 0;
  for (; t + 4 * W <= d; t += 4 * W)
    for (int u = 0; u < 4; ++u) add(acc[u], Lanes<V>::load(a + t + W * u), Lanes<V>::load(b + t + W * u));
  for (; t + W <= d; t += W) add(acc[0], Lanes<V>::load(a + t), Lanes<V>::load(b + t));
  const V v = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  S s = 0;
  for (int i = 0; i < W; ++i) s += v[i];
  for (; t < d; ++t) {
    const S x = a[t], y = b[t];
    if constexpr (kSq) s += (x - y) * (x - y); else s += x * y;
  }
  return s;
}

#define FASTRL_DIST_ISA(NS, TARGET)                                                                     \
  namespace NS {                                                                                        \
  TARGET float sqdist(const float* a, const float* b, int64_t d) { return sum_body<vf8, true>(a, b, d); } \
  TARGET float dot(const float* a, const float* b, int64_t d) { return sum_body<vf8, false>(a, b, d); }   \
  TARGET double sqdist64(const float* a, const float* b, int64_t d) { return sum_body<vd4, true>(a, b, d); } \
  TARGET double dot64(const float* a, const float* b, int64_t d) { return sum_body<vd4, false>(a, b, d); } \
  constexpr DistFns fns{sqdist, dot, sqdist64, dot64};                                                  \
  }

FASTRL_DIST_ISA(base, )
#ifdef FASTRL_HAVE_AVX2
FASTRL_DIST_ISA(avx2, __attribute__((target("avx2,fma"))))
#endif
#ifdef FASTRL_HAVE_AVX512
FASTRL_DIST_ISA(avx512, __attribute__((target("avx512f,avx2,fma"))))
#endif
#undef FASTRL_DIST_ISA

}  // namespace

DistFns dist_fns(CpuKernel kernel) {
  switch (kernel) {
#ifdef FASTRL_HAVE_AVX512
    case CpuKernel::kAvx512: return avx512::fns;
#endif
#ifdef FASTRL_HAVE_AVX2
    case CpuKernel::kAvx2: return avx2::fns;
#endif
    default: return base::fns;
  }
}

}  // namespace fastrl
