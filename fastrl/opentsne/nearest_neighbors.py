"""openTSNE's ``nearest_neighbors`` module on fastrl's kNN search.

Every index takes openTSNE 1.0's constructor ``(data, k, metric, metric_params,
n_jobs, random_state, verbose, knn_kwargs)`` and has ``build()`` (the kNN of
the indexed points, themselves left out) and ``query(query, k)`` (the kNN of
new points among the indexed ones), both returning ``(indices, distances)``:
int64 and float64 arrays of shape (N, k) / (M, k), ascending.

The search is fastrl's (:func:`fastrl.neighbors.knn_graph`,
:func:`fastrl.neighbors.knn_query`): ``Sklearn`` is exact, ``Annoy``,
``NNDescent`` and ``HNSW`` run fastrl's NN-descent (no annoy, pynndescent or
hnswlib needed; their ``knn_kwargs`` are accepted and unused), ``KNNIndex``
itself lets fastrl choose (exact on small data). Metrics other than Euclidean
and cosine use :mod:`fastrl.neighbors.metrics` (exact). Queries are exact.
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from fastrl._validation import check_int, check_real

# metric names of openTSNE's classes that fastrl spells differently
_ALIASES = {"taxicab": "manhattan", "l1": "manhattan", "l2": "euclidean", "linfinity": "chebyshev",
            "linfty": "chebyshev", "linf": "chebyshev", "infinity": "chebyshev",
            "standardised_euclidean": "seuclidean", "p": "minkowski"}


def _seed(random_state):
    """An int seed (or None) from openTSNE's ``random_state`` (None, int or RandomState)."""
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return None if random_state is None else int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    raise ValueError(f"random_state must be None, an int or a numpy RandomState, got {type(random_state).__name__}")


def _as_data(data, name="data"):
    if sp.issparse(data):
        return sp.csr_matrix(data, dtype=np.float64)
    A = check_real(np.asarray(data), name)
    return np.ascontiguousarray(A, dtype=np.float64)


def _dense(A):
    return A.toarray() if sp.issparse(A) else A


@numba.njit(parallel=True, cache=True)
def _neighbour_distances(X, Q, idx, cosine, out):  # pragma: no cover - compiled
    for i in numba.prange(idx.shape[0]):
        for j in range(idx.shape[1]):
            r = idx[i, j]
            acc, nx, nq = 0.0, 0.0, 0.0
            if cosine:
                for t in range(X.shape[1]):
                    acc += X[r, t] * Q[i, t]
                    nx += X[r, t] * X[r, t]
                    nq += Q[i, t] * Q[i, t]
                out[i, j] = 1.0 - acc / np.sqrt(nx * nq)
            else:
                for t in range(X.shape[1]):
                    diff = X[r, t] - Q[i, t]
                    acc += diff * diff
                out[i, j] = np.sqrt(acc)


def _exact_distances(X, Q, idx, metric, scipy_cosine=True):
    """float64 distances from each row of ``Q`` to its neighbours ``X[idx]``
    (Euclidean, or cosine as scipy computes it row by row with ``scipy_cosine``),
    re-sorted ascending (ties by index)."""
    if metric == "cosine" and scipy_cosine:
        from scipy.spatial.distance import cdist
        dist = np.vstack([cdist(q[None], X[i], metric="cosine") for q, i in zip(Q, idx)]) if len(Q) else \
            np.empty(idx.shape)
    else:
        dist = np.empty(idx.shape, dtype=np.float64)
        _neighbour_distances(np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(Q, dtype=np.float64),
                             np.ascontiguousarray(idx, dtype=np.int64), metric == "cosine", dist)
    order = np.lexsort((idx, dist), axis=-1) if idx.size else np.zeros(idx.shape, dtype=np.int64)
    return np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)


