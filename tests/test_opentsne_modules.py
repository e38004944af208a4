"""fastrl.opentsne's nearest_neighbors, callbacks and utils modules and the
kl_divergence_* objective functions, checked against openTSNE itself where it
is installed and against exact oracles otherwise."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist, pdist, squareform

import fastrl.opentsne as openTSNE
from fastrl.opentsne import nearest_neighbors as nn
from fastrl.opentsne.callbacks import VerifyExaggerationError
from fastrl.opentsne.tsne import kl_divergence_bh, kl_divergence_fft
from fastrl.opentsne.utils import clip_point_to_disc, is_package_installed


def _data(n=150, d=10, seed=0):
    rng = np.random.RandomState(seed)
    return rng.normal(100, 50, (n, d)), rng.normal(100, 50, (40, d))


def _exact_knn(D, k, exclude_self):
    D = D.copy()
    if exclude_self:
        np.fill_diagonal(D, np.inf)
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(D, idx, 1)


# ----------------------------------------------------------------------------- nearest_neighbors
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "manhattan"])
def test_sklearn_index_is_exact(metric):
    X, Q = _data()
    index = nn.Sklearn(X, 15, metric)
    assert index.index is None
    idx, dist = index.build()
    assert index.index is not None and idx.dtype == np.int64 and dist.dtype == np.float64
    scipy_metric = {"manhattan": "cityblock"}.get(metric, metric)
    ref_idx, ref_dist = _exact_knn(squareform(pdist(X, metric=scipy_metric)), 15, True)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=1e-12)
    qi, qd = index.query(Q, 7)
    ri, rd = _exact_knn(cdist(Q, X, metric=scipy_metric), 7, False)
    np.testing.assert_array_equal(qi, ri)
    np.testing.assert_allclose(qd, rd, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["Sklearn", "Annoy", "NNDescent", "HNSW"])
def test_indexes_match_opentsne_on_small_data(name):
    """Sklearn is exact, the approximate ones (fastrl's NN-descent) find nearly all
    true neighbours with their exact distances; openTSNE's own class (where its
    backend is installed) returns the same neighbours."""
    X, Q = _data()
    ours = getattr(nn, name)(X, 10, "euclidean", random_state=np.random.RandomState(3))
    idx, dist = ours.build()
    ref_idx, ref_dist = _exact_knn(squareform(pdist(X)), 10, True)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, ref_idx)])
    assert recall == 1.0 if name == "Sklearn" else recall > 0.99
    np.testing.assert_allclose(dist, np.linalg.norm(X[idx] - X[:, None], axis=2), rtol=1e-5)
    assert (np.diff(dist, axis=1) >= 0).all()
    qi, qd = ours.query(Q, 5)  # queries are exact for every index
    np.testing.assert_array_equal(qi, _exact_knn(cdist(Q, X), 5, False)[0])
    if name not in ("Sklearn", "Annoy"):  # pynndescent's JIT takes ~30 s; hnswlib is not a dependency
        return
    peer = pytest.importorskip("openTSNE.nearest_neighbors")
    p_idx, _ = getattr(peer, name)(X, 10, "euclidean", random_state=np.random.RandomState(3)).build()
    agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, p_idx)])
    assert agree == 1.0 if name == "Sklearn" else agree >= 0.98  # annoy may miss a neighbour too


def test_random_state_reproducible_and_pickle():
    X, _ = _data(300, 8)
    a = nn.NNDescent(X, 12, random_state=np.random.RandomState(42)).build()
    b = nn.NNDescent(X, 12, random_state=np.random.RandomState(42)).build()
    np.testing.assert_array_equal(a[0], b[0])
    index = nn.Annoy(X, 12)
    index.build()
    loaded = pickle.loads(pickle.dumps(index))
    np.testing.assert_array_equal(loaded.query(X[:20], 5)[0], index.query(X[:20], 5)[0])


def test_sklearn_knn_kwargs_use_scikit_learn():
    X, Q = _data()
    plain = nn.Sklearn(X, 8).build()
    kd = nn.Sklearn(X, 8, knn_kwargs=dict(algorithm="kd_tree", leaf_size=10))
    got = kd.build()
    from sklearn.neighbors import NearestNeighbors
    assert isinstance(kd.index, NearestNeighbors) and kd.index.leaf_size == 10
    np.testing.assert_array_equal(got[0], plain[0])
    np.testing.assert_allclose(got[1], plain[1])
    np.testing.assert_array_equal(kd.query(Q, 4)[0], nn.Sklearn(X, 8).query(Q, 4)[0])


def test_precomputed_indexes():
    X, Q = _data(80, 5)
    D = squareform(pdist(X))
    index = nn.PrecomputedDistanceMatrix(D, k=6)
    ref = _exact_knn(D, 6, True)
    np.testing.assert_array_equal(index.build()[0], ref[0])
    np.testing.assert_allclose(index.build()[1], ref[1])
    qi, qd = index.query(cdist(Q, X), 4)
    ri, rd = _exact_knn(cdist(Q, X), 4, False)
    np.testing.assert_array_equal(qi, ri)
    np.testing.assert_allclose(qd, rd)
    given = nn.PrecomputedNeighbors(ref[0], ref[1])
    assert given.k == 6 and given.n_samples == 80
    with pytest.raises(RuntimeError, match="cannot be queried"):
        given.query(Q, 3)
    aff = openTSNE.affinity.PerplexityBasedNN(D, perplexity=2, metric="precomputed")
    assert isinstance(aff.knn_index, nn.PrecomputedDistanceMatrix)


def test_bad_metric_and_method():
    X, _ = _data(50, 3)
    with pytest.raises(ValueError, match="does not support the `minkowski` metric"):
        nn.Annoy(X, 5, "minkowski")
    with pytest.raises(ValueError, match="Unrecognized nearest neighbor algorithm"):
        openTSNE.affinity.PerplexityBasedNN(X, perplexity=3, method="ball_tree")


def test_affinities_accept_a_knn_index():
    X, _ = _data(120, 6)
    index = nn.Sklearn(X, k=30)
    ours = openTSNE.affinity.PerplexityBasedNN(knn_index=index, perplexity=10)
    assert ours.knn_index is index and ours.n_samples == 120
    np.testing.assert_allclose(ours.P.toarray(), openTSNE.affinity.PerplexityBasedNN(X, 10, method="exact")
                               .P.toarray(), atol=1e-12)
    with pytest.raises(ValueError, match="Both `data` or `knn_index`"):
        openTSNE.affinity.Uniform(X, knn_index=index)
    with pytest.raises(ValueError, match="At least one"):
        openTSNE.affinity.FixedSigmaNN(sigma=1)
    assert openTSNE.affinity.FixedSigmaNN(knn_index=index, sigma=1).to_new(X[:5]).shape == (5, 120)
    peer = pytest.importorskip("openTSNE")
    theirs = peer.affinity.PerplexityBasedNN(knn_index=peer.nearest_neighbors.Sklearn(X, k=30), perplexity=10)
    np.testing.assert_allclose(ours.P.toarray(), theirs.P.toarray(), rtol=1e-5, atol=1e-12)  # bisection tolerances


# ----------------------------------------------------------------------------- kl_divergence_*
def _problem(n=200, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 5)
    P = openTSNE.affinity.PerplexityBasedNN(X, 10, method="exact").P
    return P, rng.randn(n, 2)


def test_kl_divergence_bh_exact_limit_matches_the_dense_formula():
    P, Y = _problem()
    W = 1 / (1 + squareform(pdist(Y, "sqeuclidean")))
    np.fill_diagonal(W, 0)
    Q = W / W.sum()
    Pd = P.toarray()
    m = Pd > 0
    kl_true = float((Pd[m] * np.log(Pd[m] / Q[m])).sum())
    grad_true = ((Pd - Q) * W)[:, :, None] * (Y[:, None, :] - Y[None, :, :])
    kl, grad = kl_divergence_bh(Y, P, 1, {"theta": 0.0}, should_eval_error=True)
    assert kl == pytest.approx(kl_true, rel=1e-9)
    np.testing.assert_allclose(grad, grad_true.sum(1), rtol=1e-7, atol=1e-12)
    assert kl_divergence_bh(Y, P, 1, {"theta": 0.0})[0] == 0.0  # not evaluated, as in openTSNE


@pytest.mark.parametrize("exaggeration", [1, 12])
def test_kl_divergence_matches_opentsne(exaggeration):
    peer = pytest.importorskip("openTSNE.tsne")
    P, Y = _problem()
    P = P * exaggeration
    for ours, theirs, params, rtol in [
        (kl_divergence_bh, peer.kl_divergence_bh, {"theta": 0.0}, 1e-7),
        (kl_divergence_bh, peer.kl_divergence_bh, {"theta": 0.5}, 2e-3),
        (kl_divergence_fft, peer.kl_divergence_fft, dict(n_interpolation_points=3, min_num_intervals=50,
                                                         ints_in_interval=1), 1e-3),
    ]:
        kl, g = ours(Y, P, 1, params, should_eval_error=True)
        kl_p, g_p = theirs(Y, P, 1, params, should_eval_error=True)
        assert kl == pytest.approx(kl_p, rel=rtol), (ours.__name__, params)
        assert np.linalg.norm(g - g_p) <= 20 * rtol * np.linalg.norm(g_p), (ours.__name__, params)


def test_kl_divergence_fft_refuses_3d_and_bh_handles_1d():
    P, Y = _problem(60)
    with pytest.raises(RuntimeError, match=">2 dimensions"):
        kl_divergence_fft(np.random.randn(60, 3), P, 1, {})
    kl1, g1 = kl_divergence_bh(Y[:, :1], P, 1, {"theta": 0.0}, should_eval_error=True)
    kl2, g2 = kl_divergence_bh(np.hstack([Y[:, :1], np.zeros((60, 1))]), P, 1, {"theta": 0.0},
                               should_eval_error=True)
    assert g1.shape == (60, 1) and kl1 == pytest.approx(kl2)
    np.testing.assert_allclose(g1[:, 0], g2[:, 0])


def test_kl_divergence_functions_as_gradient_method():
    P, _ = _problem(150)
    init = openTSNE.initialization.random(150, 2, random_state=0)
    for fn in (kl_divergence_bh, kl_divergence_fft):
        E = openTSNE.TSNEEmbedding(init, openTSNE.affinity.PrecomputedAffinities(P), negative_gradient_method=fn)
        E = E.optimize(30, exaggeration=4)
        assert np.isfinite(E).all() and E.kl_divergence > 0


# ----------------------------------------------------------------------------- callbacks, utils
def test_verify_exaggeration_error():
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(1, 1, (100, 4)), rng.normal(-1, 1, (100, 4))])
    for method in ("bh", "fft"):
        E = openTSNE.TSNE(neighbors="exact", negative_gradient_method=method, random_state=0).prepare_initial(X)
        E.optimize(15, exaggeration=5, callbacks=[VerifyExaggerationError(E)], callbacks_every_iters=1, inplace=True)
    check = VerifyExaggerationError(E)
    true_kl, _ = kl_divergence_fft(E, E.affinities.P, 1, E.gradient_descent_params, should_eval_error=True)
    check(1, true_kl, E)  # the right value passes
    with pytest.raises(RuntimeError, match="Correction term is wrong"):
        check(1, true_kl + 1e-6, E)


def test_clip_point_to_disc():
    x = np.array([[0, 1], [5, 0], [1, 1], [0.05, 0.05], [-3, -4]], dtype=np.float64)
    clipped, mask = clip_point_to_disc(x, 1)
    v = np.sqrt(0.5)
    np.testing.assert_allclose(clipped, [[0, 1], [1, 0], [v, v], [0.05, 0.05], [-0.6, -0.8]])
    np.testing.assert_array_equal(mask, [False, True, True, False, True])
    assert x[1, 0] == 5  # a copy unless inplace
    same, _ = clip_point_to_disc(x, 2, inplace=True)
    assert same is x and np.allclose(np.linalg.norm(x, axis=1).max(), 2)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        clip_point_to_disc(np.zeros((3, 3)), 1)


def test_is_package_installed():
    assert is_package_installed("numpy") and is_package_installed("scipy.sparse")
    assert not is_package_installed("fastrl_no_such_package_xyz")
    assert not is_package_installed("fastrl_no_such_package_xyz.sub")


def test_sparse_data_index():
    X, Q = _data(100, 6)
    a = nn.Sklearn(sp.csr_matrix(X), 5).build()
    b = nn.Sklearn(X, 5).build()
    np.testing.assert_array_equal(a[0], b[0])
