"""Laplacian eigenmaps (Belkin & Niyogi 2003) on fastrl's kNN graph."""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.linalg import eigh
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh, lobpcg

from fastrl._validation import as_float_array, check_choice, check_int, check_positive
from fastrl.manifold.classical._utils import check_n_components, sign_flip

WEIGHTS = ("heat", "binary")
DISCONNECTED = ("connect", "raise")
EIGEN_SOLVERS = ("auto", "dense", "arpack", "lobpcg")


def knn_affinity(X, n_neighbors: int = 10, *, weights: str = "heat", t="auto", metric: str = "euclidean",
                 n_jobs=None):
    """Symmetric kNN affinity matrix ``W = (A + A^T) / 2``.

    ``A_ij = w(d_ij)`` when j is one of i's ``n_neighbors`` nearest neighbours
    (the point itself left out), with ``w = exp(-d^2 / t)`` (``"heat"``) or 1
    (``"binary"``). ``t="auto"`` is the median squared neighbour distance.

    Parameters
    ----------
    X : array-like, shape (N, D)
    n_neighbors : int
        ``1 <= n_neighbors < N``.
    weights : {"heat", "binary"}
    t : float or "auto"
        Heat-kernel width.
    metric : {"euclidean", "cosine"}
    n_jobs : int, optional

    Returns
    -------
    W : scipy.sparse.csr_matrix float64, shape (N, N)
    t : float or None
        The heat-kernel width used (None for binary weights).
    """
    from fastrl.neighbors import knn_graph

    check_choice(weights, "weights", WEIGHTS)
    A = as_float_array(X, "X")
    n = A.shape[0]
    k = check_int(n_neighbors, "n_neighbors", low=1)
    if k >= n:
        raise ValueError(f"n_neighbors must be < N ({n}), got n_neighbors={k}")
    idx, dist = knn_graph(A, k, metric=metric, n_jobs=n_jobs)
    d2 = dist.astype(np.float64) ** 2
    if weights == "heat":
        if t == "auto":
            t = float(np.median(d2))
            if t <= 0:
                t = float(d2.mean()) or 1.0
        else:
            t = float(check_positive(t, "t", allow_tensor=False))
        vals = np.exp(-d2 / t)
    else:
        t = None
        vals = np.ones_like(d2)
    rows = np.repeat(np.arange(n), k)
    W = sp.csr_matrix((vals.ravel(), (rows, idx.ravel())), shape=(n, n))
    return ((W + W.T) * 0.5).tocsr(), t


def connect_components(X, W: sp.csr_matrix, *, metric: str = "euclidean", n_jobs=None):
    """Join the connected components of the graph ``W`` on points ``X``.

    Borůvka-style passes: each component is linked to its nearest point
    outside it (exact kNN query) by an edge whose weight is the smallest
    weight of the graph, until one component remains.

    Returns
    -------
    W : scipy.sparse.csr_matrix, shape (N, N)
    n_components : int
        The number of components before joining.
    """
    from fastrl.neighbors import knn_query

    n_comp, labels = connected_components(W, directed=False)
    first, count = n_comp, n_comp
    w_min = float(W.data[W.data > 0].min()) if W.nnz else 1.0
    while count > 1:
        rows, cols = [], []
        for c in range(count):
            inside = np.flatnonzero(labels == c)
            outside = np.flatnonzero(labels != c)
            idx, dist = knn_query(X[outside], X[inside], 1, metric=metric, n_jobs=n_jobs)
            best = int(np.argmin(dist[:, 0]))
            rows.append(inside[best])
            cols.append(outside[idx[best, 0]])
        B = sp.csr_matrix((np.full(len(rows), w_min), (rows, cols)), shape=W.shape)
        W = W.maximum(B).maximum(B.T).tocsr()
        count, labels = connected_components(W, directed=False)
    return W, first


def _smallest_generalized(W: sp.csr_matrix, m: int, solver: str, tol: float, seed: int):
    """``m`` smallest solutions of ``L y = lambda D y`` (L = D - W).

    Solved through the normalised matrix ``S = D^{-1/2} W D^{-1/2}``: its
    largest eigenpairs ``(mu, u)`` give ``lambda = 1 - mu`` and
    ``y = D^{-1/2} u``. Only sparse products with ``S`` are needed (no
    factorisation, unlike shift-invert).
    """
    n = W.shape[0]
    deg = np.asarray(W.sum(axis=1)).ravel()
    dm = 1.0 / np.sqrt(deg)
    S = sp.diags(dm) @ W @ sp.diags(dm)
    S = S.tocsr()
    if solver == "auto":
        solver = "dense" if n <= 500 else "arpack"
    rng = np.random.default_rng(seed)
    if solver == "dense":
        mu, U = eigh(S.toarray(), subset_by_index=[n - m, n - 1])
    elif solver == "arpack":
        mu, U = eigsh(S, k=m, which="LA", tol=tol, v0=rng.standard_normal(n))
    else:
        X0 = rng.standard_normal((n, m))
        X0[:, 0] = np.sqrt(deg)
        # LOBPCG on I - S: its smallest eigenvalues are the ones wanted
        Lsym = sp.identity(n, format="csr") - S
        lam, U = lobpcg(Lsym, X0, tol=tol, largest=False, maxiter=2000)
        mu = 1.0 - lam
    order = np.argsort(mu)[::-1]
    mu, U = mu[order], U[:, order]
    return 1.0 - mu, U * dm[:, None]


