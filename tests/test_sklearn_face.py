"""The scikit-learn face: fastrl.manifold.{TSNE, SpectralEmbedding, spectral_embedding, ClassicalMDS},
fastrl.metrics.trustworthiness and the metrics of fastrl.neighbors, each against scikit-learn itself."""
from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

sklearn = pytest.importorskip("sklearn")
from sklearn import manifold as skm  # noqa: E402
from sklearn.metrics import pairwise_distances  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402

from fastrl.manifold import TSNE, ClassicalMDS, SpectralEmbedding, spectral_embedding  # noqa: E402
from fastrl.metrics import trustworthiness  # noqa: E402
from fastrl.neighbors import knn_graph  # noqa: E402


def _blobs(n=120, d=5, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(0, 5, size=(3, d))
    y = rng.integers(0, 3, n)
    return c[y] + rng.normal(size=(n, d)), y


def _match_up_to_sign(A, B, atol):
    for j in range(A.shape[1]):
        s = np.sign(A[:, j] @ B[:, j]) or 1.0
        np.testing.assert_allclose(A[:, j], s * B[:, j], atol=atol)


# ----------------------------------------------------------------------------- signatures and attributes
@pytest.mark.parametrize("ours,theirs,differs", [
    (TSNE, skm.TSNE, {"method"}),  # method="auto" (Barnes-Hut below 10k points, FFT above) is documented
    (SpectralEmbedding, skm.SpectralEmbedding, set()),
    (ClassicalMDS, skm.ClassicalMDS, set()),
])
def test_parameters_and_defaults_are_scikit_learns(ours, theirs, differs):
    mine = inspect.signature(ours).parameters
    for name, p in inspect.signature(theirs).parameters.items():
        assert name in mine, name
        assert mine[name].kind == p.kind, name
        if name not in differs:
            assert mine[name].default == p.default, name


def test_tsne_attributes_and_dtypes():
    X, _ = _blobs(60)
    t = TSNE(perplexity=5, max_iter=260, random_state=0, init="random").fit(X)
    assert t.embedding_.dtype == np.float32 and t.embedding_.shape == (60, 2)
    assert t.n_iter_ == 259  # scikit-learn's convention: index of the last iteration
    assert t.n_features_in_ == 5 and np.isfinite(t.kl_divergence_)
    assert t.learning_rate_ == pytest.approx(60 / 12 / 4)
    sk = skm.TSNE(perplexity=5, max_iter=260, random_state=0, init="random").fit(X)
    assert (sk.embedding_.dtype, sk.n_iter_) == (t.embedding_.dtype, t.n_iter_)


def test_tsne_early_stopping_rules(capsys):
    X, _ = _blobs(80)
    t = TSNE(perplexity=5, min_grad_norm=1e3, max_iter=600, random_state=0, verbose=2).fit(X)
    out = capsys.readouterr().out
    # each phase stops at its first check (every 50 iterations): early exaggeration at 50, then at 100
    assert t.n_iter_ == 99 and out.count("Finished.") == 2 and "gradient norm" in out
    t = TSNE(perplexity=5, n_iter_without_progress=-1, learning_rate=1e8, max_iter=400, random_state=0, verbose=2)
    t._N_ITER_CHECK = 1  # KL checked every iteration: with this step it soon fails to improve
    t.fit(X)
    assert "did not make any progress during the last -1 episodes. Finished." in capsys.readouterr().out
    assert t.n_iter_ < 399


# ----------------------------------------------------------------------------- metrics and inputs
@pytest.mark.parametrize("metric,params", [("manhattan", None), ("chebyshev", None), ("minkowski", {"p": 3}),
                                           ("correlation", None), ("cosine", None),
                                           (lambda a, b: np.abs(a - b).max(), None)])
def test_knn_graph_metrics_match_sklearn(metric, params):
    X, _ = _blobs(97, 6, seed=2)
    idx, dist = knn_graph(X, 6, metric=metric, metric_params=params)
    ref_d, ref_i = NearestNeighbors(n_neighbors=6, metric=metric, metric_params=params).fit(X).kneighbors()
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-5, atol=1e-6)


