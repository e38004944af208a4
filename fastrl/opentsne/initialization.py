"""openTSNE's ``initialization`` module on fastrl's PCA and spectral embedding.

All initialisations are rescaled so that the first coordinate has standard
deviation 1e-4 (openTSNE's convention); ``add_jitter`` adds noise of 1% of it.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fastrl._validation import check_random_state


def rescale(x, inplace=False, target_std=1e-4):
    """Scale ``x`` (N, d) so that its first column has standard deviation ``target_std``."""
    x = np.asarray(x, dtype=np.float64) if inplace else np.array(x, dtype=np.float64, copy=True)
    s = np.std(x[:, 0])
    x *= target_std / (s if s > 0 else 1.0)
    return x


def jitter(x, inplace=False, scale=0.01, random_state=None):
    """Add Gaussian noise with standard deviation ``scale * std(x[:, 0])``."""
    x = np.asarray(x, dtype=np.float64) if inplace else np.array(x, dtype=np.float64, copy=True)
    target = np.std(x[:, 0]) * scale
    x += check_random_state(random_state).normal(0.0, target, x.shape)
    return x


def random(n_samples, n_components=2, random_state=None, verbose=False):
    """N(0, 1e-4^2) points; ``n_samples`` is a count or an array whose rows are counted.

    Returns
    -------
    ndarray of float64, shape (n_samples, n_components)
    """
    if hasattr(n_samples, "shape"):
        n_samples = n_samples.shape[0]
    return check_random_state(random_state).normal(0.0, 1e-4, (int(n_samples), int(n_components)))


def pca(X, n_components=2, svd_solver="auto", random_state=None, verbose=False, add_jitter=True):
    """Principal components of ``X`` (fastrl's PCA), rescaled to std 1e-4.

    Returns
    -------
    ndarray of float64, shape (N, n_components)
    """
    from fastrl.manifold.tsne.tsne import pca_init
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    E = pca_init(X, int(n_components))
    if add_jitter:
        E = jitter(E, inplace=True, scale=0.01, random_state=random_state)
    return E


def spectral(A, n_components=2, tol=1e-4, max_iter=None, random_state=None, verbose=False, add_jitter=True):
    """Leading non-trivial generalized eigenvectors of ``A v = lambda D v``
    (Laplacian eigenmaps of the affinity matrix ``A``), rescaled to std 1e-4.

    Returns
    -------
    ndarray of float64, shape (N, n_components)
    """
    from fastrl.manifold.classical.laplacian import spectral_embedding
    seed = check_random_state(random_state)
    E = spectral_embedding(sp.csr_matrix(A), n_components=int(n_components), eigen_solver="arpack",
                           eigen_tol=float(tol), random_state=seed)
    E = rescale(E, inplace=True)
    if add_jitter:
        E = jitter(E, inplace=True, scale=0.01, random_state=seed)
    return E


def median(embedding, neighbors, verbose=False):
    """Each new point at the median position of its reference neighbours (M, k)."""
    return np.median(np.asarray(embedding)[np.asarray(neighbors)], axis=1)


def weighted_mean(X, embedding, neighbors, distances, verbose=False):
    """Each new point at the mean of its neighbours weighted by ``1 / distance``."""
    d = np.asarray(distances, dtype=np.float64)
    w = 1.0 / np.maximum(d, 1e-12)
    w /= w.sum(1, keepdims=True)
    return np.einsum("mk,mkd->md", w, np.asarray(embedding)[np.asarray(neighbors)])


__all__ = ["pca", "spectral", "random", "rescale", "jitter", "median", "weighted_mean"]
