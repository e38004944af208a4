"""Classical (Torgerson) multidimensional scaling."""
from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import eigh
from scipy.sparse.linalg import eigsh

from fastrl._validation import as_float_array
from fastrl.manifold.classical._utils import check_n_components, sign_flip


def _check_distance_matrix(D) -> np.ndarray:
    A = as_float_array(D, "D", dtype=np.float64)
    n, m = A.shape
    if n != m:
        raise ValueError(f"D must be a square distance matrix, got shape {A.shape}")
    scale = max(float(np.abs(A).max()), 1e-300)
    if not np.allclose(A, A.T, rtol=1e-5, atol=1e-8 * scale):
        err = float(np.abs(A - A.T).max())
        raise ValueError(f"D must be symmetric: max |D - D.T| = {err:.3g}")
    if (A < 0).any():
        raise ValueError("D must be non-negative (it holds distances)")
    if np.abs(np.diag(A)).max() > 1e-8 * scale:
        raise ValueError("D must have a zero diagonal (the distance of a point to itself)")
    return 0.5 * (A + A.T)


def _top_eigh(B: np.ndarray, k: int):
    """Largest ``k`` eigenpairs of the symmetric ``B``, descending."""
    n = B.shape[0]
    if n <= 500 or k > n // 10:
        w, V = eigh(B, subset_by_index=[n - k, n - 1])
    else:
        v0 = np.random.default_rng(0).standard_normal(n)
        w, V = eigsh(B, k=k, which="LA", v0=v0)
    order = np.argsort(w)[::-1]
    return w[order], V[:, order]


def classical_mds(D=None, X=None, n_components: int = 2, *, return_eigenvalues: bool = False):
    """Classical MDS: the top eigenvectors of the double-centred squared distances.

    ``K = -1/2 J D^2 J`` with ``J = I - 11^T/N``; the embedding is
    ``V_k diag(sqrt(lambda_k))``. On Euclidean distances ``K`` is the Gram
    matrix of the centred points, so the result equals PCA up to sign.

    Parameters
    ----------
    D : array-like, shape (N, N), optional
        Symmetric, non-negative distances with a zero diagonal (not squared).
    X : array-like, shape (N, F), optional
        Points; then ``K = X_c X_c^T`` (Euclidean distances), never forming D.
        Give exactly one of ``D`` and ``X``.
    n_components : int
        ``1 <= n_components < N``.
    return_eigenvalues : bool
        Also return the top eigenvalues of ``K``.

    Returns
    -------
    embedding : ndarray float64, shape (N, n_components)
        Each column's largest-magnitude entry is positive.
    eigenvalues : ndarray, shape (n_components,), only with ``return_eigenvalues``

    Warns
    -----
    UserWarning
        When a kept eigenvalue is negative (D is not Euclidean); those
        coordinates are set to 0.
    """
    if (D is None) == (X is None):
        raise ValueError("give exactly one of D (distances) or X (points)")
    if D is not None:
        D2 = _check_distance_matrix(D) ** 2
        n = D2.shape[0]
        k = check_n_components(n_components, n)
        # -1/2 J D^2 J without forming J: subtract row and column means, add the grand mean
        row = D2.mean(axis=1, keepdims=True)
        B = -0.5 * (D2 - row - row.T + D2.mean())
    else:
        A = as_float_array(X, "X", dtype=np.float64)
        n = A.shape[0]
        k = check_n_components(n_components, n)
        Ac = A - A.mean(axis=0)
        B = Ac @ Ac.T
    w, V = _top_eigh(B, k)
    if (w < 0).any():
        warnings.warn(f"classical_mds: {int((w < 0).sum())} of the top {k} eigenvalues are negative "
                      "(D is not Euclidean); their coordinates are set to 0", UserWarning, stacklevel=2)
    E = sign_flip(V * np.sqrt(np.clip(w, 0.0, None)))
    return (E, w) if return_eigenvalues else E
