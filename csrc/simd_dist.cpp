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

template <bool kSq>
__attribute__((always_inline)) inline float term(float x, float y) {
  if constexpr (kSq) { const float z = x - y; return z * z; } else { return x * y; }
}

template <bool kSq>
__attribute__((always_inline)) inline float f32_body(const float* a, const float* b, int64_t d) {
  vf8 acc[4] = {};
  int64_t t = 0;
  for (; t + 32 <= d; t += 32)
    for (int u = 0; u < 4; ++u) {
      const vf8 x = *reinterpret_cast<const vf8u*>(a + t + 8 * u), y = *reinterpret_cast<const vf8u*>(b + t + 8 * u);
      if constexpr (kSq) { const vf8 z = x - y; acc[u] += z * z; } else { acc[u] += x * y; }
    }
  for (; t + 8 <= d; t += 8) {
    const vf8 x = *reinterpret_cast<const vf8u*>(a + t), y = *reinterpret_cast<const vf8u*>(b + t);
    if constexpr (kSq) { const vf8 z = x - y; acc[0] += z * z; } else { acc[0] += x * y; }
  }
  const vf8 v = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  float s = 0.f;
  for (int i = 0; i < 8; ++i) s += v[i];
  for (; t < d; ++t) s += term<kSq>(a[t], b[t]);
  return s;
}

template <bool kSq>
__attribute__((always_inline)) inline double f64_body(const float* a, const float* b, int64_t d) {
  vd4 acc[4] = {};
  int64_t t = 0;
  for (; t + 16 <= d; t += 16)
    for (int u = 0; u < 4; ++u) {
      const vd4 x = __builtin_convertvector(*reinterpret_cast<const vf4u*>(a + t + 4 * u), vd4);
      const vd4 y = __builtin_convertvector(*reinterpret_cast<const vf4u*>(b + t + 4 * u), vd4);
      if constexpr (kSq) { const vd4 z = x - y; acc[u] += z * z; } else { acc[u] += x * y; }
    }
  const vd4 v = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  double s = (v[0] + v[1]) + (v[2] + v[3]);
  for (; t < d; ++t) {
    if constexpr (kSq) { const double z = double(a[t]) - double(b[t]); s += z * z; } else { s += double(a[t]) * double(b[t]); }
  }
  return s;
}

#define FASTRL_DIST_ISA(NS, TARGET)                                                                     \
  namespace NS {                                                                                        \
  TARGET float sqdist(const float* a, const float* b, int64_t d) { return f32_body<true>(a, b, d); }     \
  TARGET float dot(const float* a, const float* b, int64_t d) { return f32_body<false>(a, b, d); }       \
  TARGET double sqdist64(const float* a, const float* b, int64_t d) { return f64_body<true>(a, b, d); }  \
  TARGET double dot64(const float* a, const float* b, int64_t d) { return f64_body<false>(a, b, d); }    \
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

DistFns dist_fns() {
  switch (selected_cpu_kernel()) {
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
