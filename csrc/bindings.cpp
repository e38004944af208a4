// The one file that touches Python: thin pybind11 wrappers that check the
// array contract (C-contiguous, dtype, shape) and release the GIL around the
// C++ kernels. All argument validation with user-facing messages happens in
// the Python layer; the checks here only guard against misuse of _C itself.
// The entry points with per-ISA loops take a keyword-only cpu_kernel name
// ("auto", "base", "avx2", "avx512"; fastrl/neighbors/cpu_kernel.py passes
// the one in use), parsed before the GIL is released: the core never reads
// the environment. tsne_attractive also takes gather ("auto", "hw", "scalar",
// the same module's FASTRL_GATHER / use_gather).
#include <pybind11/complex.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <optional>
#include <string>
#include <vector>

#include "common.h"
#include "cpu_features.h"
#include "knn.h"
#include "tsne.h"

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

// FFT-interpolation spreading / gathering for a float32 or float64 grid (one
// overload each; the exact dtype is required, never a converted copy).
template <typename T>
void def_fft_grid_ops(py::module_& m) {
  // charges None: a unit charge per point (nc = 1), no [n, 1] array of ones to pass.
  m.def("tsne_fft_spread",
        [](CArray<double> Y, double lo, double h, int n_boxes, std::optional<CArray<double>> charges,
           py::array_t<T, py::array::c_style> grid, int n_jobs) {
          if (Y.ndim() != 2 || Y.shape(1) != 2) throw std::invalid_argument("Y must be [n, 2]");
          const int64_t n = Y.shape(0);
          int nc = 1;
          const double* cp = nullptr;
          if (charges) {
            if (charges->ndim() != 2 || charges->shape(0) != n || charges->shape(1) < 1 || charges->shape(1) > 8)
              throw std::invalid_argument("charges must be [n, nc] with 1 <= nc <= 8");
            nc = int(charges->shape(1));
            cp = charges->data();
          }
          const int g = 3 * n_boxes;
          if (n_boxes < 1 || grid.ndim() != 3 || grid.shape(0) != nc || grid.shape(1) != g || grid.shape(2) < g ||
              !grid.writeable())
            throw std::invalid_argument("grid must be a writeable [nc, 3 n_boxes, >= 3 n_boxes] array");
          T* gp = grid.mutable_data();
          const double* yp = Y.data();
          const int64_t ld = grid.shape(2);
          py::gil_scoped_release release;
          tsne_fft_spread<T>(yp, n, lo, h, n_boxes, cp, nc, gp, ld, n_jobs);
        },
        py::arg("Y"), py::arg("lo"), py::arg("h"), py::arg("n_boxes"), py::arg("charges"),
        py::arg("grid"), py::arg("n_jobs") = 0);

  // out [n, nc] = the potentials at the points.
  m.def("tsne_fft_gather",
        [](CArray<double> Y, double lo, double h, int n_boxes, py::array_t<T> pot,
           CArray<double> out, int n_jobs) {
          if (Y.ndim() != 2 || Y.shape(1) != 2) throw std::invalid_argument("Y must be [n, 2]");
          const int64_t n = Y.shape(0);
          const int g = 3 * n_boxes;
          if (n_boxes < 1 || pot.ndim() != 3 || pot.shape(1) != g || pot.shape(2) != g || pot.shape(0) < 1 ||
              pot.shape(0) > 8)
            throw std::invalid_argument("pot must be [nc, 3 n_boxes, 3 n_boxes] with 1 <= nc <= 8");
          const auto sz = py::ssize_t(sizeof(T));
          if (pot.strides(2) != sz || pot.strides(1) % sz || pot.strides(0) % sz || pot.strides(1) < g * sz ||
              pot.strides(0) < g * pot.strides(1))
            throw std::invalid_argument("pot must have contiguous, non-overlapping rows");
          const int nc = int(pot.shape(0));
          double* op = mutable_ptr(out, "out", n, nc);
          const double* yp = Y.data();
          const T* pp = pot.data();
          const int64_t cs = pot.strides(0) / sz, rs = pot.strides(1) / sz;
          py::gil_scoped_release release;
          tsne_fft_gather<T>(yp, n, lo, h, n_boxes, pp, nc, cs, rs, op, n_jobs);
        },
        py::arg("Y"), py::arg("lo"), py::arg("h"), py::arg("n_boxes"), py::arg("pot"),
        py::arg("out"), py::arg("n_jobs") = 0);

  // out [2, m, mh] = i fk[c] spec (c = 0, 1); returns the Parseval sum of spec [m, mh] with fk[2].
  m.def("tsne_fft_spectral",
        [](CArray<std::complex<T>> spec, CArray<T> fk, CArray<std::complex<T>> out, int n_jobs) {
          if (spec.ndim() != 2 || fk.ndim() != 3 || fk.shape(0) != 3 || fk.shape(1) != spec.shape(0) ||
              fk.shape(2) != spec.shape(1) || out.ndim() != 3 || out.shape(0) != 2 ||
              out.shape(1) != spec.shape(0) || out.shape(2) != spec.shape(1) || !out.writeable())
            throw std::invalid_argument("spec must be [m, mh], fk [3, m, mh] and out a writeable [2, m, mh]");
          const int64_t m = spec.shape(0), mh = spec.shape(1);
          const std::complex<T>* sp = spec.data();
          const T* kp = fk.data();
          std::complex<T>* op = out.mutable_data();
          py::gil_scoped_release release;
          return tsne_fft_spectral<T>(sp, m, mh, kp, op, n_jobs);
        },
        py::arg("spec"), py::arg("fk"), py::arg("out"), py::arg("n_jobs") = 0);
}