class KNNIndex:
    """Base class of the kNN indexes (openTSNE's ``KNNIndex``); used as it is,
    it runs fastrl's automatic choice (exact search when N²·D <= 4e11, 8e11 for k >= 50; NN-descent above).

    Parameters
    ----------
    data : ndarray or scipy.sparse matrix, shape (N, D)
    k : int
        Neighbours per point returned by :meth:`build`, ``1 <= k < N``.
    metric : str or callable
    metric_params : dict, optional
    n_jobs : int
    random_state : None, int or numpy RandomState
        Seeds NN-descent; a RandomState gives one draw.
    verbose : bool
    knn_kwargs : dict, optional
        Options of the peer's search library; fastrl's search takes none
        (``Sklearn`` passes them to scikit-learn's ``NearestNeighbors``).

    Attributes
    ----------
    index : None until :meth:`build`, then the fitted search state.
    n_samples, k : int
    """

    VALID_METRICS = None  # None: every metric fastrl's kNN accepts
    _method = "auto"

    def __init__(self, data, k, metric="euclidean", metric_params=None, n_jobs=1, random_state=None, verbose=False,
                 knn_kwargs=None):
        self.data = _as_data(data)
        self.n_samples = self.data.shape[0]
        self.k = check_int(k, "k", low=1)
        self.metric_params = metric_params
        self.metric = self.check_metric(metric)
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.knn_kwargs = knn_kwargs
        self.index = None

    def check_metric(self, metric):
        """The metric if this index supports it (a callable always), else ValueError."""
        if callable(metric):
            return metric
        if self.VALID_METRICS is not None and metric not in self.VALID_METRICS:
            raise ValueError(f"`{type(self).__name__}` does not support the `{metric}` metric. Please choose one of "
                             f"the supported metrics: {', '.join(self.VALID_METRICS)}.")
        from fastrl.neighbors.metrics import canonical_metric
        # raises for a metric fastrl cannot compute
        canonical_metric(_ALIASES.get(metric, metric), getattr(self, "metric_params", None))
        return metric

    def _fastrl_metric(self):
        return self.metric if callable(self.metric) else _ALIASES.get(self.metric, self.metric)

    def build(self):
        """kNN of the indexed points (self excluded).

        Returns
        -------
        indices : ndarray of int64, shape (N, k)
        distances : ndarray of float64, shape (N, k)
        """
        from fastrl.neighbors import knn_graph
        from fastrl.neighbors.metrics import canonical_metric, metric_knn_graph
        if self.k >= self.n_samples:
            raise ValueError(f"k ({self.k}) must be smaller than the number of samples ({self.n_samples})")
        metric = self._fastrl_metric()
        kind, name, _ = canonical_metric(metric, self.metric_params)
        if kind == "fast":
            from fastrl.neighbors.knn import _choose_method
            X = _dense(self.data)
            method = _choose_method(self._method, X.shape[0], X.shape[1], self.k)
            idx, dist = knn_graph(X, self.k, method=method, metric=name, n_jobs=self.n_jobs,
                                  random_state=_seed(self.random_state))
            self.index = {"method": method, "metric": name}
            if method == "exact":  # the same graph as Sklearn's, with float64 distances
                return _exact_distances(X, X, idx, name, scipy_cosine=False)
        else:  # exact, in float64
            idx, dist = metric_knn_graph(self.data, self.k, metric, self.metric_params, n_jobs=self.n_jobs)
        self.index = {"method": self._method, "metric": name}
        return idx.astype(np.int64, copy=False), np.asarray(dist, dtype=np.float64)

    def query(self, query, k):
        """Exact kNN of new points among the indexed ones.

        Parameters
        ----------
        query : ndarray or scipy.sparse matrix, shape (M, D)
        k : int, ``1 <= k <= N``

        Returns
        -------
        indices : ndarray of int64, shape (M, k)
        distances : ndarray of float64, shape (M, k)
        """
        from fastrl.neighbors import knn_query
        from fastrl.neighbors.metrics import canonical_metric
        k = check_int(k, "k", low=1, high=self.n_samples)
        Q = _as_data(query, "query")
        kind, name, params = canonical_metric(self._fastrl_metric(), self.metric_params)
        if kind == "fast":  # exact search; float64 distances for the neighbours found
            X, Q = _dense(self.data), _dense(Q)
            idx, _ = knn_query(X, Q, k, metric=name, n_jobs=self.n_jobs)
            return _exact_distances(X, Q, idx, name, scipy_cosine=False)
        from sklearn.metrics import pairwise_distances
        D = pairwise_distances(Q, self.data, metric=name, **params)
        idx = np.argsort(D, axis=1, kind="stable")[:, :k]
        return idx.astype(np.int64), np.take_along_axis(D, idx, 1)