def test_knn_graph_precomputed_dense_sparse_and_csr_input():
    X, _ = _blobs(90, 4, seed=3)
    ref_i = NearestNeighbors(n_neighbors=5).fit(X).kneighbors()[1]
    np.testing.assert_array_equal(knn_graph(pairwise_distances(X), 5, metric="precomputed")[0], ref_i)
    G = NearestNeighbors(n_neighbors=12).fit(X).kneighbors_graph(mode="distance")
    np.testing.assert_array_equal(knn_graph(G, 5, metric="precomputed")[0], ref_i)
    np.testing.assert_array_equal(knn_graph(sp.csr_matrix(X), 5)[0], ref_i)
    with pytest.raises(ValueError, match="6 neighbors per samples are required"):
        knn_graph(NearestNeighbors(n_neighbors=4).fit(X).kneighbors_graph(mode="distance"), 5,
                  metric="precomputed")
    with pytest.raises(ValueError, match="square"):
        knn_graph(pairwise_distances(X)[:, :-1], 5, metric="precomputed")
    with pytest.raises(ValueError, match="positive"):
        knn_graph(-pairwise_distances(X), 5, metric="precomputed")
    with pytest.raises(ValueError, match="metric must be one of"):
        knn_graph(X, 5, metric="nonsense")
    bad = X.copy()
    bad[3, 1] = np.nan
    for metric in ("manhattan", "correlation"):  # compiled and scikit-learn paths
        with pytest.raises(ValueError, match="NaN"):
            knn_graph(bad, 5, metric=metric)


@pytest.mark.parametrize("metric,dist", [("manhattan", "manhattan"), ("cosine", "cosine")])
def test_tsne_metric_equals_precomputed(metric, dist):
    X, _ = _blobs(50, 3, seed=4)
    kw = dict(method="exact", random_state=0, init="random", max_iter=260, perplexity=8)
    E1 = TSNE(metric=metric, **kw).fit_transform(X)
    E2 = TSNE(metric="precomputed", **kw).fit_transform(pairwise_distances(X, metric=dist))
    np.testing.assert_array_equal(E1, E2)


def test_tsne_sparse_precomputed_equals_dense_and_csr_input():
    X, _ = _blobs(100, 3, seed=5)
    kw = dict(metric="precomputed", random_state=0, init="random", max_iter=260, method="barnes_hut")
    G = NearestNeighbors(n_neighbors=99).fit(X).kneighbors_graph(mode="distance")
    np.testing.assert_allclose(TSNE(**kw).fit_transform(pairwise_distances(X)), TSNE(**kw).fit_transform(G),
                               atol=1e-5)
    E = TSNE(random_state=0, max_iter=260, perplexity=10).fit_transform(sp.csr_matrix(X))
    assert trustworthiness(X, E, n_neighbors=5) > 0.9
    with pytest.raises(TypeError, match="sparse"):
        TSNE(metric="precomputed", method="exact", init="random").fit(G)
    with pytest.raises(ValueError, match='init="pca" cannot be used with metric="precomputed"'):
        TSNE(metric="precomputed").fit(pairwise_distances(X))


def test_trustworthiness_matches_sklearn_with_metrics():
    X, _ = _blobs(150, 6, seed=6)
    E = X[:, :2] + 0.3 * np.random.default_rng(0).normal(size=(150, 2))
    for kw in ({}, {"metric": "cosine"}, {"metric": "manhattan", "n_neighbors": 7}):
        assert trustworthiness(X, E, **kw) == pytest.approx(skm.trustworthiness(X, E, **kw), abs=1e-12)
    D = pairwise_distances(X, metric="cosine")
    assert trustworthiness(D, E, metric="precomputed") == pytest.approx(
        skm.trustworthiness(D, E, metric="precomputed"), abs=1e-12)


# ----------------------------------------------------------------------------- spectral embedding
@pytest.mark.parametrize("affinity", ["rbf", "nearest_neighbors"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spectral_embedding_matches_sklearn(affinity, dtype):
    X = np.random.default_rng(7).normal(size=(200, 5)).astype(dtype)  # one connected cloud
    kw = dict(n_components=2, affinity=affinity, random_state=0, n_neighbors=15)
    ours = SpectralEmbedding(**kw).fit(X)
    ref = skm.SpectralEmbedding(**kw).fit(X)
    assert ours.embedding_.dtype == dtype and ours.n_features_in_ == 5
    A, B = ours.affinity_matrix_, ref.affinity_matrix_
    A, B = (A.toarray() if sp.issparse(A) else A), (B.toarray() if sp.issparse(B) else B)
    np.testing.assert_allclose(A, B, atol=1e-6)
    _match_up_to_sign(ours.embedding_.astype(np.float64), ref.embedding_.astype(np.float64), atol=1e-4)


def test_spectral_embedding_function_options():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(30, 4))
    W = np.exp(-pairwise_distances(X, squared=True) / 4)
    for kw in ({}, {"norm_laplacian": False, "drop_first": False, "n_components": 3}):
        _match_up_to_sign(spectral_embedding(W, random_state=0, **kw), skm.spectral_embedding(W, random_state=0, **kw),
                          atol=1e-7)
    try:
        import pyamg  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="pyamg is not available"):
            spectral_embedding(W, eigen_solver="amg")