// Attractive forces over a float64 or float32 P (one overload each: the
// exact dtype is taken as is; another dtype converts to float64).
template <typename PT>
void def_tsne_attractive(py::module_& m) {
  m.def("tsne_attractive",
        [](CArray<int64_t> indptr, CArray<int32_t> indices, CArray<PT> P, CArray<double> Y,
           CArray<double> Yref, double dof, double exaggeration, bool eval_kl, CArray<double> out,
           int n_jobs, bool check_indices, const std::string& cpu_kernel, const std::string& gather) {
          const CpuKernel kern = parse_cpu_kernel(cpu_kernel);
          const GatherMode gmode = parse_gather_mode(gather);
          if (Y.ndim() != 2 || Yref.ndim() != 2 || Y.shape(1) != Yref.shape(1) || Y.shape(1) > 8)
            throw std::invalid_argument("Y and Yref must be 2-D with the same (<= 8) columns");
          const int64_t n = Y.shape(0);
          const int dim = int(Y.shape(1));
          if (indptr.ndim() != 1 || indptr.shape(0) != n + 1) throw std::invalid_argument("indptr must have n + 1 entries");
          const int64_t* ip = indptr.data();
          const int64_t nnz = ip[n];
          if (indices.size() < nnz || P.size() < nnz) throw std::invalid_argument("indices/P shorter than indptr[-1]");
          const int32_t* xp = indices.data();
          // The optimizer validates P once and skips this O(nnz) scan per iteration.
          if (check_indices)
            for (int64_t e = 0; e < nnz; ++e)
              if (xp[e] < 0 || xp[e] >= Yref.shape(0)) throw std::invalid_argument("indices out of range");
          double* op = mutable_ptr(out, "out", n, dim);
          const PT* pp = P.data();
          const double *yp = Y.data(), *rp = Yref.data();
          py::gil_scoped_release release;
          return tsne_attractive(ip, xp, pp, yp, rp, n, Yref.shape(0), dim, dof, exaggeration, eval_kl, op, n_jobs,
                                 kern, gmode);
        },
        py::arg("indptr"), py::arg("indices"), py::arg("P"), py::arg("Y"), py::arg("Yref"),
        py::arg("dof"), py::arg("exaggeration"), py::arg("eval_kl"), py::arg("out"), py::arg("n_jobs") = 0,
        py::arg("check_indices") = true, py::kw_only(), py::arg("cpu_kernel"), py::arg("gather") = "auto");
}

