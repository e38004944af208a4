// The one file that touches Python: thin pybind11 wrappers that check the
// array contract (C-contiguous, dtype, shape) and release the GIL around the
// C++ kernels. All argument validation with user-facing messages happens in
// the Python layer; the checks here only guard against misuse of _C itself.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "common.h"
#include "knn.h"

namespace py = pybind11;
using namespace fastrl;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style>;

template <typename T>
T* mutable_ptr(CArray<T>& a, const char* name, int64_t rows, int64_t cols) {
  if (a.ndim() != 2 || a.shape(0) != rows || a.shape(1) != cols)
    throw std::invalid_argument(std::string(name) + " has the wrong shape");
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    throw std::invalid_argument(std::string(name) + " must be a writeable C-contiguous array");
  return a.mutable_data();
}

void check_matrix(const CArray<float>& a, const char* name) {
  if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + " must be 2-D");
}

Metric to_metric(const std::string& m) {
  if (m == "euclidean") return Metric::kEuclidean;
  if (m == "cosine") return Metric::kCosine;
  throw std::invalid_argument("metric must be 'euclidean' or 'cosine'");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastrl compiled core (C++17, OpenMP)";

  m.def("openmp_threads", &max_threads, "Threads an OpenMP region uses by default.");
  m.def("has_openmp", []() {
#ifdef FASTRL_OPENMP
    return true;
#else
    return false;
#endif
  });
  m.def("knn_kernel_name", &knn_kernel_name);

  m.def("knn_exact",
        [](CArray<float> X, CArray<float> Q, int k, const std::string& metric,
           bool exclude_self, CArray<int64_t> out_idx, CArray<float> out_dist, int n_jobs) {
          check_matrix(X, "X");
          check_matrix(Q, "Q");
          if (X.shape(1) != Q.shape(1)) throw std::invalid_argument("X and Q differ in dimension");
          if (exclude_self && X.shape(0) != Q.shape(0)) throw std::invalid_argument("exclude_self needs Q == X");
          const int64_t n = X.shape(0), mq = Q.shape(0), d = X.shape(1);
          const int64_t avail = n - (exclude_self ? 1 : 0);
          if (k < 1 || k > avail) throw std::invalid_argument("k out of range");
          int64_t* oi = mutable_ptr(out_idx, "out_idx", mq, k);
          float* od = mutable_ptr(out_dist, "out_dist", mq, k);
          const Metric mt = to_metric(metric);
          const float* xp = X.data();
          const float* qp = Q.data();
          py::gil_scoped_release release;
          knn_exact(xp, n, qp, mq, d, k, mt, exclude_self, oi, od, n_jobs);
        },
        py::arg("X"), py::arg("Q"), py::arg("k"), py::arg("metric"), py::arg("exclude_self"),
        py::arg("out_idx"), py::arg("out_dist"), py::arg("n_jobs") = 0);

  m.def("knn_nndescent",
        [](CArray<float> X, int k, const std::string& metric, int n_trees, int leaf_size,
           int max_candidates, int n_iters, float delta, uint64_t seed,
           CArray<int64_t> out_idx, CArray<float> out_dist, int n_jobs) {
          check_matrix(X, "X");
          const int64_t n = X.shape(0), d = X.shape(1);
          if (k < 1 || k >= n) throw std::invalid_argument("k out of range");
          if (n_trees < 1 || leaf_size < 2 || max_candidates < 1 || n_iters < 0)
            throw std::invalid_argument("bad NN-descent parameters");
          int64_t* oi = mutable_ptr(out_idx, "out_idx", n, k);
          float* od = mutable_ptr(out_dist, "out_dist", n, k);
          const Metric mt = to_metric(metric);
          const float* xp = X.data();
          py::gil_scoped_release release;
          knn_nndescent(xp, n, d, k, mt, n_trees, leaf_size, max_candidates, n_iters, delta, seed, oi, od, n_jobs);
        },
        py::arg("X"), py::arg("k"), py::arg("metric"), py::arg("n_trees"), py::arg("leaf_size"),
        py::arg("max_candidates"), py::arg("n_iters"), py::arg("delta"), py::arg("seed"),
        py::arg("out_idx"), py::arg("out_dist"), py::arg("n_jobs") = 0);
}
