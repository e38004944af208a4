"""Laplacian eigenmaps (Belkin & Niyogi 2003) on fastrl's kNN graph."""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.linalg import eigh
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh, lobpcg

from fastrl._validation import as_float_array, check_choice, check_int, check_positive, check_random_state
from fastrl.manifold.classical._utils import EstimatorBase, check_n_components, sign_flip

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


def _smallest_generalized(W: sp.csr_matrix, m: int, solver: str, tol: float, seed: int, degrees=None):
    """``m`` smallest solutions of ``L y = lambda D y`` (L = D - W).

    Solved through the normalised matrix ``S = D^{-1/2} W D^{-1/2}``: its
    largest eigenpairs ``(mu, u)`` give ``lambda = 1 - mu`` and
    ``y = D^{-1/2} u``. Only sparse products with ``S`` are needed (no
    factorisation, unlike shift-invert).
    """
    n = W.shape[0]
    deg = np.asarray(W.sum(axis=1)).ravel() if degrees is None else degrees
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


def _check_affinity(W):
    """Square, finite, non-negative affinities as float64 CSR (raises ValueError)."""
    W = sp.csr_matrix(W, dtype=np.float64)
    if W.shape[0] != W.shape[1]:
        raise ValueError(f"the affinity matrix must be square, got shape {W.shape}")
    if W.nnz and (not np.isfinite(W.data).all() or (W.data < 0).any()):
        raise ValueError("the affinity matrix must hold finite, non-negative affinities")
    return W


def _is_symmetric(W: sp.csr_matrix) -> bool:
    return not W.nnz or abs(W - W.T).max() <= 1e-10 * max(abs(W).max(), 1e-300)


def _laplacian_embedding(W, n_components: int, *, eigen_solver: str = "auto", tol: float = 1e-6,
                         random_state: int | None = 0):
    """Generalized eigenvectors 2..n_components+1 of ``L y = lambda D y`` of a
    connected symmetric graph (raises ValueError otherwise); returns
    ``(embedding, eigenvalues)``."""
    check_choice(eigen_solver, "eigen_solver", EIGEN_SOLVERS)
    W = _check_affinity(W)
    n = W.shape[0]
    if not _is_symmetric(W):
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
    on the symmetrised kNN graph (fastrl's heat-kernel flavour; the
    scikit-learn drop-in is :class:`fastrl.manifold.SpectralEmbedding`, which
    runs the same solver).

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
        self.embedding_, self.eigenvalues_ = _laplacian_embedding(
            self.affinity_matrix_, self.n_components, eigen_solver=self.eigen_solver, tol=self.tol,
            random_state=self.random_state)
        return self

    def fit_transform(self, X, y=None):
        """Fit and return ``embedding_`` (N, n_components)."""
        return self.fit(X).embedding_


# ----------------------------------------------------------------------------- scikit-learn face
def _smallest_unnormalized(L: sp.csr_matrix, m: int, solver: str, tol, rs: np.random.RandomState):
    """``m`` smallest eigenpairs of the combinatorial Laplacian ``L = D - W``."""
    n = L.shape[0]
    if n <= 500 or n < 5 * m + 1:
        w, U = eigh(L.toarray(), subset_by_index=[0, m - 1])
    elif solver == "lobpcg":
        w, U = lobpcg(L, rs.standard_normal((n, m)), tol=tol, largest=False, maxiter=2000)
    else:  # shift-invert around -1 of -L (scikit-learn's arpack recipe)
        w, U = eigsh(-L, k=m, sigma=1.0, which="LM", tol=tol or 0.0, v0=rs.uniform(-1, 1, n))
        w = -w
    order = np.argsort(w)
    return w[order], U[:, order]


