"""Helpers shared by the classical embeddings."""
from __future__ import annotations

import numpy as np
import torch

from fastrl._validation import check_int


def sign_flip(V, axis: int = 0):
    """Flip each vector so that its entry of largest magnitude is positive.

    The vectors run along ``axis`` (``axis=0``: columns of ``V``). This is
    scikit-learn's deterministic convention (``svd_flip`` /
    ``_deterministic_vector_sign_flip``), so results compare directly.
    Works on numpy arrays and torch tensors.
    """
    if isinstance(V, torch.Tensor):
        idx = V.abs().argmax(dim=axis, keepdim=True)
        signs = torch.sign(torch.gather(V, axis, idx))
        signs[signs == 0] = 1
        return V * signs
    idx = np.argmax(np.abs(V), axis=axis)
    idx = np.expand_dims(idx, axis)
    signs = np.sign(np.take_along_axis(V, idx, axis=axis))
    signs[signs == 0] = 1
    return V * signs


def check_n_components(n_components, n_samples: int, *, limit: int | None = None, what: str = "N") -> int:
    """``1 <= n_components < limit`` (default ``limit = n_samples``)."""
    k = check_int(n_components, "n_components", low=1)
    limit = n_samples if limit is None else limit
    if k >= limit:
        raise ValueError(f"n_components must be < {what} ({limit}), got n_components={k}")
    return k


try:  # scikit-learn's estimator protocol (clone, repr, tags) when it is installed
    from sklearn.base import BaseEstimator as EstimatorBase
    from sklearn.base import TransformerMixin

    class TransformerBase(TransformerMixin, EstimatorBase):
        """scikit-learn's transformer protocol (estimators with ``transform``)."""
except ImportError:  # pragma: no cover - scikit-learn is optional
    class EstimatorBase:
        """Minimal ``get_params`` / ``set_params`` (scikit-learn's protocol)."""

        @classmethod
        def _get_param_names(cls):
            import inspect
            sig = inspect.signature(cls.__init__)
            return sorted(p for p in sig.parameters if p != "self" and sig.parameters[p].kind != p.VAR_KEYWORD)

        def get_params(self, deep: bool = True) -> dict:
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self.get_params()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                                     f"Valid parameters are: {sorted(valid)!r}.")
                setattr(self, key, value)
            return self

    TransformerBase = EstimatorBase


def check_input_matrix(X, name: str = "X", *, accept_sparse: bool = True, dtype=(np.float64, np.float32),
                       min_samples: int = 1):
    """scikit-learn-style validation of a 2-D data matrix (dense or sparse).

    Rejects complex, object and string input (TypeError / ValueError naming
    ``name``), NaN / inf, empty input and 1-D arrays. Float32 / float64 are
    kept, other numeric dtypes become float64.

    Returns
    -------
    ndarray or scipy.sparse.csr_matrix, shape (N, D)
    """
    import scipy.sparse as sp
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if sp.issparse(X):
        if not accept_sparse:
            raise TypeError(f"{name}: sparse input is not supported here; convert it with X.toarray()")
        A = sp.csr_matrix(X)
        vals = A.data
    else:
        A = np.asarray(X)
        vals = A
    if np.iscomplexobj(vals):
        raise ValueError(f"Complex data not supported: {name} must be real (got dtype {vals.dtype})")
    if vals.dtype == object or not (np.issubdtype(vals.dtype, np.number) or vals.dtype == bool):
        try:
            vals = vals.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name} must be numeric (dtype {vals.dtype}): {exc}") from None
        A = A.astype(np.float64)
    if A.ndim != 2:
        raise ValueError(f"Expected 2D array, got {A.ndim}D array instead: {name} must have shape "
                         "(n_samples, n_features). Reshape your data")
    if A.shape[0] < min_samples:
        raise ValueError(f"Found array with {A.shape[0]} sample(s) (shape={A.shape}) while a minimum of "
                         f"{min_samples} is required ({name}).")
    if A.shape[1] < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={A.shape}) while a minimum of 1 is required "
                         f"({name}).")
    if A.dtype not in dtype:
        A = A.astype(dtype[0])
    vals = A.data if sp.issparse(A) else A
    if vals.size and not np.isfinite(vals).all():
        raise ValueError(f"Input {name} contains NaN or infinity.")
    return A


def not_fitted_error(name: str, method: str = "transform"):
    """The error for a method called before ``fit``: scikit-learn's
    ``NotFittedError`` (a ValueError and AttributeError) when installed."""
    msg = f"This {name} instance is not fitted yet: call fit before {method}"
    try:
        from sklearn.exceptions import NotFittedError
    except ImportError:  # pragma: no cover
        return RuntimeError(msg)
    return NotFittedError(msg)
