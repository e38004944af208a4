"""Classical (Torgerson) multidimensional scaling."""
from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import eigh
from scipy.sparse.linalg import eigsh

from fastrl._validation import as_float_array
from fastrl.manifold.classical._utils import EstimatorBase, check_input_matrix, check_n_components, sign_flip


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
    scale = 1.0
    if D is not None:
        Dc = _check_distance_matrix(D)
        # work on D / max(D): squares of distances near 1e200 would overflow float64
        scale = float(Dc.max()) or 1.0
        D2 = (Dc / scale) ** 2
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
        scale = float(np.abs(Ac).max()) or 1.0
        Ac /= scale
        B = Ac @ Ac.T
    w, V = _top_eigh(B, k)
    if (w < 0).any():
        warnings.warn(f"classical_mds: {int((w < 0).sum())} of the top {k} eigenvalues are negative "
                      "(D is not Euclidean); their coordinates are set to 0", UserWarning, stacklevel=2)
    E = sign_flip(V * np.sqrt(np.clip(w, 0.0, None))) * scale
    if return_eigenvalues:
        with np.errstate(over="ignore"):
            w = w * np.float64(scale) ** 2
        if not np.isfinite(w).all():
            raise ValueError(f"the eigenvalues of the distances' Gram matrix exceed the float64 range (distances "
                             f"up to {scale:.3g}); the embedding itself is finite: call with "
                             "return_eigenvalues=False, or rescale D")
        return E, w
    return E


class ClassicalMDS(EstimatorBase):
    """Classical MDS (principal coordinates), a drop-in for scikit-learn 1.9's
    ``sklearn.manifold.ClassicalMDS``.

    Parameters
    ----------
    n_components : int
    metric : str or callable
        ``"precomputed"`` (X is a symmetric distance matrix) or any metric of
        scikit-learn's ``pairwise_distances``.
    metric_params : dict, optional

    Attributes
    ----------
    embedding_ : ndarray of float64, shape (N, n_components)
    dissimilarity_matrix_ : ndarray, shape (N, N)
    eigenvalues_ : ndarray, shape (n_components,)
        Top eigenvalues of the double-centred ``-D^2 / 2``.
    n_features_in_ : int
    """

    def __init__(self, n_components=2, *, metric="euclidean", metric_params=None):
        self.n_components = n_components
        self.metric = metric
        self.metric_params = metric_params

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = self.metric == "precomputed"
        tags.input_tags.sparse = self.metric != "precomputed"
        return tags

    def fit(self, X, y=None):
        """Compute the embedding of X (N, D), or of the distances (N, N) with metric="precomputed"."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit and return ``embedding_`` (N, n_components)."""
        from fastrl.neighbors.metrics import pairwise
        if self.metric == "precomputed":
            A = check_input_matrix(X, "X", accept_sparse=False, min_samples=2)
            if A.shape[0] != A.shape[1]:
                raise ValueError(f"array must be 2-dimensional and square. shape = {A.shape}")
            A = A.astype(np.float64)
            if not np.allclose(A, A.T, atol=1e-10 * max(float(np.abs(A).max()), 1e-300)):
                raise ValueError("Array must be symmetric")
            D = A
        else:
            A = check_input_matrix(X, "X", min_samples=2)
            D = pairwise(A, self.metric, self.metric_params)
        k = check_n_components(self.n_components, D.shape[0] + 1, what="N + 1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            E, w = classical_mds(D, n_components=k, return_eigenvalues=True)
        self.dissimilarity_matrix_ = D
        self.embedding_ = E
        self.eigenvalues_ = w
        self.n_features_in_ = X.shape[1]
        return E
