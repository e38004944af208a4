"""Input affinities for t-SNE: perplexity calibration on a kNN graph and the
sparse joint P = (P + P^T) / 2N (compiled core, OpenMP over points)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fastrl._validation import as_float_array, check_int32_points, check_positive
from fastrl.neighbors import knn_graph, knn_query
from fastrl.neighbors.knn import _core, _n_jobs

# Sparse CPU fits (TSNE) store P's values in float32 from this many points on: 8 bytes an edge
# with the int32 column id instead of 12, the sums still in float64 (KL and 10-NN accuracy against
# float64 P: README, t-SNE section). Smaller fits keep float64 P, bit for bit as before.
COMPACT_P_MIN_N = 100_000
PERPLEXITY_TOL = 1e-6  # on the entropy (nats): perplexity within ~perplexity * 1e-6
INT32_IDS = "the sparse t-SNE affinities (int32 CSR column ids)"


def n_neighbors_for(perplexity, n: int) -> int:
    """kNN size used for a perplexity (the largest of a list):
    ``min(N - 1, floor(3 * perplexity))``."""
    return int(min(n - 1, max(1, int(3 * max_perplexity(perplexity)))))


def multiscale_affinities(distances, perplexities, *, n_jobs=None, return_beta: bool = False):
    """Conditional affinities for one perplexity or the mean over several
    (multiscale t-SNE, Lee et al. 2015; openTSNE's ``Multiscale``): each
    scale is calibrated on its own, rows of each sum to 1, then averaged.
    Perplexities above the row's neighbour count are lowered to it.

    Parameters
    ----------
    distances : ndarray, shape (N, k)
    perplexities : float or sequence of float

    Returns
    -------
    P : ndarray of float64, shape (N, k)
    beta : ndarray, shape (N,) of the first scale (with ``return_beta``)
    """
    k = np.shape(distances)[1]
    scales = [perplexities] if np.ndim(perplexities) == 0 else list(perplexities)
    if not scales:
        raise ValueError("perplexity: give at least one value")
    P, beta = None, None
    for p in scales:
        Pc, b = perplexity_affinities(distances, min(float(p), k), n_jobs=n_jobs, return_beta=True)
        P, beta = (Pc, b) if P is None else (P + Pc, beta)
    P /= len(scales)
    return (P, beta) if return_beta else P


def max_perplexity(perplexity) -> float:
    """The largest of one perplexity or a list of them (sets the kNN size)."""
    return float(perplexity) if np.ndim(perplexity) == 0 else float(max(perplexity))


def check_perplexity(perplexity, n: int):
    """Raise unless every perplexity (a number or a list: multiscale) is in
    ``(0, N)``; returns it as a float or a list of floats."""
    if np.ndim(perplexity) == 1:
        if len(perplexity) == 0:
            raise ValueError("perplexity: give at least one value")
        return [check_perplexity(p, n) for p in perplexity]
    return _check_one_perplexity(perplexity, n)


def _check_one_perplexity(perplexity, n: int) -> float:
    """Raise unless ``0 < perplexity < N`` (the one rule on every method, as
    scikit-learn's); returns it as float. A perplexity above the number of
    neighbours a row has (N - 1 with the exact method) gives that row uniform
    affinities, the largest perplexity it can reach."""
    check_positive(perplexity, "perplexity", allow_tensor=False)
    if float(perplexity) >= n:
        raise ValueError(f"perplexity ({perplexity}) must be less than n_samples ({n}): the rule is "
                         "0 < perplexity < N")
    return float(perplexity)


def perplexity_affinities(distances, perplexity: float, *, n_jobs=None, return_beta: bool = False):
    """Conditional Gaussian affinities with a fixed perplexity per row.

    Binary search on each row's precision ``beta_i`` so that
    ``exp(H(P_i)) = perplexity`` with ``P_ij = exp(-beta_i d_ij^2) / sum``.

    Parameters
    ----------
    distances : ndarray, shape (N, k)
        Distances to each row's neighbours (not squared, self excluded).
    perplexity : float
        Target perplexity, ``0 < perplexity <= k``.
    n_jobs : int, optional
    return_beta : bool
        Also return the precisions.

    Returns
    -------
    P : ndarray of float64, shape (N, k)
        Rows sum to 1.
    beta : ndarray of float64, shape (N,)
        Only when ``return_beta``.
    """
    D = as_float_array(distances, "distances")
    k = D.shape[1]
    check_positive(perplexity, "perplexity", allow_tensor=False)
    if perplexity > k:
        raise ValueError(f"perplexity must be <= the number of neighbours per row ({k}), got {perplexity}")
    P = np.empty(D.shape, dtype=np.float64)
    beta = np.empty(D.shape[0], dtype=np.float64)
    _core().tsne_perplexity(D, float(perplexity), PERPLEXITY_TOL, 200, P, beta, _n_jobs(n_jobs))
    return (P, beta) if return_beta else P


def symmetrize(indices, P_cond, n: int | None = None, *, n_jobs=None, dtype=np.float64) -> sp.csr_matrix:
    """Joint affinities ``(P + P^T) / 2N`` from conditional kNN affinities.

    Parameters
    ----------
    indices : ndarray of int64 or int32, shape (N, k)
        kNN indices (self excluded); int32 is used as is (other integer types
        are converted to int64).
    P_cond : ndarray of float64 or float32, shape (N, k)
        Conditional affinities of those neighbours (rows sum to 1); float32 is
        used as is (what the fit passes where ``dtype`` is float32: half the
        bytes while P is built, each value then rounded twice, within 2 float32
        ulps of the float64 result), others are converted to float64.
    dtype : float64 or float32
        Storage of the values, each summed in float64 (float32: 8 bytes an
        edge with its int32 column id instead of 12).

    Returns
    -------
    scipy.sparse.csr_matrix of ``dtype``, shape (N, N)
        Symmetric, sums to 1 (to ``dtype``'s rounding), sorted column indices (int32).
    """
    check_int32_points(indices if n is None else n, "indices" if n is None else "n", INT32_IDS)
    if np.dtype(dtype) not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {np.dtype(dtype)}")
    indices = np.asarray(indices)
    idx = np.ascontiguousarray(indices, dtype=np.int32 if indices.dtype == np.int32 else np.int64)
    P_cond = np.asarray(P_cond)
    Pc = np.ascontiguousarray(P_cond, dtype=np.float32 if P_cond.dtype == np.float32 else np.float64)
    n = idx.shape[0] if n is None else n
    indptr, cols, data = _core().tsne_symmetrize(idx, Pc, _n_jobs(n_jobs), np.dtype(dtype) == np.float32)
    return sp.csr_matrix((data, cols, indptr), shape=(n, n))


def joint_probabilities(X, perplexity: float = 30.0, *, neighbors: str = "auto", metric: str = "euclidean",
                        n_jobs=None, random_state=None) -> sp.csr_matrix:
    """Sparse joint t-SNE affinities of the rows of ``X``.

    kNN graph with ``k = min(N - 1, 3 * perplexity)``, perplexity calibration,
    then ``(P + P^T) / 2N``.

    Parameters
    ----------
    X : ndarray, shape (N, D)
    perplexity : float
        ``0 < perplexity < N``.
    neighbors : {"auto", "exact", "approx"}
        kNN method (see :func:`fastrl.neighbors.knn_graph`).
    metric : {"euclidean", "cosine"}
    n_jobs, random_state : optional

    Returns
    -------
    scipy.sparse.csr_matrix, shape (N, N)
    """
    check_int32_points(X, "X", INT32_IDS)
    X = as_float_array(X, "X")
    n = X.shape[0]
    perplexity = check_perplexity(perplexity, n)
    k = n_neighbors_for(perplexity, n)
    idx, dist = knn_graph(X, k, method=neighbors, metric=metric, n_jobs=n_jobs, random_state=random_state)
    return sparse_from_knn(idx, dist, perplexity, n_jobs=n_jobs)


def sparse_from_knn(idx, dist, perplexity: float, *, n_jobs=None, return_beta: bool = False,
                    dtype=np.float64):
    """Joint sparse affinities from a kNN graph (perplexity lowered to k if larger).

    Parameters
    ----------
    idx : ndarray of int64, shape (N, k)
    dist : ndarray, shape (N, k)
        Distances (squared inside the Gaussian).

    dtype : float64 or float32
        Storage of P's values (see :func:`symmetrize`).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (N, N); and the precisions (N,) with ``return_beta``
    """
    check_int32_points(idx, "idx", INT32_IDS)
    Pc, beta = multiscale_affinities(dist, perplexity, n_jobs=n_jobs, return_beta=True)
    P = symmetrize(idx, Pc, idx.shape[0], n_jobs=n_jobs, dtype=dtype)
    return (P, beta) if return_beta else P


def dense_affinities(X, perplexity: float = 30.0, *, symmetric: bool = True, metric: str = "euclidean",
                     n_jobs=None) -> np.ndarray:
    """Dense affinities over all pairs (for ``method="exact"``, small N).

    Parameters
    ----------
    X : ndarray, shape (N, D)
    perplexity : float
    symmetric : bool
        True: joint ``(P + P^T) / 2N``; False: conditional ``P[i, j] = p_{j|i}``
        (plain SNE).

    Returns
    -------
    ndarray of float64, shape (N, N), zero diagonal.
    """
    X = as_float_array(X, "X")
    n = X.shape[0]
    perplexity = check_perplexity(perplexity, n)
    idx, dist = knn_graph(X, n - 1, method="exact", metric=metric, n_jobs=n_jobs)
    return dense_from_knn(idx, dist, perplexity, symmetric=symmetric, n_jobs=n_jobs)


def dense_from_knn(idx, dist, perplexity: float, *, symmetric: bool = True, n_jobs=None) -> np.ndarray:
    """Dense affinities from every point's N - 1 neighbours and distances.

    Parameters
    ----------
    idx : ndarray of int64, shape (N, N - 1)
    dist : ndarray, shape (N, N - 1)
        Distances (squared inside the Gaussian).
    perplexity : float
        Above N - 1 it is lowered to N - 1 (uniform rows).

    Returns
    -------
    ndarray of float64, shape (N, N)
    """
    n = idx.shape[0]
    Pc = multiscale_affinities(dist, perplexity, n_jobs=n_jobs)
    P = np.zeros((n, n))
    np.put_along_axis(P, idx, Pc, axis=1)
    if symmetric:
        P = (P + P.T) / (2.0 * n)
    return P


def transform_affinities(X_index, X_new, perplexity: float, *, metric: str = "euclidean",
                         n_jobs=None) -> sp.csr_matrix:
    """Affinities of new points to the training points (rows sum to 1).

    Parameters
    ----------
    X_index : ndarray, shape (N, D)
        Training data.
    X_new : ndarray, shape (M, D)
    perplexity : float
        Uses ``k = min(N, 3 * perplexity)`` neighbours from :func:`knn_query`.

    Returns
    -------
    scipy.sparse.csr_matrix of float64, shape (M, N)
    """
    n = check_int32_points(X_index, "X_index", INT32_IDS)
    check_positive(perplexity, "perplexity", allow_tensor=False)
    k = int(min(n, max(1, int(3 * perplexity))))
    idx, dist = knn_query(X_index, X_new, k, metric=metric, n_jobs=n_jobs)
    Pc = perplexity_affinities(dist, min(float(perplexity), k), n_jobs=n_jobs)
    m = idx.shape[0]
    indptr = np.arange(0, (m + 1) * k, k, dtype=np.int64)
    # Sort columns per row so the CSR is canonical.
    order = np.argsort(idx, axis=1, kind="stable")
    cols = np.take_along_axis(idx, order, 1).astype(np.int32).ravel()
    vals = np.take_along_axis(Pc, order, 1).ravel()
    return sp.csr_matrix((vals, cols, indptr), shape=(m, n))


__all__ = ["perplexity_affinities", "symmetrize", "joint_probabilities", "dense_affinities", "dense_from_knn",
           "sparse_from_knn", "multiscale_affinities", "max_perplexity",
           "transform_affinities", "n_neighbors_for", "check_perplexity"]
