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
