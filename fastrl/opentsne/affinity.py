"""openTSNE's ``affinity`` module on fastrl's kNN graphs and perplexity calibration.

Every class builds ``self.P`` (a sparse (N, N) joint distribution summing to
1) and has ``to_new(data, ...)``: the conditional affinities (M, N) of new
points to the indexed ones (rows sum to 1). Distances enter the Gaussians
squared, as in openTSNE, for every metric.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp

from fastrl._validation import check_real
from fastrl.manifold.tsne.affinities import multiscale_affinities, symmetrize

log = logging.getLogger(__name__)


def _as_data(data):
    if sp.issparse(data):
        return sp.csr_matrix(data, dtype=np.float64)
    A = check_real(np.asarray(data), "data")
    return np.ascontiguousarray(A, dtype=np.float64)


class _KNNIndex:
    """Indexed points and their kNN search (fastrl's compiled kNN for euclidean
    and cosine, :mod:`fastrl.neighbors.metrics` for the other metrics)."""

    def __init__(self, data, metric="euclidean", metric_params=None, method="auto", n_jobs=1, random_state=None):
        self.data = _as_data(data)
        self.metric, self.metric_params = metric, metric_params
        self.method = {"auto": "auto", "exact": "exact", "approx": "approx", "annoy": "approx",
                       "pynndescent": "approx", "hnsw": "approx"}.get(method) if isinstance(method, str) else None
        if self.method is None:
            raise ValueError(f"method must be one of 'auto', 'exact', 'approx', 'annoy', 'pynndescent', got {method!r}")
        self.n_jobs, self.random_state = n_jobs, random_state
        self.k = 0

    def build(self, k: int):
        from fastrl.neighbors import knn_graph
        from fastrl.neighbors.metrics import canonical_metric
        kind, _, _ = canonical_metric(self.metric, self.metric_params)
        seed = self.random_state if isinstance(self.random_state, (int, np.integer)) else None
        X = self.data.toarray() if (sp.issparse(self.data) and kind == "fast") else self.data
        idx, dist = knn_graph(X, k, method=self.method if kind == "fast" else "exact", metric=self.metric,
                              metric_params=self.metric_params, n_jobs=self.n_jobs, random_state=seed)
        self.k = k
        return idx, np.asarray(dist, dtype=np.float64)

    def query(self, query, k: int):
        from fastrl.neighbors import knn_query
        from fastrl.neighbors.metrics import canonical_metric
        Q = _as_data(query)
        A = self.data
        kind, name, params = canonical_metric(self.metric, self.metric_params)
        if kind == "fast":
            idx, dist = knn_query(A.toarray() if sp.issparse(A) else A, Q.toarray() if sp.issparse(Q) else Q, k,
                                  metric=name, n_jobs=self.n_jobs)
            return idx, np.asarray(dist, dtype=np.float64)
        if kind == "precomputed":
            raise ValueError("to_new needs the data, not precomputed distances")
        from sklearn.metrics import pairwise_distances
        D = pairwise_distances(Q, A, metric=name, **params)
        idx = np.argsort(D, axis=1, kind="stable")[:, :k]
        return idx.astype(np.int64), np.take_along_axis(D, idx, 1)


class Affinities:
    """Base class: ``P`` holds the joint affinities (scipy.sparse, shape (N, N))."""

    def __init__(self, verbose=False):
        self.P = None
        self.verbose = verbose

    def to_new(self, data, return_distances=False):  # pragma: no cover - abstract, as in openTSNE
        raise NotImplementedError(f"{type(self).__name__} cannot place new points: use an affinity built "
                                  "from data (PerplexityBasedNN, FixedSigmaNN, Multiscale, ...)")


def _joint(idx, Pc, n: int, symmetrize_: bool) -> sp.csr_matrix:
    if symmetrize_:
        return symmetrize(idx, Pc, n)
    rows = np.repeat(np.arange(n), idx.shape[1])
    P = sp.csr_matrix((Pc.ravel() / n, (rows, idx.ravel())), shape=(n, n))
    P.sum_duplicates()
    return P


def _conditional_csr(idx, Pc, n_ref: int) -> sp.csr_matrix:
    m, k = idx.shape
    P = sp.csr_matrix((Pc.ravel(), idx.ravel(), np.arange(0, m * k + 1, k)), shape=(m, n_ref))
    P.sort_indices()
    return P


def _perplexity(perplexity, k_neighbors):
    """One checked perplexity, or a checked list (multiscale)."""
    checked = _check_perplexities(perplexity, k_neighbors)
    return checked[0] if np.ndim(perplexity) == 0 else checked


def _check_perplexities(perplexities, k_neighbors):
    """openTSNE's rule: a perplexity needing more than the ``k_neighbors``
    available (``3 * perplexity > k``) is lowered to ``k / 3``, with a warning."""
    out = []
    for p in np.atleast_1d(np.asarray(perplexities, dtype=np.float64)):
        if not np.isfinite(p) or p <= 0:
            raise ValueError(f"Perplexity must be > 0 and finite, {p} given")
        if int(3 * p) > k_neighbors:
            new = k_neighbors / 3
            msg = f"Perplexity value {p:g} is too high. Using perplexity {new:.2f} instead"
            log.warning(msg)
            warnings.warn(msg, UserWarning, stacklevel=4)
            p = new
        out.append(float(p))
    return out


class PerplexityBasedNN(Affinities):
    """Gaussian affinities calibrated to a perplexity on the kNN graph
    (``k = min(N - 1, 3 * perplexity)``)."""

    def __init__(self, data=None, perplexity=30, method="auto", metric="euclidean", metric_params=None,
                 symmetrize=True, n_jobs=1, random_state=None, verbose=False, k_neighbors="auto",
                 knn_kwargs=None, knn_index=None):
        super().__init__(verbose)
        if data is None and knn_index is None:
            raise ValueError("At least one of the parameters `data` or `knn_index` must be specified!")
        self.knn_index = knn_index if knn_index is not None else _KNNIndex(
            data, metric, metric_params, method, n_jobs, random_state)
        n = self.knn_index.data.shape[0]
        k = (min(n - 1, int(3 * float(np.max(perplexity)))) if k_neighbors == "auto"
             else min(n - 1, int(k_neighbors)))
        self.perplexity = perplexity
        self.effective_perplexity_ = _perplexity(perplexity, k)
        k = min(n - 1, max(k, 1))
        self.symmetrize, self.n_jobs = symmetrize, n_jobs
        self._idx, self._dist = self.knn_index.build(k)
        self.P = _joint(self._idx, multiscale_affinities(self._dist, self.effective_perplexity_, n_jobs=n_jobs), n,
                        symmetrize)

    def set_perplexity(self, new_perplexity):
        """Recompute P for a perplexity the existing kNN graph supports
        (RuntimeError if it would need more neighbours)."""
        if new_perplexity == self.perplexity:
            return
        p = _perplexity(new_perplexity, np.inf)
        if float(np.max(p)) > self._idx.shape[1]:
            raise RuntimeError(f"The desired perplexity `{float(np.max(p)):.2f}` is larger than the kNN graph "
                               f"allows. Please create a new `{type(self).__name__}` instance with the increased "
                               "perplexity.")
        k = max(1, min(self._idx.shape[1], int(3 * float(np.max(p)))))
        self.perplexity, self.effective_perplexity_ = new_perplexity, p
        self.P = _joint(self._idx[:, :k], multiscale_affinities(self._dist[:, :k], p, n_jobs=self.n_jobs),
                        self._idx.shape[0], self.symmetrize)

    def to_new(self, data, perplexity=None, return_distances=False, k_neighbors="auto"):
        """Conditional affinities (M, N) of new points to the indexed ones (rows sum to 1)."""
        perplexity = self.perplexity if perplexity is None else perplexity
        n = self.knn_index.data.shape[0]
        k = min(n, int(3 * float(np.max(perplexity)))) if k_neighbors == "auto" else min(n, int(k_neighbors))
        k = max(k, 1)
        p = _perplexity(perplexity, k)
        idx, dist = self.knn_index.query(data, k)
        P = _conditional_csr(idx, multiscale_affinities(dist, p, n_jobs=self.n_jobs), n)
        return (P, idx, dist) if return_distances else P


class FixedSigmaNN(Affinities):
    """Gaussian affinities ``exp(-d^2 / (2 sigma^2))`` over each point's ``k`` neighbours."""

    def __init__(self, data=None, sigma=None, k=30, method="auto", metric="euclidean", metric_params=None,
                 symmetrize=True, n_jobs=1, random_state=None, verbose=False, knn_kwargs=None, knn_index=None):
        super().__init__(verbose)
        if sigma is None or not np.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"`sigma` must be a positive number, got {sigma!r}")
        self.sigma = float(sigma)
        self.knn_index = knn_index if knn_index is not None else _KNNIndex(
            data, metric, metric_params, method, n_jobs, random_state)
        n = self.knn_index.data.shape[0]
        k = min(n - 1, int(k))
        idx, dist = self.knn_index.build(k)
        self.P = _joint(idx, self._kernel(dist), n, symmetrize)

    def _kernel(self, dist, sigma=None):
        s = self.sigma if sigma is None else float(sigma)
        W = np.exp(-(dist ** 2 - (dist[:, :1] ** 2)) / (2 * s * s))  # shifted by the nearest: no underflow
        return W / W.sum(1, keepdims=True)

    def to_new(self, data, k=None, sigma=None, return_distances=False):
        """Conditional affinities (M, N) of new points (rows sum to 1)."""
        n = self.knn_index.data.shape[0]
        idx, dist = self.knn_index.query(data, min(n, int(k or self.knn_index.k)))
        P = _conditional_csr(idx, self._kernel(dist, sigma), n)
        return (P, idx, dist) if return_distances else P


