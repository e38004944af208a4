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

from fastrl.manifold.tsne.affinities import multiscale_affinities, symmetrize
from fastrl.opentsne import nearest_neighbors as _nn

log = logging.getLogger(__name__)


def _knn_index(data, knn_index, k_of_n, method, metric, metric_params, n_jobs, random_state, verbose, knn_kwargs):
    """The kNN index of an affinity: ``knn_index`` as given, or one built on
    ``data`` with ``k = k_of_n(N)`` neighbours (exactly one of the two)."""
    if data is None and knn_index is None:
        raise ValueError("At least one of the parameters `data` or `knn_index` must be specified!")
    if data is not None and knn_index is not None:
        raise ValueError("Both `data` or `knn_index` were specified! Please pass only one.")
    if knn_index is not None:
        if not isinstance(knn_index, _nn.KNNIndex):
            raise ValueError(f"`knn_index` must be a nearest_neighbors.KNNIndex, got {type(knn_index).__name__}")
        return knn_index
    return _nn.get_knn_index(data, method, k_of_n(data.shape[0]), metric, metric_params, n_jobs=n_jobs,
                             random_state=random_state, verbose=verbose, knn_kwargs=knn_kwargs)


class Affinities:
    """Base class: ``P`` holds the joint affinities (scipy.sparse, shape (N, N))."""

    def __init__(self, verbose=False):
        self.P = None
        self.knn_index = None
        self.verbose = verbose

    @property
    def n_samples(self) -> int:
        """Number of indexed points (N)."""
        if self.knn_index is not None:
            return self.knn_index.n_samples
        if self.P is None:
            raise RuntimeError("`knn_index` is not set!")
        return self.P.shape[0]

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
        top = int(3 * float(np.max(perplexity))) if k_neighbors == "auto" else int(k_neighbors)
        self.knn_index = _knn_index(data, knn_index, lambda n: max(1, min(n - 1, top)), method, metric,
                                    metric_params, n_jobs, random_state, verbose, knn_kwargs)
        n = self.knn_index.n_samples
        self.perplexity = perplexity
        self.effective_perplexity_ = _perplexity(perplexity, self.knn_index.k)
        self.symmetrize, self.n_jobs = symmetrize, n_jobs
        self._idx, self._dist = self.knn_index.build()
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
        if 3 * float(np.max(p)) > self._idx.shape[1]:
            log.warning("The new perplexity is close to the number of nearest neighbors computed (%d): the "
                        "results may be unexpected. Consider creating a new `%s` instance with the increased "
                        "perplexity.", self._idx.shape[1], type(self).__name__)
        k = max(1, min(self._idx.shape[1], int(3 * float(np.max(p)))))
        self.perplexity, self.effective_perplexity_ = new_perplexity, p
        self.P = _joint(self._idx[:, :k], multiscale_affinities(self._dist[:, :k], p, n_jobs=self.n_jobs),
                        self._idx.shape[0], self.symmetrize)

    def to_new(self, data, perplexity=None, return_distances=False, k_neighbors="auto"):
        """Conditional affinities (M, N) of new points to the indexed ones (rows sum to 1)."""
        perplexity = self.perplexity if perplexity is None else perplexity
        n = self.knn_index.n_samples
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
        self.knn_index = _knn_index(data, knn_index, lambda n: max(1, min(n - 1, int(k))), method, metric,
                                    metric_params, n_jobs, random_state, verbose, knn_kwargs)
        n = self.knn_index.n_samples
        idx, dist = self.knn_index.build()
        self.P = _joint(idx, self._kernel(dist), n, symmetrize)

    def _kernel(self, dist, sigma=None):
        s = self.sigma if sigma is None else float(sigma)
        W = np.exp(-(dist ** 2 - (dist[:, :1] ** 2)) / (2 * s * s))  # shifted by the nearest: no underflow
        return W / W.sum(1, keepdims=True)

    def to_new(self, data, k=None, sigma=None, return_distances=False):
        """Conditional affinities (M, N) of new points (rows sum to 1)."""
        n = self.knn_index.n_samples
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
        if perplexities is None or np.ndim(perplexities) > 1 or np.size(perplexities) == 0:
            raise ValueError("`perplexities` must be a number or a non-empty list of numbers")
        top = int(3 * float(np.max(perplexities)))  # lowered perplexities need at most N - 1
        self.knn_index = _knn_index(data, knn_index, lambda n: max(1, min(n - 1, top)), method, metric,
                                    metric_params, n_jobs, random_state, verbose, knn_kwargs)
        n = self.knn_index.n_samples
        self.perplexities = perplexities  # as given; the ones used are effective_perplexities_
        self.effective_perplexities_ = self.check_perplexities(perplexities,
                                                               n if knn_index is None else knn_index.k + 1)
        self.n_jobs, self.symmetrize = n_jobs, symmetrize
        self._idx, self._dist = self.knn_index.build()
        self.P = _joint(self._idx, self._conditional(self._dist, self.effective_perplexities_), n, symmetrize)

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
        if np.array_equal(np.atleast_1d(new_perplexities), np.atleast_1d(self.perplexities)):
            return
        new = self.check_perplexities(new_perplexities, self._idx.shape[0])
        if 3 * max(new) > self._idx.shape[1] + 1e-9:
            raise RuntimeError(f"The desired perplexities need more neighbours than the kNN graph has "
                               f"({self._idx.shape[1]}); create a new `{type(self).__name__}` instance")
        k = max(1, min(self._idx.shape[1], int(3 * max(new))))
        self.perplexities, self.effective_perplexities_ = new_perplexities, new
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
        perplexities = self.effective_perplexities_ if perplexities is None else np.atleast_1d(perplexities)
        n = self.knn_index.n_samples
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
        if symmetrize not in (True, False, "max", "mean", "none"):
            raise ValueError(f"Symmetrization method `{symmetrize}` is not recognized.")
        if data is not None and knn_index is None and int(k_neighbors) >= np.shape(data)[0]:
            raise ValueError(f"`k_neighbors` ({int(k_neighbors)}) cannot be larger than N-1 ({np.shape(data)[0]}).")
        if int(k_neighbors) < 1:
            raise ValueError(f"k_neighbors must be >= 1, got {k_neighbors}")
        self.knn_index = _knn_index(data, knn_index, lambda n: int(k_neighbors), method, metric, metric_params,
                                    n_jobs, random_state, verbose, knn_kwargs)
        n = self.knn_index.n_samples
        idx, _ = self.knn_index.build()
        k = idx.shape[1]
        rows = np.repeat(np.arange(n), k)
        P = sp.csr_matrix((np.ones(n * k), (rows, idx.ravel())), shape=(n, n))
        P.sum_duplicates()
        if symmetrize is True or symmetrize == "max":  # union of the kNN edges, each weighted 1
            P = (P + P.T > 0).astype(np.float64)
        elif symmetrize == "mean":
            P = (P + P.T) / 2
        self.P = sp.csr_matrix(P / P.sum())

    def to_new(self, data, k_neighbors=None, return_distances=False):
        """Conditional affinities (M, N) of new points (rows sum to 1)."""
        n = self.knn_index.n_samples
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
