// Run-time instruction-set selection for the per-ISA kernels.
//
// The kernel is chosen per call: every entry point that has per-ISA loops
// takes a CpuKernel argument, parsed from the name the Python layer passes
// ("auto" = the best this CPU and build run; fastrl.use_cpu_kernel and the
// FASTRL_CPU_KERNEL variable, read once at import, choose it there). Nothing
// here reads the environment: getenv inside a kernel would race with setenv
// from other Python threads once the GIL is released. Asking for a kernel the
// CPU or the build lacks is an error, never a silent fallback.
#pragma once
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

// The kernel named `want` ("auto", "base", "avx2", "avx512"). Throws
// std::invalid_argument (ValueError in Python) for an unknown name or one this
// CPU / build cannot run; `source` names the setting in the message.
inline CpuKernel parse_cpu_kernel(const std::string& want, const char* source = "cpu_kernel") {
  if (want.empty() || want == "auto") return best_cpu_kernel();
  for (CpuKernel k : {CpuKernel::kBase, CpuKernel::kAvx2, CpuKernel::kAvx512}) {
    if (want != cpu_kernel_str(k)) continue;
    if (!cpu_kernel_supported(k))
      throw std::invalid_argument(std::string(source) + "=" + want + ": this CPU (or this build) cannot run the '" +
                                  want + "' kernel; the best it supports is '" + cpu_kernel_str(best_cpu_kernel()) + "'");
    return k;
  }
  throw std::invalid_argument(std::string(source) + " must be one of 'auto', 'base', 'avx2', 'avx512'; got '" + want +
                              "'");
}

}  // namespace fastrl
