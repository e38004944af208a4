// Random-projection forest for NN-descent's initial graph (as in pynndescent):
// a node splits at the hyperplane halfway between two of its points chosen at
// random,
//   side(x) = <x, a - b> - <(a + b) / 2, a - b>   (< 0: left, 0: coin flip),
// until it holds at most leaf_size points.
//
// A tree costs O(n d) per level, and while its nodes are larger than the
// cache every level streams the whole array from memory. So the levels where
// nodes are big are built for all trees at once: one pass over the rows per
// level computes each row's side in every tree while the row sits in L1
// (4 trees: a quarter of the memory traffic). Nodes that fit in cache are
// then split depth-first, one task each. Every random choice is a hash of
// (tree seed, node range), so the forest does not depend on the thread count.
#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "common.h"
#include "rp_forest.h"

namespace fastrl {
namespace {

struct Range {
  int64_t lo, hi;
};

inline uint64_t node_hash(uint64_t tree_seed, const Range& r) {
  return splitmix(tree_seed ^ splitmix(uint64_t(r.lo) * 0x100000001B3ull + uint64_t(r.hi)));
}

// Splitting plane of the points mem[r.lo:r.hi]: normal a - b, returns the offset.
float pick_plane(const DistFns& df, const float* X, int64_t d, const int32_t* mem, const Range& r, uint64_t h,
                 float* normal, float* scratch) {
  const uint64_t size = uint64_t(r.hi - r.lo);
  h = splitmix(h);
  const int64_t a = mem[r.lo + int64_t(h % size)];
  int64_t b = a;
  for (int tries = 0; b == a && tries < 8; ++tries) {
    h = splitmix(h);
    b = mem[r.lo + int64_t(h % size)];
  }
  const float* xa = X + a * d;
  const float* xb = X + b * d;
  for (int64_t t = 0; t < d; ++t) {
    normal[t] = xa[t] - xb[t];
    scratch[t] = 0.5f * (xa[t] + xb[t]);
  }
  return df.dot(normal, scratch, d);
}

// Partitions mem[r.lo:r.hi] in place by side (s < 0 left, ties by a coin
// flip); returns the first index of the right part. A split that leaves one
// side empty (duplicates) becomes a random halving.
template <typename SideFn>
int64_t partition(int32_t* mem, const Range& r, uint64_t h, SideFn side) {
  int64_t left = r.lo, right = r.hi - 1;
  while (left <= right) {
    const int32_t p = mem[left];
    const float s = side(p);
    const bool go_left = s < 0.f || (s == 0.f && (splitmix(h ^ uint64_t(p)) & 1));
    if (go_left) ++left; else std::swap(mem[left], mem[right--]);
  }
  if (left == r.lo || left == r.hi) {
    std::mt19937_64 rng(h);
    std::shuffle(mem + r.lo, mem + r.hi, rng);
    left = r.lo + (r.hi - r.lo) / 2;
  }
  return left;
}

}  // namespace

void rp_forest(const DistFns& df, const float* X, int64_t n, int64_t d, int n_trees, int leaf_size,
               uint64_t seed, int nt, std::vector<std::vector<int64_t>>& offs,
               std::vector<std::vector<int32_t>>& mems) {
  constexpr int64_t kCacheBytes = 512 * 1024;  // nodes larger than this are split level-synchronously
  const int T = n_trees;
  std::vector<uint64_t> tseed(T);
  for (int t = 0; t < T; ++t) tseed[t] = splitmix(seed + 0x1234567ull * uint64_t(t + 1));
  mems.assign(T, std::vector<int32_t>(n));
  for (auto& m : mems) std::iota(m.begin(), m.end(), int32_t(0));
  auto is_big = [&](const Range& r) {
    return r.hi - r.lo > leaf_size && (r.hi - r.lo) * d * int64_t(sizeof(float)) > kCacheBytes;
  };

  // 1. Big nodes, one level of every tree per pass over the rows.
  std::vector<std::vector<Range>> cur(T, std::vector<Range>{{0, n}}), small(T);
  std::vector<int32_t> plane_of(size_t(T) * n);
  std::vector<float> side(size_t(T) * n), scratch(d);
  std::vector<float> normals, offsets;
  std::vector<std::vector<Range>> big(T);
  std::vector<int64_t> base(T + 1, 0);
  for (;;) {
    for (int t = 0; t < T; ++t) {
      big[t].clear();
      for (const Range& r : cur[t]) (is_big(r) ? big[t] : small[t]).push_back(r);
      base[t + 1] = base[t] + int64_t(big[t].size());
    }
    if (base[T] == 0) break;
    normals.resize(size_t(base[T]) * d);
    offsets.resize(base[T]);
    for (int t = 0; t < T; ++t)
      for (size_t i = 0; i < big[t].size(); ++i)
        offsets[base[t] + i] = pick_plane(df, X, d, mems[t].data(), big[t][i], node_hash(tseed[t], big[t][i]),
                                          normals.data() + (base[t] + i) * d, scratch.data());
    // which plane each point meets in each tree (-1: its node is done)
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int t = 0; t < T; ++t) {
      int32_t* po = plane_of.data() + size_t(t) * n;
      for (const Range& r : cur[t])
        if (!is_big(r))
          for (int64_t j = r.lo; j < r.hi; ++j) po[mems[t][j]] = -1;
      for (size_t i = 0; i < big[t].size(); ++i)
        for (int64_t j = big[t][i].lo; j < big[t][i].hi; ++j) po[mems[t][j]] = int32_t(base[t] + i);
    }
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t p = 0; p < n; ++p)
      for (int t = 0; t < T; ++t) {
        const int32_t q = plane_of[size_t(t) * n + p];
        if (q >= 0) side[size_t(t) * n + p] = df.dot(X + p * d, normals.data() + int64_t(q) * d, d) - offsets[q];
      }
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int t = 0; t < T; ++t) {
      const float* st = side.data() + size_t(t) * n;
      cur[t].clear();
      for (const Range& r : big[t]) {
        const int64_t mid = partition(mems[t].data(), r, node_hash(tseed[t], r) ^ 0x5151ull,
                                      [st](int32_t p) { return st[p]; });
        cur[t].push_back({r.lo, mid});
        cur[t].push_back({mid, r.hi});
      }
    }
  }

  // 2. Cache-sized nodes: depth-first, one task per node; leaves tile [0, n).
  std::vector<std::pair<int, Range>> tasks;
  for (int t = 0; t < T; ++t)
    for (const Range& r : small[t]) tasks.push_back({t, r});
  std::vector<std::vector<Range>> task_leaves(tasks.size());
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> normal(d), mid_pt(d);
    std::vector<Range> stack;
