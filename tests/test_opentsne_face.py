"""fastrl.opentsne: openTSNE 1.0's object model over fastrl's components, checked against openTSNE
itself where it is installed and against exact oracles otherwise."""
from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import fastrl.opentsne as openTSNE
from fastrl.manifold.tsne import exact_affinities


def _two_blobs(n=120, seed=0):
    rng = np.random.RandomState(seed)
    X = np.vstack([rng.normal(+2, 1, (n // 2, 4)), rng.normal(-2, 1, (n - n // 2, 4))])
    y = np.repeat([0, 1], [n // 2, n - n // 2])
    return X, y


def test_signatures_and_defaults_match_opentsne():
    peer = pytest.importorskip("openTSNE")
    pairs = [(openTSNE.TSNE.__init__, peer.TSNE.__init__),
             (openTSNE.TSNEEmbedding.optimize, peer.TSNEEmbedding.optimize),
             (openTSNE.TSNEEmbedding.transform, peer.TSNEEmbedding.transform),
             (openTSNE.TSNEEmbedding.prepare_partial, peer.TSNEEmbedding.prepare_partial),
             (openTSNE.affinity.PerplexityBasedNN.__init__, peer.affinity.PerplexityBasedNN.__init__),
             (openTSNE.affinity.FixedSigmaNN.__init__, peer.affinity.FixedSigmaNN.__init__),
             (openTSNE.affinity.Multiscale.__init__, peer.affinity.Multiscale.__init__),
             (openTSNE.affinity.Uniform.__init__, peer.affinity.Uniform.__init__),
             (openTSNE.initialization.pca, peer.initialization.pca),
             (openTSNE.initialization.spectral, peer.initialization.spectral),
             (openTSNE.initialization.random, peer.initialization.random),
             (openTSNE.initialization.rescale, peer.initialization.rescale)]
    for ours, theirs in pairs:
        mine = inspect.signature(ours).parameters
        for name, p in inspect.signature(theirs).parameters.items():
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            assert name in mine, (ours.__qualname__, name)
            assert mine[name].default == p.default, (ours.__qualname__, name)


def test_perplexity_affinities_match_exact_oracle():
    X, _ = _two_blobs(60)
    aff = openTSNE.affinity.PerplexityBasedNN(X, perplexity=5, method="exact")
    assert aff.P.sum() == pytest.approx(1.0)
    # the oracle: numpy bisection over all pairs, symmetrised (k_neighbors = N - 1: no truncation)
    full = openTSNE.affinity.PerplexityBasedNN(X, perplexity=5, method="exact", k_neighbors=len(X) - 1)
    cond = exact_affinities(X, 5.0)
    np.testing.assert_allclose(full.P.toarray(), (cond + cond.T) / (2 * len(X)), atol=1e-7)
    peer = pytest.importorskip("openTSNE")
    theirs = peer.affinity.PerplexityBasedNN(X, perplexity=5, method="exact").P
    np.testing.assert_allclose(aff.P.toarray(), theirs.toarray(), atol=1e-6)


def test_affinity_classes_sum_to_one_and_to_new_rows():
    X, _ = _two_blobs(90, seed=1)
    Xtr, Xte = X[:70], X[70:]
    for aff in [openTSNE.affinity.PerplexityBasedNN(Xtr, 10),
                openTSNE.affinity.FixedSigmaNN(Xtr, sigma=1.0, k=10),
                openTSNE.affinity.Multiscale(Xtr, perplexities=[5, 15]),
                openTSNE.affinity.MultiscaleMixture(Xtr, perplexities=[5, 15]),
                openTSNE.affinity.Uniform(Xtr, k_neighbors=8)]:
        assert aff.P.sum() == pytest.approx(1.0), type(aff).__name__
        assert abs(aff.P - aff.P.T).max() < 1e-12
        P = aff.to_new(Xte)
        np.testing.assert_allclose(np.asarray(P.sum(1)).ravel(), 1.0, rtol=1e-9)
    U = openTSNE.affinity.Uniform(Xtr, k_neighbors=8, symmetrize=False).P
    np.testing.assert_allclose(U.data, 1.0 / (8 * 70))
    W = sp.random(30, 30, density=0.3, random_state=0)
    pre = openTSNE.affinity.PrecomputedAffinities(W + W.T)
    assert pre.P.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="square"):
        openTSNE.affinity.PrecomputedAffinities(sp.random(3, 4, density=1.0))


def test_too_large_perplexity_is_lowered_with_a_warning():
    X, _ = _two_blobs(40, seed=2)
    with pytest.warns(UserWarning, match="Perplexity value 50 is too high"):
        aff = openTSNE.affinity.PerplexityBasedNN(X, perplexity=50)
    assert aff.effective_perplexity_ == pytest.approx(39 / 3)
    with pytest.warns(UserWarning, match="too high"):
        E = openTSNE.TSNE(perplexity=50, n_iter=20, early_exaggeration_iter=10, random_state=0).fit(X)
    assert np.isfinite(E).all()


def test_fit_embedding_objects_and_n_iter_zero():
    X, y = _two_blobs(120)
    E = openTSNE.TSNE(n_iter=150, early_exaggeration_iter=100, random_state=0).fit(X)
    assert isinstance(E, openTSNE.TSNEEmbedding) and isinstance(E, np.ndarray) and E.shape == (120, 2)
    assert np.isfinite(E.kl_divergence)
    centers = np.array([E[y == c].mean(0) for c in (0, 1)])
    assert np.linalg.norm(centers[0] - centers[1]) > 3 * max(E[y == c].std(0).max() for c in (0, 1))
    E0 = openTSNE.TSNE(n_iter=0, early_exaggeration_iter=0, initialization="random", random_state=0).fit(X)
    np.testing.assert_array_equal(E0, openTSNE.initialization.random(X, random_state=0))
    E2 = E.optimize(5)
    assert E2 is not E and E2.optimizer is not E.optimizer
    E3 = E.optimize(5, inplace=True)
    assert E3 is E


def test_callbacks_every_iters_and_interrupt():
    X, _ = _two_blobs(80)
    seen = []

    def cb(it, err, emb):
        seen.append(it)
        assert isinstance(emb, openTSNE.TSNEEmbedding) and np.isfinite(err)
        return it >= 30

    E = openTSNE.TSNE(n_iter=100, early_exaggeration_iter=0, callbacks=cb, callbacks_every_iters=10,
                      random_state=0).fit(X)
    assert seen == [10, 20, 30] and E.shape == (80, 2)
    with pytest.raises(ValueError, match="callable"):
        openTSNE.TSNE(callbacks=[1], n_iter=5).fit(X)


def test_transform_partial_embedding_places_points():
    X, y = _two_blobs(160, seed=3)
    E = openTSNE.TSNE(n_iter=100, early_exaggeration_iter=50, random_state=0).fit(X[:120])
    Z = E.transform(X[120:])
    assert isinstance(Z, openTSNE.PartialTSNEEmbedding) and Z.shape == (40, 2)
    from sklearn.neighbors import KNeighborsClassifier
    assert KNeighborsClassifier(5).fit(E, y[:120]).score(Z, y[120:]) > 0.95
    # each new point is optimised on its own: a subset gives the same positions
    np.testing.assert_allclose(E.transform(X[120:130], n_iter=20), E.transform(X[120:], n_iter=20)[:10])
    with pytest.raises(ValueError, match="shape"):
        E.prepare_partial(X[120:], initialization=np.zeros((3, 2)))


def test_initializations():
    X, _ = _two_blobs(100, seed=4)
    for E in (openTSNE.initialization.pca(X, random_state=0), openTSNE.initialization.random(100, random_state=0)):
        assert E.shape == (100, 2) and np.std(E[:, 0]) == pytest.approx(1e-4, rel=0.05)
    A = openTSNE.affinity.PerplexityBasedNN(X, 10).P
    S = openTSNE.initialization.spectral(A, random_state=0)
    assert S.shape == (100, 2) and np.std(S[:, 0]) == pytest.approx(1e-4, rel=0.05)
    R = openTSNE.initialization.rescale(np.arange(10.0)[:, None] * [1, 2])
    assert np.std(R[:, 0]) == pytest.approx(1e-4)


def test_multiscale_tsne_and_sklearn_wrapper():
    pytest.importorskip("sklearn")
    from fastrl.opentsne.sklearn import TSNE as SkTSNE
    X, _ = _two_blobs(100, seed=5)
    E = openTSNE.TSNE(perplexity=[5, 20], n_iter=30, early_exaggeration_iter=10, random_state=0).fit(X)
    assert isinstance(E.affinities, openTSNE.affinity.PerplexityBasedNN) and np.isfinite(E).all()
    est = SkTSNE(n_iter=30, early_exaggeration_iter=10, random_state=0)
    out = est.fit_transform(X)
    assert type(out) is np.ndarray and out.shape == (100, 2)
    assert type(est.transform(X[:5] + 0.01)) is np.ndarray
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sklearn.base import clone
        assert clone(est).get_params()["n_iter"] == 30