class MultiscaleMixture(Affinities):
    """Multiscale affinities with a Gaussian-mixture kernel: the per-scale
    kernels (each calibrated to its perplexity) are summed before the row is
    normalised."""

    _average_after = False

    def __init__(self, data=None, perplexities=None, method="auto", metric="euclidean", metric_params=None,
                 symmetrize=True, n_jobs=1, random_state=None, verbose=False, knn_kwargs=None, knn_index=None):
        super().__init__(verbose)
        if perplexities is None or np.ndim(perplexities) != 1 or len(perplexities) == 0:
            raise ValueError("`perplexities` must be a non-empty list of numbers")
        self.knn_index = knn_index if knn_index is not None else _KNNIndex(
            data, metric, metric_params, method, n_jobs, random_state)
        n = self.knn_index.data.shape[0]
        self.perplexities = self.check_perplexities(perplexities, n)
        self.effective_perplexities_ = self.perplexities
        self.n_jobs, self.symmetrize = n_jobs, symmetrize
        k = max(1, min(n - 1, int(3 * max(self.perplexities))))
        self._idx, self._dist = self.knn_index.build(k)
        self.P = _joint(self._idx, self._conditional(self._dist, self.perplexities), n, symmetrize)

    @staticmethod
    def check_perplexities(perplexities, n_samples):
        """openTSNE's rule: sorted; one above (N - 1) / 3 is lowered to it (with
        a warning) and dropped if that value is already in the list."""
        usable = []
        for p in sorted(float(v) for v in np.atleast_1d(perplexities)):
            if not np.isfinite(p) or p <= 0:
                raise ValueError(f"Perplexity must be > 0 and finite, {p} given")
            if 3 * p > n_samples - 1:
                new = (n_samples - 1) / 3
                msg = (f"Perplexity value {p:g} is too high. Dropping because the max perplexity is already in the "
                       "list." if new in usable else f"Perplexity value {p:g} is too high. Using perplexity "
                       f"{new:.2f} instead")
                log.warning(msg)
                warnings.warn(msg, UserWarning, stacklevel=3)
                if new not in usable:
                    usable.append(new)
            else:
                usable.append(p)
        return usable

    def set_perplexities(self, new_perplexities):
        """Recompute P for perplexities the existing kNN graph supports (RuntimeError otherwise)."""
        if list(new_perplexities) == list(self.perplexities):
            return
        new = self.check_perplexities(new_perplexities, self._idx.shape[0])
        if 3 * max(new) > self._idx.shape[1] + 1e-9:
            raise RuntimeError(f"The desired perplexities need more neighbours than the kNN graph has "
                               f"({self._idx.shape[1]}); create a new `{type(self).__name__}` instance")
        k = max(1, min(self._idx.shape[1], int(3 * max(new))))
        self.perplexities = self.effective_perplexities_ = new
        self.P = _joint(self._idx[:, :k], self._conditional(self._dist[:, :k], new), self._idx.shape[0],
                        self.symmetrize)

    def _conditional(self, dist, perplexities):
        if self._average_after:
            return multiscale_affinities(dist, perplexities, n_jobs=self.n_jobs)
        from fastrl.manifold.tsne.affinities import perplexity_affinities
        W = np.zeros_like(dist)
        d2 = dist ** 2 - dist[:, :1] ** 2
        for p in perplexities:
            _, beta = perplexity_affinities(dist, min(p, dist.shape[1]), n_jobs=self.n_jobs, return_beta=True)
            W += np.exp(-beta[:, None] * d2)
        return W / W.sum(1, keepdims=True)

    def to_new(self, data, perplexities=None, return_distances=False):
        """Conditional affinities (M, N) of new points (rows sum to 1)."""
        perplexities = self.perplexities if perplexities is None else perplexities
        n = self.knn_index.data.shape[0]
        k = max(1, min(n, int(3 * max(perplexities))))
        idx, dist = self.knn_index.query(data, k)
        P = _conditional_csr(idx, self._conditional(dist, _check_perplexities(perplexities, k)), n)
        return (P, idx, dist) if return_distances else P