// tsne_symmetrize(nbr [n, k] of I, Pc [n, k] of V, n_jobs, compact) -> (indptr, indices, data)
template <typename I, typename V>
void def_tsne_symmetrize(py::module_& m) {
  m.def("tsne_symmetrize",
        [](CArray<I> nbr, CArray<V> Pc, int n_jobs, bool compact) {
          if (nbr.ndim() != 2 || Pc.ndim() != 2 || nbr.shape(0) != Pc.shape(0) ||
              nbr.shape(1) != Pc.shape(1))
            throw std::invalid_argument("nbr and Pc must be 2-D of the same shape");
          const int64_t n = nbr.shape(0);
          const int k = int(nbr.shape(1));
          const I* np_ = nbr.data();
          for (int64_t e = 0; e < n * k; ++e)
            if (np_[e] < 0 || np_[e] >= n) throw std::invalid_argument("nbr holds an index out of range");
          py::array_t<int64_t> indptr(n + 1);
          int64_t* ip = indptr.mutable_data();
          const V* pp = Pc.data();
          py::array_t<int32_t> indices;
          py::object data;
          // the arrays are made once the count is known, under the GIL
          auto run = [&](auto tag) {
            using T = decltype(tag);
            SymAlloc<T> alloc = [&](int64_t nnz) {
              py::gil_scoped_acquire gil;
              indices = py::array_t<int32_t>(nnz);
              py::array_t<T> d(nnz);
              T* dp = d.mutable_data();
              data = std::move(d);
              return std::make_pair(indices.mutable_data(), dp);
            };
            py::gil_scoped_release release;
            tsne_symmetrize<T, I, V>(np_, pp, n, k, ip, alloc, n_jobs);
          };
          if (compact) run(float{}); else run(double{});
          return py::make_tuple(indptr, indices, data);
        },
        py::arg("nbr"), py::arg("Pc"), py::arg("n_jobs") = 0, py::arg("compact") = false);
}

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
  m.def("knn_kernel_name", [](const std::string& cpu_kernel) { return knn_kernel_name(parse_cpu_kernel(cpu_kernel)); },
        py::arg("cpu_kernel"),
        "ISA of the kNN kernel that cpu_kernel ('auto': the best this CPU runs) selects; ValueError for one "
        "this CPU or build lacks.");
  m.def("cpu_kernels_supported", []() {
    std::vector<std::string> out;
    for (CpuKernel k : {CpuKernel::kBase, CpuKernel::kAvx2, CpuKernel::kAvx512})
      if (cpu_kernel_supported(k)) out.emplace_back(cpu_kernel_str(k));
    return out;
  }, "Kernels this CPU and build can run, in increasing order of width.");

  m.def("knn_exact",
        [](CArray<float> X, CArray<float> Q, int k, const std::string& metric,
           bool exclude_self, CArray<int64_t> out_idx, CArray<float> out_dist, int n_jobs,
           std::optional<CArray<float>> Xr, std::optional<CArray<float>> Qr, const std::string& cpu_kernel) {
          const CpuKernel kern = parse_cpu_kernel(cpu_kernel);
          check_matrix(X, "X");
          check_matrix(Q, "Q");
          if (Xr && (Xr->ndim() != 2 || Xr->shape(0) != X.shape(0) || Xr->shape(1) != X.shape(1)))
            throw std::invalid_argument("X_exact must have X's shape");
          if (Qr && (Qr->ndim() != 2 || Qr->shape(0) != Q.shape(0) || Qr->shape(1) != Q.shape(1)))
            throw std::invalid_argument("Q_exact must have Q's shape");
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
          const float* xr = Xr ? Xr->data() : nullptr;
          const float* qr = Qr ? Qr->data() : nullptr;
          py::gil_scoped_release release;
          knn_exact(xp, n, qp, mq, d, k, mt, exclude_self, oi, od, n_jobs, kern, xr, qr);
        },
        py::arg("X"), py::arg("Q"), py::arg("k"), py::arg("metric"), py::arg("exclude_self"),
        py::arg("out_idx"), py::arg("out_dist"), py::arg("n_jobs") = 0, py::arg("X_exact") = py::none(),
        py::arg("Q_exact") = py::none(), py::kw_only(), py::arg("cpu_kernel"));

  m.def("knn_column_stats",
        [](CArray<float> A, const std::string& metric, py::array_t<double, py::array::c_style> col_sum,
           py::array_t<uint8_t, py::array::c_style> varies, int n_jobs) {
          check_matrix(A, "A");
          const int64_t n = A.shape(0), d = A.shape(1);
          if (col_sum.ndim() != 1 || col_sum.shape(0) != d || varies.ndim() != 1 || varies.shape(0) != d)
            throw std::invalid_argument("col_sum and varies must have shape (d,)");
          const Metric mt = to_metric(metric);
          const float* ap = A.data();
          double* cs = col_sum.mutable_data();
          uint8_t* vr = varies.mutable_data();
          py::gil_scoped_release release;
          knn_column_stats(ap, n, d, mt, cs, vr, n_jobs);
        },
        py::arg("A"), py::arg("metric"), py::arg("col_sum"), py::arg("varies"), py::arg("n_jobs") = 0);
  m.def("knn_compact_rows",
        [](CArray<float> A, const std::string& metric, std::optional<CArray<float>> center,
           py::array_t<int64_t, py::array::c_style> keep, CArray<float> out, int n_jobs) {
          check_matrix(A, "A");
          const int64_t n = A.shape(0), d = A.shape(1), dk = keep.ndim() == 1 ? keep.shape(0) : -1;
          if (dk < 1) throw std::invalid_argument("keep must be a non-empty 1-D array");
          if (center && (center->ndim() != 1 || center->shape(0) != d))
            throw std::invalid_argument("center must have shape (d,)");
          const int64_t* kp = keep.data();
          for (int64_t j = 0; j < dk; ++j)
            if (kp[j] < 0 || kp[j] >= d) throw std::invalid_argument("keep holds a column out of range");
          const int64_t dout = out.ndim() == 2 ? out.shape(1) : 0;
          if (dout < dk) throw std::invalid_argument("out needs at least len(keep) columns");
          float* op = mutable_ptr(out, "out", n, dout);
          const Metric mt = to_metric(metric);
          const float* ap = A.data();
          const float* cp = center ? center->data() : nullptr;
          py::gil_scoped_release release;
          knn_compact_rows(ap, n, d, mt, cp, kp, dk, op, dout, n_jobs);
        },
        py::arg("A"), py::arg("metric"), py::arg("center"), py::arg("keep"), py::arg("out"),
        py::arg("n_jobs") = 0);

  m.def("knn_nndescent",
        [](CArray<float> X, int k, const std::string& metric, int n_trees, int leaf_size,
           int max_candidates, int n_iters, float delta, uint64_t seed,
           CArray<int64_t> out_idx, CArray<float> out_dist, int n_jobs, const std::string& cpu_kernel,
           bool verbose, bool scratch) {
          const CpuKernel kern = parse_cpu_kernel(cpu_kernel);
          check_matrix(X, "X");
          const int64_t n = X.shape(0), d = X.shape(1);
          if (k < 1 || k >= n) throw std::invalid_argument("k out of range");
          if (n >= (int64_t(1) << 31)) throw std::invalid_argument("NN-descent supports up to 2^31 - 1 points");
          if (n_trees < 1 || leaf_size < 2 || max_candidates < 1 || n_iters < 0)
            throw std::invalid_argument("bad NN-descent parameters");
          int64_t* oi = mutable_ptr(out_idx, "out_idx", n, k);
          float* od = mutable_ptr(out_dist, "out_dist", n, k);
          const Metric mt = to_metric(metric);
          // scratch: X's rows may be permuted in place (the caller's own temporary copy)
          float* xs = scratch ? X.mutable_data() : nullptr;
          const float* xp = X.data();
          py::gil_scoped_release release;
          knn_nndescent(xp, n, d, k, mt, n_trees, leaf_size, max_candidates, n_iters, delta, seed, oi, od, n_jobs,
                        kern, verbose, xs);
        },
        py::arg("X"), py::arg("k"), py::arg("metric"), py::arg("n_trees"), py::arg("leaf_size"),
        py::arg("max_candidates"), py::arg("n_iters"), py::arg("delta"), py::arg("seed"),
        py::arg("out_idx"), py::arg("out_dist"), py::arg("n_jobs") = 0, py::kw_only(), py::arg("cpu_kernel"),
        py::arg("verbose") = false, py::arg("scratch") = false);

  // ---- t-SNE (csrc/tsne.h) -------------------------------------------------
  m.def("tsne_perplexity",
        [](CArray<float> D, double perplexity, double tol, int max_iter, CArray<double> P,
           py::array_t<double, py::array::c_style> beta, int n_jobs) {
          check_matrix(D, "D");
          const int64_t n = D.shape(0);
          const int k = int(D.shape(1));
          double* pp = mutable_ptr(P, "P", n, k);
          if (beta.ndim() != 1 || beta.shape(0) != n) throw std::invalid_argument("beta has the wrong shape");
          double* bp = beta.mutable_data();
          const float* dp = D.data();
          py::gil_scoped_release release;
          return tsne_perplexity(dp, n, k, perplexity, tol, max_iter, pp, bp, n_jobs);
        },
        py::arg("D"), py::arg("perplexity"), py::arg("tol"), py::arg("max_iter"), py::arg("P"),
        py::arg("beta"), py::arg("n_jobs") = 0);

  // the Python wrapper passes int32 or int64 ids and float32 or float64 Pc exactly (each binds without a copy)
  def_tsne_symmetrize<int32_t, float>(m);
  def_tsne_symmetrize<int32_t, double>(m);
  def_tsne_symmetrize<int64_t, float>(m);
  def_tsne_symmetrize<int64_t, double>(m);

  def_tsne_attractive<double>(m);  // first: other dtypes convert to float64
  def_tsne_attractive<float>(m);
  m.def("tsne_attractive_loop",
        [](const std::string& cpu_kernel, const std::string& gather, int64_t n_ref, int dim, bool eval_kl) {
          return std::string(tsne_attractive_loop(n_ref, dim, eval_kl, parse_cpu_kernel(cpu_kernel),
                                                  parse_gather_mode(gather)));
        },
        py::arg("cpu_kernel"), py::arg("gather"), py::arg("n_ref") = 0, py::arg("dim") = 2, py::arg("eval_kl") = false,
        "The loop tsne_attractive runs with these settings: 'avx2-hw', 'avx2-scalar', 'avx512-hw', "
        "'avx512-scalar' or 'base'.");
  m.def("gather_mode_name",
        [](const std::string& gather) { return std::string(gather_mode_str(parse_gather_mode(gather))); },
        py::arg("gather"), "'hw' or 'scalar': what gather ('auto': the faster on this CPU) selects.");

  m.def("tsne_bh_repulsive",
        [](CArray<double> Yref, CArray<double> Y, bool same, double theta, double dof,
           CArray<double> out, py::object zsum, int n_jobs) {
          if (Yref.ndim() != 2 || Yref.shape(1) != 2 || Y.ndim() != 2 || Y.shape(1) != 2)
            throw std::invalid_argument("Barnes-Hut needs 2-D embeddings of shape [n, 2]");
          if (Yref.shape(0) < 1) throw std::invalid_argument("Yref is empty");
          if (same && Y.shape(0) != Yref.shape(0)) throw std::invalid_argument("same needs Y == Yref");
          const int64_t n = Y.shape(0), nr = Yref.shape(0);
          double* op = mutable_ptr(out, "out", n, 2);
          double* zp = nullptr;
          CArray<double> z;
          if (!zsum.is_none()) {
            z = zsum.cast<CArray<double>>();
            if (z.ndim() != 1 || z.shape(0) != n || !z.writeable()) throw std::invalid_argument("zsum has the wrong shape");
            zp = z.mutable_data();
          }
          const double *rp = Yref.data(), *yp = Y.data();
          py::gil_scoped_release release;
          return tsne_bh_repulsive(rp, nr, yp, n, same, theta, dof, op, zp, n_jobs);
        },
        py::arg("Yref"), py::arg("Y"), py::arg("same"), py::arg("theta"), py::arg("dof"),
        py::arg("out"), py::arg("zsum") = py::none(), py::arg("n_jobs") = 0);

  def_fft_grid_ops<double>(m);
  def_fft_grid_ops<float>(m);

  m.def("tsne_step",
        [](CArray<double> Y, CArray<double> update, CArray<double> gains, CArray<double> grad,
           double lr, double momentum, double min_gain, double max_step_norm, bool center, int n_jobs) {
          if (Y.ndim() != 2 || Y.shape(1) > 8) throw std::invalid_argument("Y must be [n, dim <= 8]");
          const int64_t n = Y.shape(0);
          const int dim = int(Y.shape(1));
          double* yp = mutable_ptr(Y, "Y", n, dim);
          double* up = mutable_ptr(update, "update", n, dim);
          double* gp = mutable_ptr(gains, "gains", n, dim);
          if (grad.ndim() != 2 || grad.shape(0) != n || grad.shape(1) != dim) throw std::invalid_argument("grad has the wrong shape");
          const double* rp = grad.data();
          py::gil_scoped_release release;
          tsne_step(yp, up, gp, rp, n, dim, lr, momentum, min_gain, max_step_norm, center, n_jobs);
        },
        py::arg("Y"), py::arg("update"), py::arg("gains"), py::arg("grad"), py::arg("lr"),
        py::arg("momentum"), py::arg("min_gain"), py::arg("max_step_norm"), py::arg("center"),
        py::arg("n_jobs") = 0);
  // ---- end t-SNE -------------------------------------------------------------
}