def spectral_embedding(adjacency, *, n_components: int = 8, eigen_solver=None, random_state=None,
                       eigen_tol="auto", norm_laplacian: bool = True, drop_first: bool = True):
    """Spectral embedding of a graph, as ``sklearn.manifold.spectral_embedding``.

    With ``norm_laplacian`` the vectors are ``u / sqrt(deg)`` for the bottom
    eigenvectors ``u`` of ``I - D^{-1/2} W D^{-1/2}``, found as the top
    eigenvectors of ``D^{-1/2} W D^{-1/2}`` (Lanczos on sparse products, no
    factorisation); otherwise the bottom eigenvectors of ``D - W``. Signs
    follow scikit-learn's (largest-magnitude entry positive).

    Parameters
    ----------
    adjacency : ndarray or scipy.sparse matrix, shape (N, N)
        Symmetric non-negative affinities (a non-symmetric one is averaged
        with its transpose, with a warning); the diagonal is ignored.
    n_components : int
        Vectors returned (the constant first one is dropped with ``drop_first``).
    eigen_solver : {None, "arpack", "lobpcg", "amg", "dense"}
        ``None``: "arpack". "amg" needs pyamg (ValueError otherwise).
    random_state : int, RandomState or None
    eigen_tol : float or "auto"
        "auto": 0 for arpack, None (the solver's default) for lobpcg / amg.
    norm_laplacian, drop_first : bool

    Returns
    -------
    ndarray of float64, shape (N, n_components)

    Warns
    -----
    UserWarning
        When the graph is not connected (the embedding then separates components).
    """
    solver = "arpack" if eigen_solver is None else eigen_solver
    check_choice(solver, "eigen_solver", ("arpack", "lobpcg", "amg", "dense"))
    if solver == "amg":
        try:
            import pyamg  # noqa: F401
        except ImportError:
            raise ValueError("The eigen_solver was set to 'amg', but pyamg is not available.") from None
    W = _check_affinity(adjacency)
    if not _is_symmetric(W):
        warnings.warn("Array is not symmetric, and will be converted to symmetric by average with its transpose.",
                      UserWarning, stacklevel=2)
        W = ((W + W.T) * 0.5).tocsr()
    n = W.shape[0]
    m = check_int(n_components, "n_components", low=1) + (1 if drop_first else 0)
    if m > n:
        raise ValueError(f"n_components{' + 1 (drop_first)' if drop_first else ''} must be <= N ({n}), got {m}")
    if solver == "amg" and n < 5 * m:  # scikit-learn's two fallbacks of "amg", same order and messages
        warnings.warn("AMG solver does not work well with small graphs, using ARPACK instead.", RuntimeWarning,
                      stacklevel=2)
        solver = "arpack"
    if solver == "amg" and not sp.issparse(adjacency):
        warnings.warn("AMG solver does not work well with dense matrices, using ARPACK instead.", RuntimeWarning,
                      stacklevel=2)
        solver = "arpack"
    W = (W - sp.diags(W.diagonal())).tocsr()
    W.eliminate_zeros()
    if connected_components(W, directed=False)[0] > 1:
        warnings.warn("Graph is not fully connected, spectral embedding may not work as expected.", UserWarning,
                      stacklevel=2)
    if eigen_tol == "auto":
        tol = 0.0 if solver == "arpack" else None
    else:
        tol = float(check_positive(eigen_tol, "eigen_tol", allow_tensor=False, strict=False))
    rs = check_random_state(random_state)
    deg = np.asarray(W.sum(axis=1)).ravel()
    if norm_laplacian:
        inner = {"arpack": "arpack", "dense": "dense"}.get(solver, "lobpcg")
        if n <= 500 or n < 5 * m + 1:
            inner = "dense"
        safe = np.where(deg > 0, deg, 1.0)
        _, Y = _smallest_generalized(W, m, inner, tol, int(rs.randint(2**31 - 1)), degrees=safe)
    else:
        L = (sp.diags(deg) - W).tocsr()
        _, Y = _smallest_unnormalized(L, m, solver, tol, rs)
    Y = sign_flip(Y)
    return np.ascontiguousarray(Y[:, 1:m] if drop_first else Y[:, :m])


AFFINITIES = ("nearest_neighbors", "rbf", "precomputed", "precomputed_nearest_neighbors")


