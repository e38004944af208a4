"""Distances beyond Euclidean / cosine for the kNN graph, t-SNE, trustworthiness
and the spectral embedding: named metrics, callables, ``metric_params`` and
precomputed (dense or sparse) distance matrices.

Three paths:

* ``"euclidean"`` / ``"cosine"`` (and their aliases) stay on the compiled
  blocked kNN (:func:`fastrl.neighbors.knn_graph`);
* ``"manhattan"``, ``"chebyshev"`` and ``"minkowski"`` run a compiled (Numba)
  brute force that keeps each row's k best in a sorted buffer (ties by index);
* everything else that :func:`sklearn.metrics.pairwise_distances` accepts
  (callables included) goes through its chunked form (scikit-learn is needed
  for this path only).

``metric="precomputed"`` takes an (N, N) distance matrix, dense or sparse
(CSR; each row must store at least ``k + 1`` entries, as scikit-learn's
``NearestNeighbors(metric="precomputed")`` requires).
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

FAST = {"euclidean": "euclidean", "l2": "euclidean", "cosine": "cosine"}
COMPILED = {"manhattan": "manhattan", "cityblock": "manhattan", "l1": "manhattan", "chebyshev": "chebyshev",
            "infinity": "chebyshev", "minkowski": "minkowski"}


def canonical_metric(metric, metric_params=None):
    """Resolve aliases: returns ``(kind, name, params)`` with ``kind`` one of
    ``"fast"``, ``"compiled"``, ``"precomputed"`` or ``"generic"``.

    ``minkowski`` with ``p=1``, ``2`` or ``inf`` maps to manhattan, euclidean
    and chebyshev.
    """
    params = dict(metric_params or {})
    if callable(metric):
        return "generic", metric, params
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a string or a callable, got {type(metric).__name__}")
    if metric == "precomputed":
        return "precomputed", metric, params
    if metric == "minkowski" and set(params) <= {"p"}:
        p = float(params.get("p", 2.0))
        if not p > 0:
            raise ValueError(f"metric_params['p'] must be > 0 for the minkowski metric, got {p}")
        name = {1.0: "manhattan", 2.0: "euclidean", np.inf: "chebyshev"}.get(p)
        if name == "euclidean":
            return "fast", name, {}
        if name is not None:
            return "compiled", name, {}
        return "compiled", "minkowski", {"p": p}
    if metric in FAST and not params:
        return "fast", FAST[metric], {}
    if metric in COMPILED and not params:
        return "compiled", COMPILED[metric], {}
    if metric == "mahalanobis" and not {"V", "VI"} & set(params):
        # scikit-learn's NearestNeighbors (and scipy) refuse it too: no silent covariance from the data
        raise ValueError("Must provide either V or VI for Mahalanobis distance (metric_params={'V': ...})")
    if metric == "mahalanobis" and "V" in params:  # scipy's pdist takes VI only
        params["VI"] = np.linalg.inv(np.asarray(params.pop("V"), dtype=np.float64)).T
    from sklearn.metrics.pairwise import _VALID_METRICS
    if metric not in _VALID_METRICS:
        raise ValueError(f"metric must be one of {sorted(_VALID_METRICS)}, 'precomputed' or a callable, "
                         f"got {metric!r}")
    return "generic", metric, params


@numba.njit(parallel=True, cache=True)
def _knn_lp(X, Q, k, kind, p, exclude_self, out_idx, out_dist):
    """Brute-force kNN under an l_p distance (kind 0: l1, 1: l_inf, 2: l_p).

    Each query row keeps its k best (value, index) pairs sorted in a buffer;
    a candidate enters only if strictly better than the worst, scanned in
    index order, so ties go to the smaller index.
    """
    n, d = X.shape
    m = Q.shape[0]
    for i in numba.prange(m):
        bd = np.full(k, np.inf)
        bi = np.full(k, -1, dtype=np.int64)
        for j in range(n):
            if exclude_self and j == i:
                continue
            s = 0.0
            for t in range(d):
                a = abs(Q[i, t] - X[j, t])
                if kind == 0:
                    s += a
                elif kind == 1:
                    if a > s:
                        s = a
                else:
                    s += a ** p
            if s < bd[k - 1]:
                pos = k - 1
                while pos > 0 and bd[pos - 1] > s:
                    bd[pos] = bd[pos - 1]
                    bi[pos] = bi[pos - 1]
                    pos -= 1
                bd[pos] = s
                bi[pos] = j
        for q in range(k):
            out_idx[i, q] = bi[q]
            out_dist[i, q] = bd[q] ** (1.0 / p) if kind == 2 else bd[q]


def _check_nonnegative(D, what: str):
    vals = D.data if sp.issparse(D) else D
    if vals.size and np.nanmin(vals) < 0:
        if what == "precomputed":
            raise ValueError("All distances should be positive, the precomputed distances given as X is not correct")
        raise ValueError("All distances should be positive, the metric given is not correct")


def pairwise(X, metric, metric_params=None, *, n_jobs=None) -> np.ndarray:
    """Dense (N, N) float64 distances of the rows of ``X`` under ``metric``
    (scikit-learn's :func:`~sklearn.metrics.pairwise_distances`; for
    ``"precomputed"`` ``X`` is validated and returned as float64)."""
    kind, name, params = canonical_metric(metric, metric_params)
    if kind == "precomputed":
        return check_precomputed(X, dense=True)
    from sklearn.metrics import pairwise_distances
    D = pairwise_distances(X, metric=name, n_jobs=n_jobs, **params)
    D = np.asarray(D, dtype=np.float64)
    _check_nonnegative(D, "metric")
    return D


def check_precomputed(D, *, dense: bool = False):
    """scikit-learn's validation of a precomputed distance matrix: 2-D,
    square, finite, non-negative. Sparse input is returned as canonical CSR
    float64 (``dense=True`` refuses it with a TypeError)."""
    if sp.issparse(D):
        if dense:
            raise TypeError('PCA initialization and method="exact" need dense distances: a sparse precomputed '
                            "distance matrix is not supported here; use method='barnes_hut'")
        D = sp.csr_matrix(D, dtype=np.float64)
        D.sum_duplicates()
        vals = D.data
    else:
        D = np.asarray(D)
        if D.dtype == object or np.iscomplexobj(D) or not np.issubdtype(D.dtype, np.number):
            raise TypeError(f"precomputed distances must be real numbers, got dtype {D.dtype}")
        D = np.ascontiguousarray(D, dtype=np.float64)
        vals = D
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"X should be a square distance matrix but has shape {D.shape}")
    if vals.size and not np.isfinite(vals).all():
        raise ValueError("Input contains NaN or infinity: precomputed distances must be finite")
    _check_nonnegative(D, "precomputed")
    return D


def _knn_from_rows(D: np.ndarray, k: int, start: int):
    """k smallest per row of a dense distance block, the diagonal entry
    (row ``r`` is point ``start + r``) excluded; ties by index."""
    D = np.array(D, dtype=np.float64, copy=True)
    r = np.arange(D.shape[0])
    D[r, r + start] = np.inf
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return idx.astype(np.int64), np.take_along_axis(D, idx, 1)


def _knn_sparse_precomputed(D: sp.csr_matrix, k: int):
    n = D.shape[0]
    nnz = np.diff(D.indptr)
    if nnz.min() < k + 1:  # scikit-learn's rule: the row's own entry counts
        raise ValueError(f"{k + 1} neighbors per samples are required, but some samples have only {nnz.min()} "
                         "neighbors in precomputed graph matrix. Decrease number of neighbors used or recompute "
                         "the graph with more neighbors.")
    idx = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float64)
    for i in range(n):
        lo, hi = D.indptr[i], D.indptr[i + 1]
        cols, vals = D.indices[lo:hi], D.data[lo:hi]
        keep = cols != i
        cols, vals = cols[keep], vals[keep]
        order = np.lexsort((cols, vals))[:k]
        idx[i], dist[i] = cols[order], vals[order]
    return idx, dist


def metric_knn_graph(X, k: int, metric, metric_params=None, *, n_jobs=None):
    """kNN graph (self excluded) for the metrics not on the compiled
    Euclidean / cosine path.

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix, shape (N, D), or (N, N) for "precomputed"
    k : int
        ``1 <= k < N``.
    metric : str or callable
    metric_params : dict, optional

    Returns
    -------
    indices : ndarray of int64, shape (N, k)
    distances : ndarray of float64, shape (N, k)
        Ascending, ties by index.
    """
    kind, name, params = canonical_metric(metric, metric_params)
    if kind == "precomputed":
        D = check_precomputed(X)
        n = D.shape[0]
        if not 1 <= k < n:
            raise ValueError(f"k must be in [1, N) (N = {n}), got k={k}")
        return _knn_sparse_precomputed(D, k) if sp.issparse(D) else _knn_from_rows(D, k, 0)
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        if X.nnz and not np.isfinite(X.data).all():
            raise ValueError("X contains NaN or inf")
    else:
        from fastrl._validation import as_float_array
        X = as_float_array(X, "X", dtype=np.float64)  # 2-D, non-empty, finite
    n = X.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, N) (N = {n}), got k={k}")
    if kind in ("compiled", "fast") and not sp.issparse(X):
        A = X
        code = {"manhattan": 0, "chebyshev": 1, "minkowski": 2}[name] if kind == "compiled" else 2
        p = float(params.get("p", 2.0))
        idx = np.empty((n, k), dtype=np.int64)
        dist = np.empty((n, k), dtype=np.float64)
        _knn_lp(A, A, k, code, p, True, idx, dist)
        return idx, dist
    from sklearn.metrics import pairwise_distances_chunked
    parts = []
    start = 0
    for block in pairwise_distances_chunked(X, metric=name, n_jobs=n_jobs, **params):
        _check_nonnegative(block, "metric")
        parts.append(_knn_from_rows(block, k, start))
        start += block.shape[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


__all__ = ["canonical_metric", "check_precomputed", "metric_knn_graph", "pairwise"]
