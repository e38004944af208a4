"""Dense O(N^2) float64 references for the neighbourhood metrics: the test oracles."""
from __future__ import annotations

import numpy as np


def _sq_dists(A: np.ndarray) -> np.ndarray:
    A = np.asarray(A, dtype=np.float64)
    return ((A[:, None, :] - A[None, :, :]) ** 2).sum(-1)


def _stable_order(D: np.ndarray) -> np.ndarray:
    """Each row's other points sorted by (distance, index), self excluded."""
    D = D.copy()
    np.fill_diagonal(D, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(D.shape[0]), D.shape), D), axis=1)
    return order[:, :-1]


def trustworthiness_reference(X, E, n_neighbors: int = 10) -> float:
    """Venna & Kaski's trustworthiness with ranks r(i, j) in 1..N-1 by
    (distance, index): ``1 - 2 / (N k (2N - 3k - 1)) sum_i sum_{j in U_k(i)} (r(i, j) - k)``."""
    n, k = len(X), n_neighbors
    ox = _stable_order(_sq_dists(X))
    oe = _stable_order(_sq_dists(E))[:, :k]
    rank = np.zeros((n, n), dtype=np.int64)
    rank[np.arange(n)[:, None], ox] = np.arange(1, n)
    r = rank[np.arange(n)[:, None], oe] - k
    return 1.0 - 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)) * r[r > 0].sum()


def knn_recall_reference(X, E, k: int = 10) -> float:
    """Mean fraction of each point's k nearest neighbours in X kept among its
    k nearest neighbours in E."""
    ox = _stable_order(_sq_dists(X))[:, :k]
    oe = _stable_order(_sq_dists(E))[:, :k]
    return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(ox, oe)]))
