"""Exact O(N^2) t-SNE / SNE objectives in float64 numpy: the test oracle and
the ``method="exact"`` path for small N.

Kernels (``d_ij`` = Euclidean distance between embedding rows):

* ``student_t`` (t-SNE): ``w_ij = (1 + d_ij^2 / dof)^-dof``, ``q_ij = w_ij / sum_{k!=l} w_kl``,
  ``dC/dy_i = 4 sum_j (p_ij - q_ij) (1 + d_ij^2/dof)^-1 (y_i - y_j)``.
* ``gaussian`` with a joint P (symmetric SNE): ``w_ij = exp(-d_ij^2)``,
  ``dC/dy_i = 4 sum_j (p_ij - q_ij) (y_i - y_j)``.
* ``gaussian`` with a conditional P (plain SNE, Hinton & Roweis 2002):
  ``q_{j|i} = exp(-d_ij^2) / sum_{k!=i} exp(-d_ik^2)``, cost ``sum_i KL(P_i || Q_i)``,
  ``dC/dy_i = 2 sum_j (p_{j|i} - q_{j|i} + p_{i|j} - q_{i|j}) (y_i - y_j)``.
"""
from __future__ import annotations

import numpy as np

_TINY = 1e-300


def _sqdist(Y: np.ndarray) -> np.ndarray:
    sq = (Y * Y).sum(1)
    D = sq[:, None] + sq[None, :] - 2.0 * (Y @ Y.T)
    np.maximum(D, 0.0, out=D)
    np.fill_diagonal(D, 0.0)
    return D


def _kl(P: np.ndarray, Q: np.ndarray) -> float:
    m = P > 0
    return float((P[m] * np.log(P[m] / np.maximum(Q[m], _TINY))).sum())


def exact_kl_gradient(P, Y, *, dof: float = 1.0, kernel: str = "student_t", symmetric: bool = True,
                      exaggeration: float = 1.0):
    """KL divergence and its exact gradient.

    Parameters
    ----------
    P : ndarray, shape (N, N)
        Dense input affinities with a zero diagonal: the joint P (summing to 1)
        when ``symmetric``, else the conditional ``P[i, j] = p_{j|i}`` (rows sum to 1).
    Y : ndarray, shape (N, d)
        Embedding.
    dof : float
        Degrees of freedom of the Student-t kernel.
    kernel : {"student_t", "gaussian"}
    symmetric : bool
        False selects plain (asymmetric) SNE; needs ``kernel="gaussian"``.
    exaggeration : float
        Multiplies P in the attractive term of the gradient (not in the KL).

    Returns
    -------
    kl : float
        KL(P || Q) of the unexaggerated P (``sum_i KL(P_i || Q_i)`` for SNE).
    grad : ndarray of float64, shape (N, d)
        The gradient of the cost with respect to ``Y``.
    """
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    D = _sqdist(Y)
    n = Y.shape[0]
    off = ~np.eye(n, dtype=bool)
    if kernel == "student_t":
        U = 1.0 / (1.0 + D / dof)
        W = U if dof == 1.0 else U ** dof
    elif kernel == "gaussian":
        U = np.ones_like(D)
        W = np.exp(-D)
    else:
        raise ValueError(f"kernel must be 'student_t' or 'gaussian', got {kernel!r}")
    W = W * off
    if symmetric:
        Q = W / W.sum()
        kl = _kl(P, Q)
        M = (exaggeration * P - Q) * U
        grad = 4.0 * (M.sum(1)[:, None] * Y - M @ Y)
    else:
        if kernel != "gaussian":
            raise ValueError("plain SNE (symmetric=False) needs kernel='gaussian'")
        Q = W / W.sum(1, keepdims=True)
        kl = _kl(P, Q)
        M = exaggeration * (P + P.T) - (Q + Q.T)
        grad = 2.0 * (M.sum(1)[:, None] * Y - M @ Y)
    return kl, grad


def exact_affinities(X, perplexity: float) -> np.ndarray:
    """Dense conditional affinities ``p_{j|i}`` over all other points by bisection
    in plain numpy (float64), for testing the compiled calibration.

    Parameters
    ----------
    X : ndarray, shape (N, D)
    perplexity : float

    Returns
    -------
    ndarray of float64, shape (N, N), zero diagonal, rows summing to 1.
    """
    X = np.asarray(X, dtype=np.float64)
    D = _sqdist(X)
    n = X.shape[0]
    P = np.zeros((n, n))
    target = np.log(perplexity)
    for i in range(n):
        d = np.delete(D[i], i)
        d = d - d.min()
        lo, hi = 0.0, np.inf
        beta = 1.0 / max(d.mean(), 1e-12)
        for _ in range(200):
            e = np.exp(-beta * d)
            s = e.sum()
            H = np.log(s) + beta * (e * d).sum() / s
            if abs(H - target) < 1e-10:
                break
            if H > target:
                lo = beta
                beta = beta * 2 if np.isinf(hi) else (beta + hi) / 2
            else:
                hi = beta
                beta = (beta + lo) / 2
        P[i, np.arange(n) != i] = e / s
    return P
