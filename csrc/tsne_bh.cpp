// Barnes-Hut repulsive forces for 2-D t-SNE embeddings.
//
// A quadtree over the reference points is built by recursive in-place
// partitioning of an index permutation (nodes own contiguous ranges, leaves
// hold up to kLeaf points, so duplicates and self-pairs are handled exactly).
// For each query point y_i a depth-first walk sums, per cell,
//   w = (1 + d^2/dof)^-dof,  u = (1 + d^2/dof)^-1  at the cell's centre of mass,
//   Z_i += m w,  R_i += m w u (y_i - c)
// when width^2 < theta^2 d^2, and descends otherwise; leaves are summed point by point.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"
#include "tsne.h"

namespace fastrl {
namespace {

constexpr int kLeaf = 4;
constexpr int kMaxDepth = 48;

struct Node {
  double cx, cy, width;  // centre of mass and side length of the square cell
  int64_t start, end;    // range in the permuted point arrays
  int32_t child[4];      // -1 when absent; all -1 for a leaf
};

struct QuadTree {
  std::vector<Node> nodes;
  std::vector<double> px, py;  // points in tree order
  std::vector<int64_t> perm;   // tree position -> original index

  void build(const double* Y, int64_t n) {
    perm.resize(n);
    for (int64_t i = 0; i < n; ++i) perm[i] = i;
    double x0 = Y[0], x1 = Y[0], y0 = Y[1], y1 = Y[1];
    for (int64_t i = 1; i < n; ++i) {
      x0 = std::min(x0, Y[2 * i]); x1 = std::max(x1, Y[2 * i]);
      y0 = std::min(y0, Y[2 * i + 1]); y1 = std::max(y1, Y[2 * i + 1]);
    }
    const double side = std::max(x1 - x0, y1 - y0) * (1.0 + 1e-9) + 1e-12;
    nodes.clear();
    nodes.reserve(size_t(2 * n / kLeaf + 16));
    split(Y, 0, n, x0, y0, side, 0);
    px.resize(n);
    py.resize(n);
    for (int64_t t = 0; t < n; ++t) { px[t] = Y[2 * perm[t]]; py[t] = Y[2 * perm[t] + 1]; }
  }

  // Creates the node for perm[s, e) in the cell [x0, x0+side) x [y0, y0+side).
  int32_t split(const double* Y, int64_t s, int64_t e, double x0, double y0, double side, int depth) {
    const int32_t id = int32_t(nodes.size());
    nodes.push_back(Node{0, 0, side, s, e, {-1, -1, -1, -1}});
    double sx = 0, sy = 0;
    for (int64_t t = s; t < e; ++t) { sx += Y[2 * perm[t]]; sy += Y[2 * perm[t] + 1]; }
    nodes[id].cx = sx / double(e - s);
    nodes[id].cy = sy / double(e - s);
    if (e - s <= kLeaf || depth >= kMaxDepth) return id;
    const double h = 0.5 * side, mx = x0 + h, my = y0 + h;
    int64_t* b = perm.data();
    // Partition by x, then each half by y: quadrants 0 (lo,lo) 1 (hi,lo) 2 (lo,hi) 3 (hi,hi).
    int64_t* xm = std::partition(b + s, b + e, [&](int64_t i) { return Y[2 * i] < mx; });
    int64_t* q0 = std::partition(b + s, xm, [&](int64_t i) { return Y[2 * i + 1] < my; });
    int64_t* q1 = std::partition(xm, b + e, [&](int64_t i) { return Y[2 * i + 1] < my; });
    const int64_t cut[5] = {s, q0 - b, xm - b, q1 - b, e};
    // ranges: [s,q0) x-lo y-lo ; [q0,xm) x-lo y-hi ; [xm,q1) x-hi y-lo ; [q1,e) x-hi y-hi
    const double ox[4] = {x0, x0, mx, mx}, oy[4] = {y0, my, y0, my};
    for (int q = 0; q < 4; ++q) {
      if (cut[q + 1] > cut[q]) {
        int32_t c = split(Y, cut[q], cut[q + 1], ox[q], oy[q], h, depth + 1);
        nodes[id].child[q] = c;
      }
    }
    return id;
  }
};

}  // namespace

double tsne_bh_repulsive(const double* Yref, int64_t n_ref, const double* Y, int64_t n,
                         bool same, double theta, double dof, double* out, double* zsum,
                         int n_jobs) {
  QuadTree tree;
  tree.build(Yref, n_ref);
  const double theta2 = theta * theta, inv_dof = 1.0 / dof;
  const bool cauchy = dof == 1.0;
  // Per-point normalisers, summed serially: independent of the thread schedule.
  std::vector<double> zlocal(zsum ? 0 : n);
  double* zp = zsum ? zsum : zlocal.data();
#pragma omp parallel num_threads(tsne_threads(n_jobs, n * 256))
  {
    std::vector<int32_t> stack;
    stack.reserve(256);
#pragma omp for schedule(dynamic, 64)
    for (int64_t i = 0; i < n; ++i) {
      const double xi = Y[2 * i], yi = Y[2 * i + 1];
      double z = 0, rx = 0, ry = 0;
      auto pair = [&](double dx, double dy, double m) {
        const double d2 = dx * dx + dy * dy;
        const double u = 1.0 / (1.0 + d2 * inv_dof);
        const double w = cauchy ? u : std::pow(u, dof);
        z += m * w;
        rx += m * w * u * dx;
        ry += m * w * u * dy;
      };
      stack.clear();
      stack.push_back(0);
      while (!stack.empty()) {
        const Node& nd = tree.nodes[stack.back()];
        stack.pop_back();
        const double dx = xi - nd.cx, dy = yi - nd.cy;
        const double d2 = dx * dx + dy * dy;
        const bool leaf = nd.child[0] < 0 && nd.child[1] < 0 && nd.child[2] < 0 && nd.child[3] < 0;
        if (leaf) {
          for (int64_t t = nd.start; t < nd.end; ++t) {
            if (same && tree.perm[t] == i) continue;
            pair(xi - tree.px[t], yi - tree.py[t], 1.0);
          }
        } else if (nd.width * nd.width < theta2 * d2) {
          pair(dx, dy, double(nd.end - nd.start));
        } else {
          for (int q = 0; q < 4; ++q)
            if (nd.child[q] >= 0) stack.push_back(nd.child[q]);
        }
      }
      out[2 * i] = rx;
      out[2 * i + 1] = ry;
      zp[i] = z;
    }
  }
  double ztot = 0.0;
  for (int64_t i = 0; i < n; ++i) ztot += zp[i];
  return ztot;
}

}  // namespace fastrl
