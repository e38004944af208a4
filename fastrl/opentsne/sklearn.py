"""openTSNE's scikit-learn wrapper: ``TSNE`` with ``fit`` / ``fit_transform`` / ``transform``
returning plain arrays (``embedding_`` holds the :class:`~fastrl.opentsne.TSNEEmbedding`)."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from fastrl.opentsne import tsne as _tsne


class TSNE(_tsne.TSNE, BaseEstimator):
    """openTSNE's TSNE as a scikit-learn estimator (same parameters as :class:`fastrl.opentsne.TSNE`)."""

    def fit(self, X, y=None):
        """Embed X (N, D); returns self (``embedding_``: the TSNEEmbedding)."""
        self.embedding_ = super().fit(X)
        return self

    def fit_transform(self, X, y=None):
        """Embed X and return the embedding, ndarray of shape (N, n_components)."""
        self.fit(X)
        return self.embedding_.view(np.ndarray)

    def transform(self, X, *args, **kwargs):
        """Place new points X (M, D); ndarray of shape (M, n_components)."""
        return self.embedding_.transform(X, *args, **kwargs).view(np.ndarray)