class SpectralEmbedding(EstimatorBase):
    """Spectral embedding (Laplacian eigenmaps), a drop-in for
    ``sklearn.manifold.SpectralEmbedding``.

    Parameters
    ----------
    n_components : int
    affinity : {"nearest_neighbors", "rbf", "precomputed", "precomputed_nearest_neighbors"} or callable
        ``"nearest_neighbors"``: binary kNN graph with the point itself among
        its ``n_neighbors`` (fastrl's compiled kNN), symmetrised
        ``(A + A^T) / 2``; ``"rbf"``: ``exp(-gamma |x - y|^2)``;
        ``"precomputed"``: X is the affinity matrix;
        ``"precomputed_nearest_neighbors"``: X is a sparse distance graph whose
        ``n_neighbors`` smallest entries per row are kept; a callable maps X to
        the affinity matrix.
    gamma : float, optional
        RBF width (default ``1 / n_features``).
    random_state : int, RandomState or None
    eigen_solver : {None, "arpack", "lobpcg", "amg"}
    eigen_tol : float or "auto"
    n_neighbors : int, optional
        Default ``max(N / 10, 1)``.
    n_jobs : int, optional
    metric : str or callable
        fastrl extra: the kNN metric of ``"nearest_neighbors"`` (any metric
        :func:`fastrl.neighbors.knn_graph` accepts).
    metric_params : dict, optional
    norm_laplacian, drop_first : bool
        fastrl extras, as in :func:`spectral_embedding`.

    Attributes
    ----------
    embedding_ : ndarray, shape (N, n_components)
        In X's float dtype (float32 stays float32).
    affinity_matrix_ : ndarray or scipy.sparse matrix, shape (N, N)
    n_neighbors_ : int
    n_features_in_ : int
    """

    def __init__(self, n_components=2, *, affinity="nearest_neighbors", gamma=None, random_state=None,
                 eigen_solver=None, eigen_tol="auto", n_neighbors=None, n_jobs=None, metric="euclidean",
                 metric_params=None, norm_laplacian=True, drop_first=True):
        self.n_components = n_components
        self.affinity = affinity
        self.gamma = gamma
        self.random_state = random_state
        self.eigen_solver = eigen_solver
        self.eigen_tol = eigen_tol
        self.n_neighbors = n_neighbors
        self.n_jobs = n_jobs
        self.metric = metric
        self.metric_params = metric_params
        self.norm_laplacian = norm_laplacian
        self.drop_first = drop_first

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.pairwise = self.affinity in ("precomputed", "precomputed_nearest_neighbors")
        return tags

    def _affinity_matrix(self, X):
        from fastrl.neighbors import knn_graph
        n = X.shape[0]
        if self.affinity == "precomputed":
            return X
        if self.affinity == "precomputed_nearest_neighbors":
            from fastrl.neighbors.metrics import check_precomputed
            D = check_precomputed(X)
            if not sp.issparse(D):
                D = sp.csr_matrix(D)
            k = self.n_neighbors_
            nnz = np.diff(D.indptr)
            if nnz.min() < k:
                raise ValueError(f"{k} neighbors per samples are required, but some samples have only "
                                 f"{nnz.min()} neighbors in precomputed graph matrix.")
            rows, cols = [], []
            for i in range(n):
                lo, hi = D.indptr[i], D.indptr[i + 1]
                order = np.lexsort((D.indices[lo:hi], D.data[lo:hi]))[:k]
                rows.append(np.full(k, i))
                cols.append(D.indices[lo:hi][order])
            C = sp.csr_matrix((np.ones(n * k), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
            return (0.5 * (C + C.T)).tocsr()
        if self.affinity == "nearest_neighbors" and sp.issparse(X):
            warnings.warn("Nearest neighbors affinity currently does not support sparse input, falling back to "
                          "rbf affinity", UserWarning, stacklevel=3)
        elif self.affinity == "nearest_neighbors":
            k = self.n_neighbors_
            rows = np.repeat(np.arange(n), k)
            cols = np.empty((n, k), dtype=np.int64)
            cols[:, 0] = np.arange(n)  # scikit-learn counts the point itself
            if k > 1:
                cols[:, 1:] = knn_graph(X, k - 1, metric=self.metric, metric_params=self.metric_params,
                                        n_jobs=self.n_jobs)[0]
            C = sp.csr_matrix((np.ones(n * k), (rows, cols.ravel())), shape=(n, n))
            return (0.5 * (C + C.T)).tocsr()
        if callable(self.affinity):
            return self.affinity(X)
        A = X.toarray() if sp.issparse(X) else np.asarray(X)
        A64 = A.astype(np.float64)
        sq = (A64 * A64).sum(1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (A64 @ A64.T), 0.0)
        np.fill_diagonal(d2, 0.0)
        return np.exp(-self.gamma_ * d2).astype(A.dtype, copy=False)

    def fit(self, X, y=None):
        """Compute the embedding of X (N, D), or of the affinity / distance matrix for the precomputed modes."""
        from fastrl.manifold.classical._utils import check_input_matrix
        if not (callable(self.affinity) or self.affinity in AFFINITIES):
            raise ValueError(f"affinity must be one of {list(AFFINITIES)} or a callable, got {self.affinity!r}")
        X = check_input_matrix(X, "X", min_samples=2)
        n = X.shape[0]
        if self.affinity in ("precomputed", "precomputed_nearest_neighbors") and X.shape[0] != X.shape[1]:
            raise ValueError(f"X must be a square (N, N) matrix with affinity={self.affinity!r}, got {X.shape}")
        self.n_neighbors_ = (max(int(n / 10), 1) if self.n_neighbors is None
                             else check_int(self.n_neighbors, "n_neighbors", low=1, high=n))
        self.gamma_ = (1.0 / X.shape[1] if self.gamma is None
                       else float(check_positive(self.gamma, "gamma", allow_tensor=False)))
        self.affinity_matrix_ = self._affinity_matrix(X)
        E = spectral_embedding(self.affinity_matrix_, n_components=self.n_components,
                               eigen_solver=self.eigen_solver, random_state=self.random_state,
                               eigen_tol=self.eigen_tol, norm_laplacian=self.norm_laplacian,
                               drop_first=self.drop_first)
        self.embedding_ = E.astype(X.dtype if X.dtype in (np.float32, np.float64) else np.float64, copy=False)
        self.n_features_in_ = X.shape[1]
        return self

    def fit_transform(self, X, y=None):
        """Fit and return ``embedding_`` (N, n_components)."""
        return self.fit(X).embedding_