class Sklearn(KNNIndex):
    """Exact search (openTSNE's scikit-learn index) on fastrl's compiled kNN;
    Euclidean and cosine distances are recomputed in float64 for the neighbours
    found. With ``knn_kwargs`` (``algorithm``, ``leaf_size``, ...) the search is
    scikit-learn's ``NearestNeighbors`` with those options."""

    VALID_METRICS = ["braycurtis", "canberra", "chebyshev", "cityblock", "dice", "euclidean", "hamming",
                     "haversine", "infinity", "jaccard", "l1", "l2", "mahalanobis", "manhattan", "matching",
                     "minkowski", "p", "rogerstanimoto", "russellrao", "seuclidean",
                     "sokalsneath", "cosine"]
    _method = "exact"

    def _sklearn_search(self, Q, k):
        from sklearn import neighbors
        X, metric = _dense(self.data), self._fastrl_metric()
        if metric == "cosine":  # same ranking as Euclidean on unit rows; distances recomputed below
            X, metric = X / np.linalg.norm(X, axis=1, keepdims=True), "euclidean"
            Q = None if Q is None else Q / np.linalg.norm(Q, axis=1, keepdims=True)
        if self.index is None or Q is None:
            self.index = neighbors.NearestNeighbors(metric=metric, metric_params=self.metric_params,
                                                    n_jobs=self.n_jobs, **{"algorithm": "auto", **self.knn_kwargs})
            self.index.fit(X)
        dist, idx = self.index.kneighbors(Q, n_neighbors=k)
        return idx.astype(np.int64), dist

    def _scipy_distances(self, Q, idx, dist):
        """Euclidean and cosine distances as scipy computes them (float64)."""
        if not callable(self.metric) and self._fastrl_metric() in ("euclidean", "cosine") and not self.metric_params:
            return _exact_distances(_dense(self.data), Q, idx, self._fastrl_metric())
        return idx, np.asarray(dist, dtype=np.float64)

    def build(self):
        if not self.knn_kwargs:
            idx, dist = super().build()
            if self._fastrl_metric() != "cosine":  # already float64 Euclidean (or another exact metric)
                return idx, dist
        else:
            if self.k >= self.n_samples:
                raise ValueError(f"k ({self.k}) must be smaller than the number of samples ({self.n_samples})")
            self.index = None
            idx, dist = self._sklearn_search(None, self.k)
        return self._scipy_distances(_dense(self.data), idx, dist)

    def query(self, query, k):
        Q = _dense(_as_data(query, "query"))
        if self.knn_kwargs and self.index is not None and not isinstance(self.index, dict):
            idx, dist = self._sklearn_search(Q, check_int(k, "k", low=1, high=self.n_samples))
        else:
            idx, dist = super().query(Q, k)
            if self._fastrl_metric() != "cosine":
                return idx, dist
        return self._scipy_distances(Q, idx, dist)


class _Approximate(KNNIndex):
    _method = "approx"


class Annoy(_Approximate):
    """openTSNE's Annoy index, run as fastrl's NN-descent (annoy is not needed)."""

    VALID_METRICS = ["cosine", "euclidean", "manhattan", "l1", "l2", "taxicab"]


class NNDescent(_Approximate):
    """openTSNE's pynndescent index, run as fastrl's NN-descent (pynndescent is not
    needed; metrics beyond Euclidean and cosine are searched exactly)."""

    VALID_METRICS = ["euclidean", "l2", "sqeuclidean", "manhattan", "taxicab", "l1", "chebyshev", "linfinity",
                     "linfty", "linf", "minkowski", "seuclidean", "standardised_euclidean",
                     "mahalanobis", "canberra", "cosine", "correlation", "haversine", "braycurtis", "hamming",
                     "jaccard", "dice", "matching", "rogerstanimoto", "russellrao", "sokalsneath", "yule"]


