// Per-ISA builds of the distance loops in csrc/simd_dist.h: one generic body,
// inlined into thin wrappers that carry each instruction set's target
// attribute (the `omp simd` reductions vectorise at that width).
#include "simd_dist.h"

#include "cpu_features.h"

namespace fastrl {

namespace {

template <typename Acc>
__attribute__((always_inline)) inline Acc sqdist_body(const float* a, const float* b, int64_t d) {
  Acc s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t t = 0; t < d; ++t) { const Acc z = Acc(a[t]) - Acc(b[t]); s += z * z; }
  return s;
}

template <typename Acc>
__attribute__((always_inline)) inline Acc dot_body(const float* a, const float* b, int64_t d) {
  Acc s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t t = 0; t < d; ++t) s += Acc(a[t]) * Acc(b[t]);
  return s;
}

#define FASTRL_DIST_ISA(NS, TARGET)                                                                     \
  namespace NS {                                                                                        \
  TARGET float sqdist(const float* a, const float* b, int64_t d) { return sqdist_body<float>(a, b, d); } \
  TARGET float dot(const float* a, const float* b, int64_t d) { return dot_body<float>(a, b, d); }       \
  TARGET double sqdist64(const float* a, const float* b, int64_t d) { return sqdist_body<double>(a, b, d); } \
  TARGET double dot64(const float* a, const float* b, int64_t d) { return dot_body<double>(a, b, d); }   \
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