#pragma omp for schedule(dynamic, 1)
    for (int64_t ti = 0; ti < int64_t(tasks.size()); ++ti) {
      const int t = tasks[ti].first;
      int32_t* mem = mems[t].data();
      stack.assign(1, tasks[ti].second);
      while (!stack.empty()) {
        const Range r = stack.back();
        stack.pop_back();
        if (r.hi - r.lo <= leaf_size) { task_leaves[ti].push_back(r); continue; }
        const uint64_t h = node_hash(tseed[t], r);
        const float off = pick_plane(df, X, d, mem, r, h, normal.data(), mid_pt.data());
        const int64_t mid = partition(mem, r, h ^ 0x5151ull,
                                      [&](int32_t p) { return df.dot(X + int64_t(p) * d, normal.data(), d) - off; });
        stack.push_back({mid, r.hi});
        stack.push_back({r.lo, mid});
      }
    }
  }
  offs.assign(T, std::vector<int64_t>());
  for (size_t ti = 0; ti < tasks.size(); ++ti)
    for (const Range& r : task_leaves[ti]) offs[tasks[ti].first].push_back(r.lo);
  for (int t = 0; t < T; ++t) {
    std::sort(offs[t].begin(), offs[t].end());
    offs[t].push_back(n);
  }
}

}  // namespace fastrl
