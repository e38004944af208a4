"""All the quality criteria of an embedding in one call."""
from __future__ import annotations

import numpy as np

from fastrl.metrics.neighborhood import knn_accuracy, knn_recall, trustworthiness
from fastrl.metrics.probe import linear_probe


def embedding_report(X, E, y=None, *, n_neighbors: int = 10, test_fraction: float = 0.2,
                     random_state: int | None = 0) -> dict:
    """Trustworthiness, kNN recall and (with labels) kNN and linear-probe accuracy.

    Parameters
    ----------
    X : array-like, shape (N, D)
        Input space.
    E : array-like, shape (N, d)
        Embedding.
    y : array-like, shape (N,), optional
        Labels for the two accuracies.
    n_neighbors : int
        k of trustworthiness, kNN recall and the kNN classifier (5-fold).
    test_fraction : float
        Held-out share of a random split for the linear probe.
    random_state : int, optional

    Returns
    -------
    dict
        ``trustworthiness``, ``knn_recall`` and, with labels, ``knn_accuracy``
        and ``linear_probe``.
    """
    out = {f"trustworthiness@{n_neighbors}": trustworthiness(X, E, n_neighbors),
           f"knn_recall@{n_neighbors}": knn_recall(X, E, n_neighbors)}
    if y is not None:
        y = np.asarray(y)
        E = np.asarray(E)
        out[f"knn_accuracy@{n_neighbors}"] = knn_accuracy(E, y, n_neighbors, cv=5, random_state=random_state)
        perm = np.random.default_rng(random_state).permutation(len(y))
        n_test = max(1, int(round(test_fraction * len(y))))
        te, tr = perm[:n_test], perm[n_test:]
        out["linear_probe"] = linear_probe(E[tr], y[tr], E[te], y[te])
    return out