def spectral_embedding(W, n_components: int = 2, *, eigen_solver: str = "auto", tol: float = 1e-6,
                       random_state: int | None = 0):
    """Laplacian eigenmap of a symmetric affinity matrix.

    Parameters
    ----------
    W : scipy.sparse matrix or ndarray, shape (N, N)
        Symmetric non-negative affinities; the diagonal is ignored. The graph
        must be connected.
    n_components : int
        ``1 <= n_components < N - 1``.
    eigen_solver : {"auto", "dense", "arpack", "lobpcg"}
        ``"auto"``: dense for N <= 500, else ARPACK (Lanczos on the largest
        eigenvalues of S: sparse products only, no factorisation).
    tol : float
        Eigensolver tolerance.
    random_state : int, optional

    Returns
    -------
    embedding : ndarray float64, shape (N, n_components)
        The generalized eigenvectors 2..n_components+1 of ``L y = lambda D y``,
        scaled as scikit-learn's ``spectral_embedding`` (``u / sqrt(deg)``, u
        unit-norm) with its sign convention.
    eigenvalues : ndarray, shape (n_components,)
        The matching generalized eigenvalues ``lambda``.

    Raises
    ------
    ValueError
        If W is not square/symmetric/non-negative or the graph is disconnected.
    """
    check_choice(eigen_solver, "eigen_solver", EIGEN_SOLVERS)
    W = sp.csr_matrix(W, dtype=np.float64)
    n = W.shape[0]
    if W.shape[0] != W.shape[1]:
        raise ValueError(f"W must be square, got shape {W.shape}")
    if W.nnz and (not np.isfinite(W.data).all() or (W.data < 0).any()):
        raise ValueError("W must hold finite, non-negative affinities")
    if abs(W - W.T).max() > 1e-10 * max(abs(W).max(), 1e-300):
        raise ValueError("W must be symmetric")
    k = check_n_components(n_components, n - 1, what="N - 1")
    W = W - sp.diags(W.diagonal())
    W.eliminate_zeros()
    n_comp, labels = connected_components(W, directed=False)
    if n_comp > 1:
        sizes = np.bincount(labels)
        raise ValueError(f"the neighbourhood graph is disconnected ({n_comp} components, the smallest has "
                         f"{sizes.min()} points): the embedding would only separate components; increase "
                         "n_neighbors or embed each component on its own")
    lam, Y = _smallest_generalized(W, k + 1, eigen_solver, tol, 0 if random_state is None else random_state)
    Y = sign_flip(Y)
    return Y[:, 1:], lam[1:]


class LaplacianEigenmaps:
    """Laplacian eigenmaps: the bottom non-trivial solutions of ``L y = lambda D y``
    on the symmetrised kNN graph.

    Parameters
    ----------
    n_components : int
        Embedding dimension, ``< N - 1``.
    n_neighbors : int
        Neighbours per point, the point itself not counted (scikit-learn's
        ``SpectralEmbedding(n_neighbors=m)`` counts it: its graph is this one
        with ``n_neighbors = m - 1``).
    weights : {"heat", "binary"}
        Edge weights ``exp(-d^2 / t)`` or 1.
    t : float or "auto"
        Heat-kernel width (``"auto"``: median squared neighbour distance).
    metric : {"euclidean", "cosine"}
    disconnected : {"connect", "raise"}
        A disconnected kNN graph has one zero eigenvalue per component, and
        its eigenmap only separates components. ``"connect"`` (default) warns
        and links each component to its nearest other one (see
        :func:`connect_components`); ``"raise"`` raises ``ValueError``.
    eigen_solver : {"auto", "dense", "arpack", "lobpcg"}
    tol : float
    random_state : int, optional
    n_jobs : int, optional
        Threads for the kNN graph.

    Attributes
    ----------
    embedding_ : ndarray, shape (N, n_components)
    eigenvalues_ : ndarray, shape (n_components,)
    affinity_matrix_ : scipy.sparse.csr_matrix, shape (N, N)
    t_ : float or None
    """

    def __init__(self, n_components: int = 2, n_neighbors: int = 10, weights: str = "heat", t="auto", *,
                 metric: str = "euclidean", disconnected: str = "connect", eigen_solver: str = "auto",
                 tol: float = 1e-6, random_state: int | None = 0, n_jobs=None):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.t = t
        self.metric = metric
        self.disconnected = disconnected
        self.eigen_solver = eigen_solver
        self.tol = tol
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        """Build the graph of ``X`` (N, D) and solve for the embedding."""
        check_choice(self.disconnected, "disconnected", DISCONNECTED)
        A = as_float_array(X, "X")
        check_n_components(self.n_components, A.shape[0] - 1, what="N - 1")
        W, self.t_ = knn_affinity(A, self.n_neighbors, weights=self.weights, t=self.t,
                                  metric=self.metric, n_jobs=self.n_jobs)
        if self.disconnected == "connect":
            W, n_comp = connect_components(A, W, metric=self.metric, n_jobs=self.n_jobs)
            if n_comp > 1:
                warnings.warn(f"LaplacianEigenmaps: the {self.n_neighbors}-NN graph has {n_comp} connected "
                              "components; each was linked to its nearest other one (disconnected='raise' "
                              "raises instead; a larger n_neighbors may connect it)", UserWarning, stacklevel=2)
        self.affinity_matrix_ = W
        self.embedding_, self.eigenvalues_ = spectral_embedding(
            self.affinity_matrix_, self.n_components, eigen_solver=self.eigen_solver, tol=self.tol,
            random_state=self.random_state)
        return self

    def fit_transform(self, X, y=None):
        """Fit and return ``embedding_`` (N, n_components)."""
        return self.fit(X).embedding_