def test_spectral_embedding_amg_fallbacks_warn_like_sklearn(monkeypatch):
    """scikit-learn's test_fallback_amg (it needs pyamg; here a stand-in module lets
    eigen_solver="amg" past the import): small graphs and dense affinities fall
    back to ARPACK with scikit-learn's RuntimeWarnings, and give ARPACK's result."""
    import sys
    import types

    from sklearn.metrics.pairwise import rbf_kernel
    monkeypatch.setitem(sys.modules, "pyamg", types.ModuleType("pyamg"))
    sims = rbf_kernel(np.random.RandomState(36).randn(10, 30))
    with pytest.warns(RuntimeWarning, match="dense matrices"):
        Y = spectral_embedding(sims, eigen_solver="amg", n_components=1, random_state=0)
    np.testing.assert_allclose(Y, spectral_embedding(sims, eigen_solver="arpack", n_components=1, random_state=0))
    with pytest.warns(RuntimeWarning, match="small graphs") as rec:
        spectral_embedding(sims, eigen_solver="amg", n_components=5, random_state=0)
    assert not any("dense" in str(w.message) for w in rec)  # the first fallback ends the checks, as in scikit-learn
    with warnings.catch_warnings():  # sparse and large enough: no fallback warning
        warnings.simplefilter("error", RuntimeWarning)
        X = np.random.default_rng(1).normal(size=(60, 3))
        G = sp.csr_matrix(NearestNeighbors(n_neighbors=8).fit(X).kneighbors_graph(X))
        spectral_embedding(G + G.T, eigen_solver="amg", n_components=2, random_state=0)


def test_spectral_embedding_precomputed_nearest_neighbors():
    X = np.random.default_rng(9).normal(size=(150, 4))
    G = NearestNeighbors(n_neighbors=20).fit(X).kneighbors_graph(X, mode="distance")
    from sklearn.neighbors import sort_graph_by_row_values
    G = sort_graph_by_row_values(G, warn_when_not_sorted=False)
    kw = dict(affinity="precomputed_nearest_neighbors", n_neighbors=10, random_state=0)
    _match_up_to_sign(SpectralEmbedding(**kw).fit_transform(G), skm.SpectralEmbedding(**kw).fit_transform(G),
                      atol=1e-6)


# ----------------------------------------------------------------------------- classical MDS
@pytest.mark.parametrize("metric,params", [("euclidean", None), ("minkowski", {"p": 1}), ("precomputed", None)])
def test_classical_mds_matches_sklearn(metric, params):
    X, _ = _blobs(80, 4, seed=10)
    data = pairwise_distances(X) if metric == "precomputed" else X
    ours = ClassicalMDS(n_components=3, metric=metric, metric_params=params).fit(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scikit-learn: sqrt of a negative eigenvalue
        ref = skm.ClassicalMDS(n_components=3, metric=metric, metric_params=params).fit(data)
    keep = ref.eigenvalues_ > 0
    np.testing.assert_allclose(ours.eigenvalues_, ref.eigenvalues_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.embedding_[:, keep], ref.embedding_[:, keep], atol=1e-8)
    with pytest.raises(ValueError, match="Array must be symmetric"):
        ClassicalMDS(metric="precomputed").fit(np.arange(9.0).reshape(3, 3))


# ----------------------------------------------------------------------------- check_estimator
@pytest.mark.parametrize("est", [SpectralEmbedding(n_neighbors=3), ClassicalMDS(),
                                 TSNE(perplexity=2, max_iter=250, n_jobs=1)], ids=lambda e: type(e).__name__)
def test_check_estimator(est):
    from sklearn.utils.estimator_checks import check_estimator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(est, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed
