"""t-SNE components against the exact numpy oracle, and the estimator's contract."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from fastrl.manifold import TSNE
from fastrl.manifold.tsne import (attractive_forces, bh_repulsion, dense_affinities, exact_affinities,
                                  exact_kl_gradient, fft_repulsion, joint_probabilities, kl_gradient,
                                  perplexity_affinities, symmetrize)
from fastrl.neighbors import knn_graph, use_cpu_kernel

from conftest import assert_within_rounding

# Approximation errors at the fixed settings of the tests below, measured once (tests/conftest.py
# states the rule: bound = 2x the max over seeds), normwise (``_rel``). Seeds: the ``problem``
# fixture's (blobs 4, Y 5) and blobs s / Y s + 100 for s = 0..7; the octree's 21 and 30..37.
BH_THETA05_GRAD_ERR = 1.52e-2  # Barnes-Hut, angle 0.5 (the fixture's seed: 1.06e-2)
# FFT interpolation (50 boxes minimum, 3 nodes), exaggeration 3: (dof, scale) -> (gradient, KL relative)
FFT_ERR = {(1.0, 1.0): (3.97e-4, 6.82e-6), (1.0, 0.01): (1.45e-7, 2.71e-8), (0.7, 1.0): (4.24e-4, 5.71e-6),
           (1.0, 2.5): (2.43e-2, 6.41e-4)}
# octree (Numba), angle 0.5, 300 points: (d, dof) -> (Z relative, R normwise)
OCTREE_THETA05_ERR = {(1, 1.0): (8.24e-3, 3.03e-2), (1, 0.7): (6.83e-3, 2.56e-2), (2, 1.0): (7.70e-3, 3.33e-2),
                      (2, 0.7): (5.11e-3, 2.71e-2), (3, 1.0): (3.51e-3, 2.98e-2), (3, 0.7): (1.14e-3, 1.88e-2)}


def _blobs(n=157, d=7, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 5, size=(4, d))
    y = rng.integers(0, 4, n)
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("perplexity", [5.0, 17.5, 30.0])
def test_row_perplexity_within_tolerance(perplexity):
    X, _ = _blobs(203, 9, seed=1)
    k = int(3 * perplexity)
    _, dist = knn_graph(X, k)
    P = perplexity_affinities(dist, perplexity)
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-12)
    H = -(P * np.log(np.where(P > 0, P, 1.0))).sum(1)
    assert np.abs(np.exp(H) - perplexity).max() < 1e-3


def test_dense_affinities_match_numpy_bisection():
    X, _ = _blobs(61, 5, seed=2)
    Pc = dense_affinities(X, 12.0, symmetric=False)
    np.testing.assert_allclose(Pc, exact_affinities(X, 12.0), atol=1e-5)
    Pj = dense_affinities(X, 12.0)
    np.testing.assert_allclose(Pj, (Pc + Pc.T) / (2 * 61), atol=1e-12)


def test_sparse_symmetrization_matches_scipy():
    rng = np.random.default_rng(3)
    n, k = 97, 11
    idx = np.stack([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
    Pc = rng.random((n, k))
    Pc /= Pc.sum(1, keepdims=True)
    P = symmetrize(idx, Pc)
    C = sp.csr_matrix((Pc.ravel(), idx.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    ref = ((C + C.T) / (2 * n)).toarray()
    np.testing.assert_allclose(P.toarray(), ref, atol=1e-15)
    assert abs(P.sum() - 1.0) < 1e-12 and P.has_sorted_indices


@pytest.fixture(scope="module")
def problem():
    X, _ = _blobs(211, 6, seed=4)
    P = dense_affinities(X, 15.0)
    Y = np.random.default_rng(5).normal(size=(211, 2)) * 2.5
    return P, sp.csr_matrix(P), Y


@pytest.mark.parametrize("dof", [1.0, 0.6, 2.5])
def test_barnes_hut_theta0_matches_exact(problem, dof):
    P, Ps, Y = problem
    kl, grad = exact_kl_gradient(P, Y, dof=dof)
    kl2, grad2 = kl_gradient(Ps, Y, method="barnes_hut", theta=0.0, dof=dof)
    assert abs(kl - kl2) < 1e-10
    np.testing.assert_allclose(grad2, grad, rtol=1e-9, atol=1e-12 * np.abs(grad).max())


def test_barnes_hut_approximation_is_close(problem):
    P, Ps, Y = problem
    _, grad = exact_kl_gradient(P, Y)
    _, grad2 = kl_gradient(Ps, Y, method="barnes_hut", theta=0.5)
    assert_within_rounding(_rel(grad2, grad), BH_THETA05_GRAD_ERR, factor=2, what="Barnes-Hut gradient")


# The interpolation error grows with the box width (span / 50 boxes, at most
# 1 as in FIt-SNE / openTSNE): ~4e-4 for boxes of 0.3, a few % for 0.7; float32
# rounding of the transforms (~1e-7) at scale 0.01.
@pytest.mark.parametrize("dof,scale", list(FFT_ERR))
def test_fft_matches_exact(problem, dof, scale):
    P, Ps, Y = problem
    Y = Y * scale
    kl, grad = exact_kl_gradient(P, Y, dof=dof, exaggeration=3.0)
    kl2, grad2 = kl_gradient(Ps, Y, method="fft", dof=dof, exaggeration=3.0)
    grad_err, kl_err = FFT_ERR[dof, scale]
    assert_within_rounding(abs(kl - kl2) / abs(kl), kl_err, factor=2, what="FFT KL")
    assert_within_rounding(_rel(grad2, grad), grad_err, factor=2, what="FFT gradient")


def test_attractive_and_repulsive_parts(problem):
    P, Ps, Y = problem
    A = attractive_forces(Ps, Y, exaggeration=2.0)
    D = ((Y[:, None] - Y[None]) ** 2).sum(-1)
    U = 1.0 / (1.0 + D)
    ref_A = 2.0 * ((P * U).sum(1)[:, None] * Y - (P * U) @ Y)
    np.testing.assert_allclose(A, ref_A, rtol=1e-10, atol=1e-14)
    W = U * (1 - np.eye(len(Y)))
    R, Z = bh_repulsion(Y, theta=0.0)
    np.testing.assert_allclose(Z, W.sum(), rtol=1e-12)
    np.testing.assert_allclose(R, (W * U).sum(1)[:, None] * Y - (W * U) @ Y, rtol=1e-9, atol=1e-12)
    R2, Z2 = fft_repulsion(Y)
    assert abs(Z2 - Z) < 1e-3 * Z and _rel(R2, R) < 5e-3


KERNELS = list(__import__("fastrl.neighbors.knn", fromlist=["_core"])._core().cpu_kernels_supported())


@pytest.mark.parametrize("kernel", KERNELS)
def test_attractive_forces_every_cpu_kernel(kernel):
    """The SIMD builds of the 2-D attractive forces (AVX2: 4 edges a step,
    AVX-512: 8, then a scalar tail) against the float64 formula, on rows of
    every length 0..40 and a Y_ref of another size; the KL evaluation takes the
    scalar loop and must agree with the forces it returns."""
    with use_cpu_kernel(kernel):
        _attractive_forces_match_formula()


def _attractive_forces_match_formula():
    rng = np.random.default_rng(11)
    n, n_ref = 41, 53
    lengths = rng.permutation(np.arange(n))  # 0..40 edges per row
    rows = np.repeat(np.arange(n), lengths)
    cols = rng.integers(0, n_ref, rows.size)
    P = sp.csr_matrix((rng.random(rows.size), (rows, cols)), shape=(n, n_ref))
    Y, Yr = rng.normal(size=(n, 2)) * 3, rng.normal(size=(n_ref, 2)) * 3
    Pd = P.toarray()
    U = 1.0 / (1.0 + ((Y[:, None] - Yr[None]) ** 2).sum(-1) / 0.7)
    ref = 1.5 * ((Pd * U).sum(1)[:, None] * Y - (Pd * U) @ Yr)
    got = attractive_forces(P, Y, Y_ref=Yr, dof=0.7, exaggeration=1.5)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    got_kl, _ = attractive_forces(P, Y, Y_ref=Yr, dof=0.7, exaggeration=1.5, eval_kl=True)
    np.testing.assert_allclose(got_kl, ref, rtol=1e-12, atol=1e-12)


def test_fft_spreading_bands_match_one_thread():
    """Two threads spread into disjoint bands of box rows of the shared grid: the
    same additions in the same order as one thread, so the same bits."""
    rng = np.random.default_rng(12)
    Y = np.concatenate([rng.normal(size=(6000, 2)) * 4 + c for c in rng.uniform(-30, 30, (5, 2))])
    R1, Z1 = fft_repulsion(Y, n_jobs=1)
    R2, Z2 = fft_repulsion(Y, n_jobs=2)
    np.testing.assert_array_equal(R1, R2)
    assert Z1 == Z2


def test_sne_and_symmetric_sne_gradients_by_finite_differences():
    X, _ = _blobs(23, 4, seed=6)
    Y = np.random.default_rng(7).normal(size=(23, 2))
    for symmetric in (True, False):
        P = dense_affinities(X, 5.0, symmetric=symmetric)
        _, grad = exact_kl_gradient(P, Y, kernel="gaussian", symmetric=symmetric)
        num = np.zeros_like(Y)
        for i in range(3):
            for c in range(2):
                E = Y.copy()
                E[i, c] += 1e-6
                hi = exact_kl_gradient(P, E, kernel="gaussian", symmetric=symmetric)[0]
                E[i, c] -= 2e-6
                lo = exact_kl_gradient(P, E, kernel="gaussian", symmetric=symmetric)[0]
                num[i, c] = (hi - lo) / 2e-6
        np.testing.assert_allclose(grad[:3], num[:3], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", ["exact", "barnes_hut", "fft"])
def test_tsne_separates_clusters_and_is_deterministic(method):
    X, y = _blobs(200, 8, seed=8)
    kw = dict(method=method, random_state=3, max_iter=300, n_jobs=2)
    E1 = TSNE(**kw).fit_transform(X)
    t = TSNE(**kw).fit(X)
    np.testing.assert_array_equal(E1, t.embedding_)
    # n_iter_ is scikit-learn's: the index of the last iteration
    assert t.n_iter_ == 299 and t.method_ == method and np.isfinite(t.kl_divergence_)
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.model_selection import cross_val_score
    assert cross_val_score(KNeighborsClassifier(5), E1, y, cv=3).mean() > 0.95


def test_kl_history_callbacks_and_early_stop():
    X, _ = _blobs(120, 5, seed=9)
    seen = []

    def cb(it, kl, emb):
        seen.append((it, kl, emb.shape))
        return it >= 150

    t = TSNE(method="barnes_hut", max_iter=400, random_state=0, callbacks=cb).fit(X)
    assert [s[0] for s in seen] == [50, 100, 150] and t.n_iter_ == 149
    assert all(np.isfinite(s[1]) and s[2] == (120, 2) for s in seen)
    assert t.kl_history_[-1][0] == 150


@pytest.mark.parametrize("kernel,symmetric", [("gaussian", True), ("gaussian", False)])
def test_sne_variants_run(kernel, symmetric):
    X, y = _blobs(90, 5, seed=10)
    t = TSNE(method="exact", kernel=kernel, symmetric=symmetric, max_iter=200, random_state=0)
    E = t.fit_transform(X)
    assert np.isfinite(E).all() and np.isfinite(t.kl_divergence_)
    with pytest.raises(ValueError, match="method"):
        TSNE(method="barnes_hut", kernel=kernel, symmetric=symmetric).fit(X)


def test_random_init_and_array_init_and_other_dims():
    X, _ = _blobs(80, 5, seed=11)
    init = np.random.default_rng(0).normal(size=(80, 2)) * 1e-4
    E = TSNE(init=init, max_iter=60, method="barnes_hut").fit_transform(X)
    assert E.shape == (80, 2)
    E3 = TSNE(n_components=3, init="random", max_iter=60, random_state=1).fit_transform(X)
    assert E3.shape == (80, 3) and np.isfinite(E3).all()


def test_transform_places_points_near_training_neighbours():
    X, y = _blobs(400, 8, seed=12)
    t = TSNE(method="barnes_hut", random_state=0, max_iter=300).fit(X[:300])
    Z = t.transform(X[300:])
    from sklearn.neighbors import KNeighborsClassifier
    acc = KNeighborsClassifier(10).fit(t.embedding_, y[:300]).score(Z, y[300:])
    assert acc > 0.95


@pytest.mark.parametrize("kwargs,X,match", [
    ({"perplexity": 10.0}, np.zeros((10, 3)), "perplexity"),
    ({"perplexity": 0.5}, np.random.default_rng(0).normal(size=(1, 3)), "at least 2"),
    ({"init": np.zeros((5, 2)), "perplexity": 3.0}, np.random.default_rng(0).normal(size=(12, 3)), "init"),
    ({"method": "tree"}, np.random.default_rng(0).normal(size=(12, 3)), "method"),
    ({"perplexity": -1.0}, np.random.default_rng(0).normal(size=(12, 3)), "perplexity"),
    ({"perplexity": 3.0, "init": "spectral"}, np.random.default_rng(0).normal(size=(12, 3)), "init"),
])
def test_bad_inputs_raise_clear_errors(kwargs, X, match):
    with pytest.raises(ValueError, match=match):
        TSNE(**kwargs).fit(X)


def test_nan_input_and_transform_before_fit():
    X = np.random.default_rng(0).normal(size=(20, 3))
    X[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        TSNE(perplexity=3).fit(X)
    with pytest.raises((RuntimeError, ValueError), match="fit"):
        TSNE().transform(X)
    with pytest.raises(ValueError, match="perplexity"):
        joint_probabilities(np.ones((5, 2)), 5.0)


def test_sklearn_clone_and_params():
    from sklearn.base import clone
    t = TSNE(perplexity=7.0, method="fft", random_state=4)
    c = clone(t)
    assert c.get_params() == t.get_params() and c is not t
    assert c.set_params(angle=0.3).angle == 0.3
    with pytest.raises(ValueError, match="nvalid parameter"):
        c.set_params(bogus=1)


# ----------------------------------------------------------------------------- issue 13: bad and extreme inputs
@pytest.mark.parametrize("std", [150.0, 1e15])
def test_wide_init_keeps_fft_grid_bounded(std):
    from fastrl.manifold.tsne.gradients import MAX_BOXES, fft_grid
    X, _ = _blobs(300, 5, seed=13)
    init = np.random.default_rng(0).normal(0, std, size=(300, 2))
    # the grid is capped, so time and memory do not grow with the span
    _, h, n_boxes = fft_grid(init, max_boxes=50)
    assert n_boxes <= 50 * 1.05 and h * n_boxes * 3 >= np.ptp(init)
    assert fft_grid(init * 1e6)[2] <= MAX_BOXES * 1.05
    t = TSNE(method="fft", init=init, max_iter=3, random_state=0).fit(X)
    assert np.isfinite(t.embedding_).all() and np.isfinite(t.kl_divergence_)
    # beyond the cap the objective takes Barnes-Hut's repulsion: still right, against the exact sum
    from fastrl.manifold.tsne.optimizer import SparseObjective
    Y = np.ascontiguousarray(init[:60] / std * 100.0)
    P = joint_probabilities(X[:60], 5.0)
    obj = SparseObjective(P, "fft", theta=0.0)
    kl, g = obj(Y, 1.0, True)
    kl_ref, g_ref = exact_kl_gradient(P.toarray(), Y)
    assert kl == pytest.approx(kl_ref, rel=1e-6) and _rel(4 * g, g_ref) < 1e-6
    assert (obj.calls, obj.bh_fallbacks) == (1, 1)  # counted, and reported by verbose fits
    obj(Y / 100.0, 1.0, False)  # a span within the cap: FFT
    assert (obj.calls, obj.bh_fallbacks) == (2, 1)


def test_verbose_fit_reports_barnes_hut_fallbacks(capsys):
    X, _ = _blobs(300, 5, seed=13)
    init = np.random.default_rng(0).normal(0, 1e4, size=(300, 2))
    TSNE(method="fft", init=init, max_iter=3, early_exaggeration_iter=1, random_state=0, verbose=1).fit(X)
    assert "Barnes-Hut repulsion in 3 of 3 gradient evaluations" in capsys.readouterr().out


def test_init_beyond_float32_range_is_refused():
    X, _ = _blobs(40, 3, seed=14)
    with pytest.raises(ValueError, match="init has values up to"):
        TSNE(method="fft", init=np.full((40, 2), 1e150), perplexity=5).fit(X)


@pytest.mark.parametrize("kwargs,match", [
    ({"initial_momentum": float("nan")}, "initial_momentum"),
    ({"final_momentum": 1.5}, "final_momentum"),
    ({"max_step_norm": -1.0}, "max_step_norm"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"n_iter_without_progress": -2}, "n_iter_without_progress"),
    ({"min_grad_norm": -1.0}, "min_grad_norm"),
])
def test_bad_optimizer_parameters_raise(kwargs, match):
    X, _ = _blobs(30, 3, seed=15)
    with pytest.raises(ValueError, match=match):
        TSNE(perplexity=5, **kwargs).fit(X)


@pytest.mark.parametrize("kwargs,match", [
    ({"learning_rate": float("nan")}, "learning_rate"), ({"learning_rate": -1.0}, "learning_rate"),
    ({"exaggeration": float("nan")}, "exaggeration"), ({"momentum": float("nan")}, "momentum"),
])
def test_bad_transform_parameters_raise(kwargs, match):
    X, _ = _blobs(60, 4, seed=16)
    t = TSNE(perplexity=5, max_iter=50, random_state=0).fit(X[:50])
    with pytest.raises(ValueError, match=match):
        t.transform(X[50:], **kwargs)


@pytest.mark.parametrize("method", ["exact", "barnes_hut"])
def test_one_perplexity_rule_on_every_method(method):
    X, _ = _blobs(40, 4, seed=17)
    t = TSNE(method=method, perplexity=39.5, max_iter=60, random_state=0).fit(X)
    assert np.isfinite(t.embedding_).all()
    with pytest.raises(ValueError, match=r"perplexity \(40\) must be less than n_samples \(40\)"):
        TSNE(method=method, perplexity=40).fit(X)


def test_perplexity_above_k_gives_uniform_rows():
    X, _ = _blobs(12, 3, seed=18)
    P = dense_affinities(X, 11.5, symmetric=False)  # 11 neighbours: the largest reachable perplexity
    off = P[~np.eye(12, dtype=bool)].reshape(12, 11)
    np.testing.assert_allclose(off, 1.0 / 11, rtol=5e-3)  # the bisection ends next to beta = 0


def test_unavailable_device_is_refused_before_any_work(monkeypatch):
    import torch
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")

    def boom(*a, **k):
        raise AssertionError("affinities were built before the device check")

    monkeypatch.setattr(TSNE, "_affinities", boom)
    X, _ = _blobs(30, 3, seed=19)
    with pytest.raises(ValueError, match="device"):
        TSNE(perplexity=5, device="cuda").fit(X)
    with pytest.raises(ValueError, match="device"):
        TSNE(perplexity=5, device="tpu:0").fit(X)


def test_theta_is_a_deprecated_alias_of_angle():
    X, _ = _blobs(60, 4, seed=20)
    kw = dict(method="barnes_hut", perplexity=5, max_iter=60, random_state=0)
    with pytest.warns(FutureWarning, match="angle"):
        E1 = TSNE(theta=0.2, **kw).fit_transform(X)
    np.testing.assert_array_equal(E1, TSNE(angle=0.2, **kw).fit_transform(X))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_octree_repulsion_matches_exact_sum(d):
    from fastrl.manifold.tsne.octree import bh_repulsion_nd
    rng = np.random.default_rng(21)
    Y = rng.normal(size=(300, d)) * 4
    Y[5] = Y[7] = Y[9]  # coincident points share a leaf
    d2 = ((Y[:, None] - Y[None]) ** 2).sum(-1)
    for dof in (1.0, 0.7):
        u = 1.0 / (1.0 + d2 / dof)
        w = u ** dof
        np.fill_diagonal(w, 0.0)
        R_ref = ((w * u)[:, :, None] * (Y[:, None] - Y[None])).sum(1)
        R, Z = bh_repulsion_nd(Y, theta=0.0, dof=dof)
        assert Z == pytest.approx(w.sum(), rel=1e-12) and _rel(R, R_ref) < 1e-12
        R, Z = bh_repulsion_nd(Y, theta=0.5, dof=dof)
        z_err, r_err = OCTREE_THETA05_ERR[d, dof]
        assert_within_rounding(abs(Z - w.sum()) / w.sum(), z_err, factor=2, what="octree Z")
        assert_within_rounding(_rel(R, R_ref), r_err, factor=2, what="octree R")


def test_barnes_hut_in_three_dimensions():
    X, y = _blobs(150, 6, seed=22)
    t = TSNE(n_components=3, method="barnes_hut", perplexity=15, max_iter=300, random_state=0).fit(X)
    assert t.embedding_.shape == (150, 3) and t.method_ == "barnes_hut" and np.isfinite(t.kl_divergence_)
    from sklearn.neighbors import KNeighborsClassifier
    assert KNeighborsClassifier(5).fit(t.embedding_, y).score(t.embedding_, y) > 0.95
    with pytest.raises(ValueError, match="'n_components' should be inferior to 4"):
        TSNE(n_components=4, method="barnes_hut").fit(X)


def test_progress_bar_shows_iterations_and_kl(capsys):
    X = np.random.default_rng(0).standard_normal((60, 5))
    E = TSNE(perplexity=10, max_iter=100, method="barnes_hut", random_state=0, progress_bar=True).fit_transform(X)
    err = capsys.readouterr().err
    assert "t-SNE (barnes_hut)" in err and "100/100" in err and "kl=" in err
    # the bar changes nothing else: same embedding without it
    E0 = TSNE(perplexity=10, max_iter=100, method="barnes_hut", random_state=0).fit_transform(X)
    np.testing.assert_array_equal(E, E0)
    assert capsys.readouterr().err == ""