class Multiscale(MultiscaleMixture):
    """Multiscale affinities: each scale's conditional distribution is
    calibrated and normalised on its own, then they are averaged."""

    _average_after = True


class Uniform(Affinities):
    """Uniform affinities ``1 / k`` over each point's ``k_neighbors`` nearest neighbours."""

    def __init__(self, data=None, k_neighbors=30, method="auto", metric="euclidean", metric_params=None,
                 symmetrize=True, n_jobs=1, random_state=None, verbose=False, knn_kwargs=None, knn_index=None):
        super().__init__(verbose)
        self.knn_index = knn_index if knn_index is not None else _KNNIndex(
            data, metric, metric_params, method, n_jobs, random_state)
        n = self.knn_index.data.shape[0]
        k = min(n - 1, int(k_neighbors))
        if k < 1:
            raise ValueError(f"k_neighbors must be >= 1, got {k_neighbors}")
        idx, _ = self.knn_index.build(k)
        self.P = _joint(idx, np.full(idx.shape, 1.0 / k), n, symmetrize)

    def to_new(self, data, k_neighbors=None, return_distances=False):
        """Conditional affinities (M, N) of new points (rows sum to 1)."""
        n = self.knn_index.data.shape[0]
        k = min(n, int(k_neighbors or self.knn_index.k))
        idx, dist = self.knn_index.query(data, k)
        P = _conditional_csr(idx, np.full(idx.shape, 1.0 / k), n)
        return (P, idx, dist) if return_distances else P


class PrecomputedAffinities(Affinities):
    """Affinities given as a (sparse or dense) square matrix; ``normalize``
    divides by the total so that P sums to 1."""

    def __init__(self, affinities, normalize=True):
        super().__init__()
        if affinities.ndim != 2 or affinities.shape[0] != affinities.shape[1]:
            raise ValueError(f"`affinities` must be a square matrix, got shape {affinities.shape}")
        P = sp.csr_matrix(affinities, dtype=np.float64)
        if P.nnz and (not np.isfinite(P.data).all() or P.data.min() < 0):
            raise ValueError("`affinities` must be finite and non-negative")
        if normalize:
            total = P.sum()
            if total <= 0:
                raise ValueError("`affinities` sum to 0: nothing to normalise")
            P = P / total
        self.P = sp.csr_matrix(P)

    def to_new(self, data, return_distances=False):
        raise RuntimeError("PrecomputedAffinities has no data: it cannot compute affinities to new points")


__all__ = ["Affinities", "PerplexityBasedNN", "FixedSigmaNN", "MultiscaleMixture", "Multiscale", "Uniform",
           "PrecomputedAffinities"]
