// Random-projection forest (csrc/rp_forest.cpp) for NN-descent's start.
#pragma once
#include <cstdint>
#include <vector>

#include "simd_dist.h"

namespace fastrl {

// n_trees trees over the rows of X [n, d]: for tree t, mems[t] lists the
// points leaf by leaf and leaf l is mems[t][offs[t][l] : offs[t][l + 1]]
// (at most leaf_size points; consecutive leaves are nearby in space).
// Deterministic for a seed, whatever nt (threads).
void rp_forest(const DistFns& df, const float* X, int64_t n, int64_t d, int n_trees, int leaf_size,
               uint64_t seed, int nt, std::vector<std::vector<int64_t>>& offs,
               std::vector<std::vector<int32_t>>& mems);

}  // namespace fastrl
