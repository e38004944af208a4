"""Canonical correlation analysis (Hotelling 1936), closed form with ridge."""
from __future__ import annotations

import numpy as np
from scipy.linalg import cholesky, solve_triangular, svd

from fastrl._validation import as_float_array, check_int, check_positive


def _whitener(C: np.ndarray, reg: float, name: str) -> np.ndarray:
    """Lower Cholesky factor of ``C + reg * mean(diag C) * I``."""
    p = C.shape[0]
    C = C + reg * max(float(np.trace(C)) / p, 1e-300) * np.eye(p)
    try:
        return cholesky(C, lower=True)
    except np.linalg.LinAlgError as exc:
        raise ValueError(f"the covariance of {name} is singular; use reg > 0") from exc


class CCA:
    """Linear CCA: directions ``a_i, b_i`` maximising ``corr(X a_i, Y b_i)``,
    each pair uncorrelated with the previous ones.

    With covariances ``Cxx, Cyy, Cxy`` (ridge ``reg`` added to the diagonal
    of ``Cxx`` and ``Cyy``, relative to their mean variance), the canonical
    directions come from the SVD of ``Lx^{-1} Cxy Ly^{-T}`` where
    ``Cxx = Lx Lx^T``: ``a = Lx^{-T} u``, ``b = Ly^{-T} v``, correlations = the
    singular values. The variates ``X_c a`` have unit variance.

    Parameters
    ----------
    n_components : int
        ``1 <= n_components <= min(p, q)``.
    reg : float
        Relative ridge, >= 0 (0 needs full-rank covariances).

    Attributes
    ----------
    x_weights_ : ndarray, shape (p, n_components)
    y_weights_ : ndarray, shape (q, n_components)
    correlations_ : ndarray, shape (n_components,), descending
    x_mean_, y_mean_ : ndarray
    """

    def __init__(self, n_components: int = 2, *, reg: float = 1e-6):
        self.n_components = n_components
        self.reg = reg

    def fit(self, X, Y):
        """Fit on paired samples ``X`` (N, p) and ``Y`` (N, q)."""
        A = as_float_array(X, "X", dtype=np.float64, min_rows=2)
        B = as_float_array(Y, "Y", dtype=np.float64, min_rows=2)
        if A.shape[0] != B.shape[0]:
            raise ValueError(f"X and Y must have the same number of rows, got {A.shape[0]} and {B.shape[0]}")
        n, p = A.shape
        q = B.shape[1]
        k = check_int(self.n_components, "n_components", low=1)
        if k > min(p, q):
            raise ValueError(f"n_components must be <= min(p, q) = {min(p, q)}, got n_components={k}")
        reg = float(check_positive(self.reg, "reg", allow_tensor=False, strict=False))
        self.x_mean_, self.y_mean_ = A.mean(0), B.mean(0)
        A, B = A - self.x_mean_, B - self.y_mean_
        Lx = _whitener(A.T @ A / (n - 1), reg, "X")
        Ly = _whitener(B.T @ B / (n - 1), reg, "Y")
        T = solve_triangular(Lx, A.T @ B / (n - 1), lower=True)
        T = solve_triangular(Ly, T.T, lower=True).T
        U, s, Vt = svd(T, full_matrices=False)
        self.x_weights_ = solve_triangular(Lx.T, U[:, :k], lower=False)
        self.y_weights_ = solve_triangular(Ly.T, Vt[:k].T, lower=False)
        self.correlations_ = s[:k]
        return self

    def transform(self, X, Y=None):
        """Canonical variates ``(X - mean) @ x_weights_`` (N, n_components), and
        those of ``Y`` when given."""
        if not hasattr(self, "x_weights_"):
            raise RuntimeError("CCA is not fitted: call fit(X, Y) first")
        A = as_float_array(X, "X", dtype=np.float64)
        if A.shape[1] != self.x_weights_.shape[0]:
            raise ValueError(f"X has {A.shape[1]} features, the fit had {self.x_weights_.shape[0]}")
        Xc = (A - self.x_mean_) @ self.x_weights_
        if Y is None:
            return Xc
        B = as_float_array(Y, "Y", dtype=np.float64)
        if B.shape[1] != self.y_weights_.shape[0]:
            raise ValueError(f"Y has {B.shape[1]} features, the fit had {self.y_weights_.shape[0]}")
        return Xc, (B - self.y_mean_) @ self.y_weights_

    def fit_transform(self, X, Y):
        """Fit, then return the canonical variates of ``X`` and ``Y``."""
        return self.fit(X, Y).transform(X, Y)


def cca(X, Y, n_components: int = 2, *, reg: float = 1e-6):
    """Canonical variates of paired data.

    Parameters
    ----------
    X : array-like, shape (N, p)
    Y : array-like, shape (N, q)
    n_components : int
    reg : float
        Relative ridge on both covariances.

    Returns
    -------
    X_c : ndarray, shape (N, n_components)
    Y_c : ndarray, shape (N, n_components)
    correlations : ndarray, shape (n_components,)
        ``corr(X_c[:, i], Y_c[:, i])``, descending.
    """
    model = CCA(n_components, reg=reg).fit(X, Y)
    X_c, Y_c = model.transform(X, Y)
    return X_c, Y_c, model.correlations_