class HNSW(_Approximate):
    """openTSNE's hnswlib index, run as fastrl's NN-descent (hnswlib is not needed)."""

    VALID_METRICS = ["cosine", "euclidean", "l2"]


class PrecomputedDistanceMatrix(KNNIndex):
    """kNN graph from a square distance matrix (N, N); ``query`` takes the
    (M, N) distances of new points to the indexed ones."""

    def __init__(self, distance_matrix, k):
        from fastrl.neighbors.metrics import metric_knn_graph
        self.k = check_int(k, "k", low=1)
        self.indices, self.distances = metric_knn_graph(distance_matrix, self.k, "precomputed")
        self.n_samples = distance_matrix.shape[0]
        self.metric, self.index = "precomputed", None

    def build(self):
        return self.indices, self.distances

    def query(self, query, k):
        D = _dense(_as_data(query, "query"))
        if D.ndim != 2 or D.shape[1] != self.n_samples:
            raise ValueError(f"query must be an (M, {self.n_samples}) distance matrix, got shape {D.shape}")
        k = check_int(k, "k", low=1, high=self.n_samples)
        idx = np.argsort(D, axis=1, kind="stable")[:, :k]
        return idx.astype(np.int64), np.take_along_axis(D, idx, 1)


class PrecomputedNeighbors(KNNIndex):
    """A kNN graph given as ``neighbors`` (N, k) and ``distances`` (N, k); cannot be queried."""

    def __init__(self, neighbors, distances):
        neighbors, distances = np.asarray(neighbors), np.asarray(distances, dtype=np.float64)
        if neighbors.ndim != 2 or neighbors.shape != distances.shape:
            raise ValueError(f"neighbors and distances must be 2-D of the same shape, got {neighbors.shape} and "
                             f"{distances.shape}")
        self.indices, self.distances = neighbors.astype(np.int64), distances
        self.n_samples, self.k = neighbors.shape
        self.metric, self.index = "precomputed", None

    def build(self):
        return self.indices, self.distances

    def query(self, *args, **kwargs):
        raise RuntimeError("Precomputed distance matrices cannot be queried")


_METHODS = ("auto", "exact", "approx", "annoy", "pynndescent", "hnsw")
_ANNOY_METRICS = frozenset(Annoy.VALID_METRICS)


def get_knn_index(data, method, k, metric, metric_params=None, n_jobs=1, random_state=None, verbose=False,
                  knn_kwargs=None) -> KNNIndex:
    """The index for an affinity's ``method``: "exact" (:class:`Sklearn`),
    "approx" (:class:`Annoy` for dense data and Annoy's metrics, else
    :class:`NNDescent`), "annoy", "pynndescent", "hnsw", "auto" (:class:`KNNIndex`:
    fastrl's choice) or a :class:`KNNIndex` instance; ``metric="precomputed"``
    gives a :class:`PrecomputedDistanceMatrix`. Classes are looked up when called."""
    if isinstance(metric, str) and metric == "precomputed":
        return PrecomputedDistanceMatrix(data, k=k)
    if isinstance(method, KNNIndex):
        return method
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"Unrecognized nearest neighbor algorithm `{method}`. Please choose one of the supported "
                         f"methods ({', '.join(_METHODS)}) or provide a valid `KNNIndex` instance.")
    approx = Annoy if (not sp.issparse(data) and isinstance(metric, str) and metric in _ANNOY_METRICS) else NNDescent
    cls = {"exact": Sklearn, "auto": KNNIndex, "approx": approx, "annoy": Annoy, "pynndescent": NNDescent,
           "hnsw": HNSW}[method]
    return cls(data=data, k=k, metric=metric, metric_params=metric_params, n_jobs=n_jobs, random_state=random_state,
               verbose=verbose, knn_kwargs=knn_kwargs)


__all__ = ["KNNIndex", "Sklearn", "Annoy", "NNDescent", "HNSW", "PrecomputedDistanceMatrix", "PrecomputedNeighbors",
           "get_knn_index"]
