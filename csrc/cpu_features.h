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
#include <cstring>
#include <stdexcept>
#include <string>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

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

// How the 2-D attractive t-SNE loop (csrc/tsne_attr_impl.h) fills its SIMD
// lanes with the neighbours' coordinates: hardware gathers (kHw) or scalar
// 16-byte loads and shuffles (kScalar). Chosen per call like the kernel
// ("auto", "hw", "scalar"; fastrl.use_gather and FASTRL_GATHER, read once at
// import, choose it in Python).
enum class GatherMode : int { kHw = 0, kScalar = 1 };

inline const char* gather_mode_str(GatherMode g) { return g == GatherMode::kScalar ? "scalar" : "hw"; }

// Whether this CPU's vgatherdpd is slower than scalar loads: AMD (and Hygon)
// up to family 0x19 (Zen 1-4). Measured (benchmarks/bench_tsne_attractive.py)
// on a Zen 3 (family 0x19 model 0x01: scalar loads 1.5x faster,
// tsne_attractive.json) and on a Zen 4 (model 0x11, where vgatherdpd is not
// microcoded but still loses: 0.64-0.81x the time on the MNIST P in a fit's
// order, about 0.5x on a random 1M graph, median per-round ratios over the
// AVX2 and AVX-512 builds and 1-2 threads, tsne_attractive_zen4.json).
// On an Intel Emerald Rapids (family 6 model 0xCF, tsne_attractive_intel.json,
// tsne_1m_intel_gather_hw.json) it is a tie in a fit's point order, gathers a
// little ahead with the AVX-512 build: median per-round ratios scalar/hw of
// 1.00-1.03 on the MNIST P (1-2 threads), and a 1M fit's attractive phase
// 107.6 s gather-free against 103.4 s with gathers (one run each); scalar
// loads win only on a graph in random order (0.89-0.93x), which a fit does
// not keep. So Intel keeps hardware gathers, as do Zen 5 (0x1A, unmeasured)
// and other vendors.
inline bool cpu_slow_gather() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
  char vendor[13];
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  vendor[12] = 0;
  const std::string v(vendor);
  if (v != "AuthenticAMD" && v != "HygonGenuine") return false;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const unsigned base = (a >> 8) & 0xF;
  const unsigned family = base + (base == 0xF ? (a >> 20) & 0xFF : 0);
  return family <= 0x19;
#else
  return false;
#endif
}

inline GatherMode best_gather_mode() { return cpu_slow_gather() ? GatherMode::kScalar : GatherMode::kHw; }

// The mode named `want` ("auto" = best_gather_mode(), "hw", "scalar");
// std::invalid_argument (ValueError) for another name.
inline GatherMode parse_gather_mode(const std::string& want, const char* source = "gather") {
  if (want.empty() || want == "auto") return best_gather_mode();
  if (want == "hw") return GatherMode::kHw;
  if (want == "scalar") return GatherMode::kScalar;
  throw std::invalid_argument(std::string(source) + " must be one of 'auto', 'hw', 'scalar'; got '" + want + "'");
}

}  // namespace fastrl
