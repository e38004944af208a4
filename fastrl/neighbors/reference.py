"""Plain numpy reference for kNN (float64, O(N^2) memory): the test oracle."""
from __future__ import annotations

import numpy as np


def knn_reference(X_index, X_query, k: int, metric: str = "euclidean", exclude_self: bool = False):
    """Brute-force kNN in float64.

    Returns ``(indices int64 [M, k], distances float64 [M, k])`` sorted by
    (distance, index).
    """
    A = np.asarray(X_index, dtype=np.float64)
    Q = np.asarray(X_query, dtype=np.float64)
    if metric == "cosine":
        A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-300)
        Q = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-300)
        D = np.maximum(1.0 - Q @ A.T, 0.0)
    else:
        D = np.sqrt(np.maximum(((Q[:, None, :] - A[None, :, :]) ** 2).sum(-1), 0.0))
    if exclude_self:
        np.fill_diagonal(D, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(A.shape[0]), D.shape), D), axis=1)[:, :k]
    return order.astype(np.int64), np.take_along_axis(D, order, axis=1)
