"""Classical embeddings: PCA, classical MDS, Laplacian eigenmaps, CCA."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.linalg import subspace_angles

from conftest import assert_within_rounding, rel_err
from fastrl.manifold import CCA, LaplacianEigenmaps, cca, classical_mds, knn_affinity, pca, spectral_embedding


def _blobs(rng, n=301, d=9, centers=3, spread=4.0):
    C = rng.standard_normal((centers, d)) * spread
    return (C[rng.integers(0, centers, n)] + rng.standard_normal((n, d))).astype(np.float64)


def _match_up_to_sign(A, B, atol):
    for j in range(A.shape[1]):
        s = np.sign(A[:, j] @ B[:, j]) or 1.0
        np.testing.assert_allclose(A[:, j], s * B[:, j], atol=atol)


# ----------------------------------------------------------------------------- PCA
@pytest.mark.parametrize("method", ["full", "covariance", "randomized"])
def test_pca_matches_sklearn(rng, method):
    from sklearn.decomposition import PCA
    # clear spectrum gaps so the randomized SVD resolves the top components
    X = rng.standard_normal((413, 37)) * np.r_[[10.0, 8.0, 6.0, 4.5, 3.0], np.full(32, 0.3)]
    got, comps, var = pca(X, 5, method=method, return_components=True)
    ref = PCA(5, svd_solver="full").fit(X)
    np.testing.assert_allclose(np.abs(comps), np.abs(ref.components_), atol=1e-6)
    np.testing.assert_allclose(var, ref.explained_variance_, rtol=1e-6)
    _match_up_to_sign(got, ref.transform(X), atol=1e-6)


def test_pca_sign_convention_and_types(rng):
    X = rng.standard_normal((120, 11)).astype(np.float32)
    E, comps, _ = pca(X, 3, return_components=True)
    assert E.dtype == np.float32 and E.shape == (120, 3)
    assert (comps[np.arange(3), np.abs(comps).argmax(1)] > 0).all()
    T = pca(torch.from_numpy(X), 3)
    assert isinstance(T, torch.Tensor) and T.shape == (120, 3)
    np.testing.assert_allclose(T.numpy(), E, atol=1e-4)


def test_pca_bad_input(rng):
    X = rng.standard_normal((20, 4))
    with pytest.raises(ValueError, match="n_components"):
        pca(X, 5)
    with pytest.raises(ValueError, match="method"):
        pca(X, 2, method="eig")
    with pytest.raises(ValueError, match="X contains NaN"):
        pca(np.full((5, 3), np.nan), 2)


@pytest.mark.parametrize("offset", [0.3, 3.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pca_covariance_path_matches_float64_oracle(rng, dtype, offset):
    """The CPU covariance path (syrk + partial syevr) against an independent
    float64 SVD of the centred data, for both input dtypes and a torch tensor.
    offset 0.3 keeps every mean^2 / variance under the bound (uncentred Gram);
    offset 3.0 exceeds it on the narrow columns (the data are centred first)."""
    X = (rng.standard_normal((700, 60)) * np.linspace(5, 0.5, 60) + offset).astype(dtype)
    got, comps, var = pca(X, 7, method="covariance", return_components=True)
    assert got.dtype == dtype and comps.dtype == dtype and var.dtype == dtype
    Xc = X.astype(np.float64) - X.astype(np.float64).mean(0)
    _, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    # Bounds by the rule of tests/conftest.py: the reference in this dtype is the same algorithm in
    # plain numpy (np.linalg.eigh of the covariance of the data centred in this dtype); its error
    # against the float64 SVD, max over this seed and seeds 0-7 and both offsets, normwise
    # (projections relative to their largest entry; components absolute): float32 6.46e-6 and
    # 5.43e-6, float64 1.16e-13 and 7.6e-14 (the old atol of tol * 100 = 1e-7 was 1e6x that).
    proj_err, comp_err = (6.46e-6, 5.43e-6) if dtype == np.float32 else (1.16e-13, 7.6e-14)
    assert_within_rounding(np.abs(np.abs(comps) - np.abs(Vt[:7])).max(), comp_err, what="components")
    np.testing.assert_allclose(var, S[:7] ** 2 / 699, rtol=tol)
    want = Xc @ Vt[:7].T
    signs = np.where(np.sum(got * want, axis=0) < 0, -1.0, 1.0)
    assert_within_rounding(rel_err(got * signs, want), proj_err, what="projections")
    T = pca(torch.from_numpy(X), 7, method="covariance")
    assert isinstance(T, torch.Tensor) and T.dtype == torch.from_numpy(X).dtype
    np.testing.assert_allclose(T.numpy(), got, atol=tol * 10)


@pytest.mark.parametrize("make", [lambda X: X.astype(np.complex128), lambda X: torch.from_numpy(X.astype(np.complex64))])
def test_pca_complex_input_rejected(rng, make):
    """Complex input used to lose its imaginary part silently (torch path)."""
    with pytest.raises(TypeError, match="X must be real"):
        pca(make(rng.standard_normal((30, 5))), 2)


def test_pca_random_state_generator(rng):
    """A numpy Generator (or RandomState) seeds the randomized SVD, as an int does."""
    X = rng.standard_normal((300, 40)) * np.r_[[10.0, 7.0, 4.0], np.full(37, 0.3)]
    a = pca(X, 3, method="randomized", random_state=np.random.default_rng(5))
    b = pca(X, 3, method="randomized", random_state=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    c = pca(X, 3, method="randomized", random_state=np.random.RandomState(1))
    _match_up_to_sign(a, c, atol=1e-6)
    _match_up_to_sign(a, pca(X, 3, method="full"), atol=1e-6)
    with pytest.raises(ValueError, match="random_state"):
        pca(X, 3, method="randomized", random_state=-1)


# ----------------------------------------------------------------------------- classical MDS
def test_cmds_equals_pca_up_to_sign(rng):
    X = rng.standard_normal((157, 13)) * np.linspace(3, 1, 13)
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    E, w = classical_mds(D, n_components=4, return_eigenvalues=True)
    P = pca(X, 4)
    _match_up_to_sign(E, P, atol=1e-8)
    # the eigenvalues of K are the squared singular values of the centred data
    np.testing.assert_allclose(w, (P ** 2).sum(0), rtol=1e-10)
    _match_up_to_sign(classical_mds(X=X, n_components=4), P, atol=1e-8)


def test_cmds_large_uses_sparse_solver(rng):
    X = rng.standard_normal((613, 6)) * np.array([5, 4, 3, 1, 1, 1])
    _match_up_to_sign(classical_mds(X=X, n_components=3), pca(X, 3), atol=1e-6)


def test_cmds_bad_input(rng):
    X = rng.standard_normal((10, 3))
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    with pytest.raises(ValueError, match="square"):
        classical_mds(D[:, :7])
    asym = D.copy()
    asym[0, 1] += 1.0
    with pytest.raises(ValueError, match="symmetric"):
        classical_mds(asym)
    with pytest.raises(ValueError, match="non-negative"):
        classical_mds(-D)
    diag = D + np.eye(10)
    with pytest.raises(ValueError, match="zero diagonal"):
        classical_mds(diag)
    with pytest.raises(ValueError, match="n_components"):
        classical_mds(D, n_components=10)
    with pytest.raises(ValueError, match="exactly one"):
        classical_mds()
    with pytest.raises(ValueError, match="exactly one"):
        classical_mds(D, X=X)


def test_cmds_warns_on_non_euclidean():
    # a 5-cycle with d = 1 to neighbours and 4 across breaks the triangle inequality; the
    # eigenvalues of -1/2 J D^2 J are 12.6 (x2), 0 (the constant vector), -4.1 (x2), so the
    # top 4 hold one clearly negative eigenvalue
    D = np.array([[0, 1, 4, 4, 1], [1, 0, 1, 4, 4], [4, 1, 0, 1, 4], [4, 4, 1, 0, 1], [1, 4, 4, 1, 0.0]])
    with pytest.warns(UserWarning, match="1 of the top 4 eigenvalues are negative"):
        E = classical_mds(D, n_components=4)
    assert np.isfinite(E).all() and np.all(E[:, 3] == 0)


# ----------------------------------------------------------------------------- Laplacian eigenmaps
def _assert_same_subspace(A, B, max_angle=1e-3):
    assert np.max(subspace_angles(A, B)) < max_angle


@pytest.mark.parametrize("weights", ["heat", "binary"])
@pytest.mark.parametrize("n", [211, 733])  # dense solver and ARPACK
def test_laplacian_matches_sklearn_on_same_graph(rng, weights, n):
    from sklearn.manifold import SpectralEmbedding
    X = _blobs(rng, n=n, spread=1.5)
    le = LaplacianEigenmaps(n_components=3, n_neighbors=12, weights=weights, tol=1e-10)
    E = le.fit_transform(X)
    ref = SpectralEmbedding(3, affinity="precomputed", random_state=0).fit_transform(le.affinity_matrix_)
    _assert_same_subspace(E, ref)
    # generalized eigenproblem L y = lambda D y holds
    W = le.affinity_matrix_
    deg = np.asarray(W.sum(1)).ravel()
    L = sp.diags(deg) - W
    resid = L @ E - (deg[:, None] * E) * le.eigenvalues_
    assert np.abs(resid).max() < 1e-6 * np.abs(deg[:, None] * E).max()


def test_laplacian_matches_sklearn_nearest_neighbors(rng):
    from sklearn.manifold import SpectralEmbedding
    X = _blobs(rng, n=277, spread=1.5)
    # scikit-learn counts the point itself among its n_neighbors
    E = LaplacianEigenmaps(2, n_neighbors=9, weights="binary", tol=1e-10).fit_transform(X)
    ref = SpectralEmbedding(2, n_neighbors=10, random_state=0).fit_transform(X)
    _assert_same_subspace(E, ref)


def test_laplacian_heat_width_and_affinity(rng):
    X = rng.standard_normal((60, 4))
    W, t = knn_affinity(X, 5, weights="heat")
    assert t > 0 and (W != W.T).nnz == 0 and W.diagonal().sum() == 0
    assert 0 < W.data.min() and W.data.max() <= 1.0
    W2, t2 = knn_affinity(X, 5, weights="heat", t=2.5)
    assert t2 == 2.5
    Wb, tb = knn_affinity(X, 5, weights="binary")
    assert tb is None and set(np.unique(Wb.data)) <= {0.5, 1.0}


def test_laplacian_disconnected_graph(rng):
    from scipy.sparse.csgraph import connected_components
    X = np.vstack([rng.standard_normal((40, 3)) + 100.0 * i for i in range(4)])
    y = np.repeat(np.arange(4), 40)
    with pytest.raises(ValueError, match="disconnected"):
        LaplacianEigenmaps(2, n_neighbors=5, disconnected="raise").fit(X)
    with pytest.warns(UserWarning, match="not fully connected"):  # scikit-learn's spectral_embedding warns
        spectral_embedding(knn_affinity(X, 5)[0], n_components=2)
    with pytest.warns(UserWarning, match="4 connected components"):
        le = LaplacianEigenmaps(2, n_neighbors=5).fit(X)
    assert connected_components(le.affinity_matrix_)[0] == 1
    E = le.embedding_
    assert np.isfinite(E).all()
    # the components stay apart: clusters are tight relative to the gaps between them
    centers = np.array([E[y == c].mean(0) for c in range(4)])
    spread = max(np.linalg.norm(E[y == c] - centers[c], axis=1).max() for c in range(4))
    gaps = np.linalg.norm(centers[:, None] - centers[None], axis=-1)[np.triu_indices(4, 1)]
    assert gaps.min() > 2 * spread


def test_laplacian_bad_input(rng):
    X = rng.standard_normal((12, 3))
    with pytest.raises(ValueError, match="n_components"):
        LaplacianEigenmaps(n_components=12).fit(X)
    with pytest.raises(ValueError, match="n_neighbors"):
        LaplacianEigenmaps(n_neighbors=12).fit(X)
    with pytest.raises(ValueError, match="weights"):
        LaplacianEigenmaps(weights="gauss").fit(X)
    with pytest.raises(ValueError, match="disconnected"):
        LaplacianEigenmaps(disconnected="ignore").fit(X)
    with pytest.raises(ValueError, match="t must be > 0"):
        LaplacianEigenmaps(t=-1.0).fit(X)
    with pytest.warns(UserWarning, match="not symmetric"):  # scikit-learn averages it with its transpose
        spectral_embedding(sp.csr_matrix(np.triu(np.ones((5, 5)), 1)), n_components=1)
    with pytest.raises(ValueError, match="non-negative"):
        spectral_embedding(-np.ones((5, 5)), n_components=1)


# ----------------------------------------------------------------------------- CCA
def _paired(rng, n=503, p=7, q=5):
    Z = rng.standard_normal((n, 2))
    X = Z @ rng.standard_normal((2, p)) + 0.5 * rng.standard_normal((n, p))
    Y = Z @ rng.standard_normal((2, q)) + 0.5 * rng.standard_normal((n, q))
    return X, Y


def test_cca_against_eigen_reference(rng):
    X, Y = _paired(rng)
    Xc, Yc, rho = cca(X, Y, 3, reg=0.0)
    A, B = X - X.mean(0), Y - Y.mean(0)
    Cxx, Cyy, Cxy = A.T @ A, B.T @ B, A.T @ B
    # rho^2 are the eigenvalues of Cxx^-1 Cxy Cyy^-1 Cyx
    ev = np.sort(np.linalg.eigvals(np.linalg.solve(Cxx, Cxy) @ np.linalg.solve(Cyy, Cxy.T)).real)[::-1]
    np.testing.assert_allclose(rho ** 2, ev[:3], rtol=1e-8)
    assert np.all(np.diff(rho) <= 0)
    np.testing.assert_allclose(np.cov(Xc.T), np.eye(3), atol=1e-8)
    np.testing.assert_allclose(np.cov(Yc.T), np.eye(3), atol=1e-8)
    np.testing.assert_allclose(np.diag(np.corrcoef(Xc.T, Yc.T)[:3, 3:]), rho, atol=1e-8)


def test_cca_first_pair_matches_sklearn(rng):
    from sklearn.cross_decomposition import CCA as SkCCA
    X, Y = _paired(rng)
    model = CCA(1, reg=0.0).fit(X, Y)
    xs, ys = SkCCA(1, max_iter=5000, tol=1e-12).fit(X, Y).transform(X, Y)
    xc, yc = model.transform(X, Y)
    assert abs(np.corrcoef(xc[:, 0], xs[:, 0])[0, 1]) > 1 - 1e-6
    assert abs(np.corrcoef(yc[:, 0], ys[:, 0])[0, 1]) > 1 - 1e-6


def test_cca_regularisation_and_bad_input(rng):
    X, Y = _paired(rng, n=40, p=60, q=5)  # p > n: singular without ridge
    with pytest.raises(ValueError, match="singular"):
        CCA(2, reg=0.0).fit(X, Y)
    _, _, rho = cca(X, Y, 2, reg=0.1)
    assert np.all((rho > 0) & (rho <= 1))
    with pytest.raises(ValueError, match="same number of rows"):
        cca(X, Y[:-1], 2)
    with pytest.raises(ValueError, match="n_components"):
        cca(X, Y, 6)
    with pytest.raises(RuntimeError, match="not fitted"):
        CCA(2).transform(X)
    with pytest.raises(ValueError, match="reg"):
        cca(X, Y, 2, reg=-1.0)


def test_classical_mds_on_huge_distances(rng):
    X = rng.standard_normal((40, 3))
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    E = classical_mds(D * 1e200, n_components=2)
    assert np.isfinite(E).all()
    np.testing.assert_allclose(E, classical_mds(D, n_components=2) * 1e200, rtol=1e-9, atol=1e191)
    with pytest.raises(ValueError, match="float64 range"):
        classical_mds(D * 1e200, n_components=2, return_eigenvalues=True)
