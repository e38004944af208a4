// Point-to-point distance loops over float32 rows, compiled once per
// instruction set and picked by the CPU kernel of the call
// (csrc/cpu_features.h), so forcing a kernel covers these loops too.
//   sqdist   = sum_t (a_t - b_t)^2      dot   = sum_t a_t b_t      (float32 sums)
//   sqdist64, dot64: the same with float64 products and sums (exact refinement)
#pragma once
#include <cstdint>

#include "cpu_features.h"

namespace fastrl {

struct DistFns {
  float (*sqdist)(const float*, const float*, int64_t);
  float (*dot)(const float*, const float*, int64_t);
  double (*sqdist64)(const float*, const float*, int64_t);
  double (*dot64)(const float*, const float*, int64_t);
};

// The loops of CPU kernel `kernel` (the caller has checked it runs here).
DistFns dist_fns(CpuKernel kernel);

}  // namespace fastrl
