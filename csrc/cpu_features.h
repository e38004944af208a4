// Run-time instruction-set selection for the per-ISA kernels.
//
// The kernel is the best one this CPU and build support, unless the
// environment variable FASTRL_CPU_KERNEL=base|avx2|avx512 forces one (so an
// AVX-512 machine can test and benchmark the AVX2 path). Forcing a kernel the
// CPU or the build lacks is an error, never a silent fallback.
#pragma once
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace fastrl {

enum class CpuKernel : int { kBase = 0, kAvx2 = 1, kAvx512 = 2 };

inline const char* cpu_kernel_str(CpuKernel k) {
  return k == CpuKernel::kAvx512 ? "avx512" : k == CpuKernel::kAvx2 ? "avx2" : "base";
}

// Whether this build contains the kernel and this CPU can run it.
inline bool cpu_kernel_supported(CpuKernel k) {
  switch (k) {
    case CpuKernel::kBase: return true;
    case CpuKernel::kAvx2:
#ifdef FASTRL_HAVE_AVX2
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
    case CpuKernel::kAvx512:
#ifdef FASTRL_HAVE_AVX512
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
  }
  return false;
}

inline CpuKernel best_cpu_kernel() {
  if (cpu_kernel_supported(CpuKernel::kAvx512)) return CpuKernel::kAvx512;
  if (cpu_kernel_supported(CpuKernel::kAvx2)) return CpuKernel::kAvx2;
  return CpuKernel::kBase;
}

// The kernel in use: FASTRL_CPU_KERNEL if set (and runnable), else the best.
// Throws std::invalid_argument (ValueError in Python) naming the variable.
inline CpuKernel selected_cpu_kernel() {
  const char* env = std::getenv("FASTRL_CPU_KERNEL");
  if (env == nullptr || *env == '\0' || std::string(env) == "auto") return best_cpu_kernel();
  const std::string want(env);
  for (CpuKernel k : {CpuKernel::kBase, CpuKernel::kAvx2, CpuKernel::kAvx512}) {
    if (want != cpu_kernel_str(k)) continue;
    if (!cpu_kernel_supported(k))
      throw std::invalid_argument("FASTRL_CPU_KERNEL=" + want + ": this CPU (or this build) cannot run the '" + want +
                                  "' kernel; the best it supports is '" + cpu_kernel_str(best_cpu_kernel()) + "'");
    return k;
  }
  throw std::invalid_argument("FASTRL_CPU_KERNEL must be one of 'auto', 'base', 'avx2', 'avx512'; got '" + want + "'");
}

}  // namespace fastrl
