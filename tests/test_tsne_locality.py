"""t-SNE memory locality: space-filling-curve order, CSR permutation, and fits with / without re-ordering."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fastrl.manifold.tsne.locality as locality
from fastrl.manifold import TSNE
from fastrl.manifold.tsne.gradients import CSRParts, attractive_forces
from fastrl.manifold.tsne.locality import (PermutedCSRParts, Reordering, inverse_permutation, permute_csr,
                                           reorder_wanted, spatial_order)

from conftest import assert_within_rounding, rel_err

# Fits of _blobs(seed) (1500 points) with reorder=True vs False, 12 early-exaggeration iterations,
# re-ordered every 4 (at 0, 4, 8): normwise difference of the float64 embeddings, max over seeds 0..4.
# Not bit-identical: the FFT spreads charges onto its float32 grid in the points' order, the centring
# and Barnes-Hut's cell sums add in it, and t-SNE's iteration amplifies those roundings (by
# iteration 80 the two runs differ visibly, as two runs with different roundings do; their KL agrees
# to ~1% after 150 iterations). Measured: FFT 1.32e-5 (seeds: 1.13e-5, 4.32e-6, 1.32e-5, 3.57e-6,
# 7.55e-6), Barnes-Hut 3.84e-13 (1.2e-13 .. 3.8e-13) on a Zen 3. On a Zen 4 the FFT is the same and
# Barnes-Hut's roundings differ (numpy's own SIMD too, not only fastrl's loops): 1.18e-12 on the
# AVX-512 loops, 1.17e-12 AVX2, 8.73e-13 base (seed 0 the largest): the constant is the max of both CPUs.
REORDER_FIT_ERR = {"fft": 1.32e-5, "barnes_hut": 1.18e-12}
EVERY = 4


def _blobs(seed=0, n=1500, d=10):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 5, size=(6, d))
    return (centers[rng.integers(0, 6, n)] + rng.normal(size=(n, d))).astype(np.float32)


def _fit(X, *, reorder, method="fft", seed=0, max_iter=12, **kw):
    return TSNE(method=method, reorder=reorder, random_state=seed, max_iter=max_iter,
                early_exaggeration_iter=min(max_iter, 250), neighbors="exact", **kw).fit(X)


# ------------------------------------------------------------------ helpers
@pytest.mark.parametrize("d", [1, 2, 3])
def test_spatial_order_is_a_bijection_and_local(d):
    rng = np.random.default_rng(d)
    Y = rng.normal(size=(4000, d))
    perm = spatial_order(Y)
    assert perm.dtype == np.int64 and np.array_equal(np.sort(perm), np.arange(4000))
    inv = inverse_permutation(perm)
    assert np.array_equal(inv[perm], np.arange(4000)) and np.array_equal(perm[inv], np.arange(4000))
    # along the curve, consecutive points are close: far closer than in a random order
    step = np.linalg.norm(np.diff(Y[perm], axis=0), axis=1).mean()
    random_step = np.linalg.norm(np.diff(Y, axis=0), axis=1).mean()
    assert step < 0.25 * random_step, (step, random_step)


def test_hilbert_order_visits_grid_cells_edge_to_edge():
    # the 2-D curve on a 2^b grid: consecutive cells share an edge (Hilbert, unlike Morton, never jumps)
    g = 32
    xy = np.stack(np.meshgrid(np.arange(g), np.arange(g), indexing="ij"), -1).reshape(-1, 2) + 0.5
    order = spatial_order(np.random.default_rng(0).permutation(xy))
    pts = np.random.default_rng(0).permutation(xy)[order]
    assert np.array_equal(np.abs(np.diff(pts, axis=0)).sum(1), np.ones(g * g - 1))


def test_inverse_permutation_rejects_non_permutations():
    with pytest.raises(ValueError, match="perm"):
        inverse_permutation(np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="perm"):
        inverse_permutation(np.array([0, 3, 1]))


def test_spatial_order_rejects_bad_input():
    with pytest.raises(ValueError, match="Y"):
        spatial_order(np.zeros((5, 4)))
    with pytest.raises(ValueError, match="NaN"):
        spatial_order(np.array([[0.0, np.nan], [1.0, 2.0]]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permute_csr_equals_dense(seed):
    rng = np.random.default_rng(seed)
    P = sp.random(60, 60, density=0.15, random_state=seed, format="csr")
    perm = rng.permutation(60)
    Q = permute_csr(P, perm)
    assert np.array_equal(Q.toarray(), P.toarray()[perm][:, perm])
    S = Q.copy()
    S.has_sorted_indices = False
    S.sort_indices()
    assert np.array_equal(S.indices, Q.indices)  # rows come back sorted


def test_permuted_parts_and_reordering_round_trip():
    rng = np.random.default_rng(3)
    n = 300
    Y = rng.normal(size=(n, 2))
    P = sp.random(n, n, density=0.05, random_state=3, format="csr")
    P = (P + P.T).tocsr()
    P.data /= P.data.sum()
    parts = CSRParts(P)
    perm = rng.permutation(n)
    permuted = PermutedCSRParts(parts, perm)
    Q = sp.csr_matrix((permuted.data, permuted.indices, permuted.indptr), shape=permuted.shape)
    assert np.array_equal(Q.toarray(), P.toarray()[perm][:, perm])
    # same entries in the same order per row: the attractive forces are bit-identical, permuted
    A = attractive_forces(parts, Y, exaggeration=3.0)
    assert np.array_equal(attractive_forces(permuted, Y[perm], exaggeration=3.0), A[perm])

    class Obj:
        pass

    obj, opt = Obj(), Obj()
    obj.P = CSRParts(P)  # a copy of its own: the re-ordering consumes the P it replaces
    Yw = Y.copy()
    opt.update, opt.gains = rng.normal(size=(n, 2)), rng.uniform(0.5, 2, size=(n, 2))
    update0, gains0 = opt.update.copy(), opt.gains.copy()
    R = Reordering(every=5)
    R.maybe(3, Yw, obj, opt)
    assert R.order is None and np.array_equal(Yw, Y)
    R.maybe(0, Yw, obj, opt)
    Yw += 0.3 * rng.normal(size=Yw.shape)  # the embedding moves; the second order composes with the first
    moved = R.to_caller(Yw)
    R.apply(Yw, obj, opt)
    assert R.count == 2 and np.array_equal(np.sort(R.order), np.arange(n))
    assert np.array_equal(R.to_caller(Yw), moved)
    assert np.array_equal(R.to_caller(opt.update), update0) and np.array_equal(R.to_caller(opt.gains), gains0)
    # the objective's P follows the points: forces in the caller's order are unchanged
    A_moved = attractive_forces(parts, moved)
    assert np.array_equal(R.to_caller(attractive_forces(obj.P, Yw)), A_moved)
    # the P it replaced was released (the permutation holds one of P's arrays more, not a second P)
    old = obj.P
    R.apply(Yw, obj, opt)
    assert old.indices is None and old.data is None and obj.P is not old


def test_reorder_wanted_threshold():
    assert not reorder_wanted("auto", locality.REORDER_MIN_N - 1, "fft")
    assert reorder_wanted("auto", locality.REORDER_MIN_N, "fft")
    assert reorder_wanted(True, 10, "barnes_hut") and not reorder_wanted(False, 10**7, "fft")
    assert not reorder_wanted(True, 10**7, "exact")


# --------------------------------------------------------------------- fits
@pytest.fixture
def every(monkeypatch):
    monkeypatch.setattr(locality, "REORDER_EVERY", EVERY)
    return EVERY


@pytest.mark.parametrize("method", ["fft", "barnes_hut"])
def test_fit_with_and_without_reordering_agree(method, every):
    X = _blobs(0)
    plain = _fit(X, reorder=False, method=method)
    ordered = _fit(X, reorder=True, method=method)
    err = rel_err(ordered._Y64, plain._Y64)
    assert_within_rounding(err, REORDER_FIT_ERR[method], what=f"{method} re-ordered vs plain")
    assert abs(ordered.kl_divergence_ - plain.kl_divergence_) <= 1e-6 * plain.kl_divergence_


# The same fit on the rows of X permuted (init permuted alike), 12 iterations, reorder=True: the curve
# puts the points in one internal order whatever the input order, so the two runs add in the same
# order. Normwise difference of fit(X[q]) and fit(X)[q], max over seeds 0..4: 9.64e-16 (7.3e-16,
# 5.5e-16, 7.2e-16, 6.8e-16, 9.6e-16); without re-ordering the FFT's float32 spreading in the input
# order gives 1.9e-8 .. 3.4e-8.
PERMUTED_INPUT_ERR = 9.64e-16


@pytest.mark.parametrize("seed", [0, 3])
def test_reordered_fit_comes_back_in_the_callers_order(seed, every):
    X = _blobs(seed)
    q = np.random.default_rng(seed + 5).permutation(X.shape[0])
    init = np.random.default_rng(seed + 6).normal(0, 1e-4, size=(X.shape[0], 2))
    a = _fit(X, reorder=True, init=init)
    b = _fit(X[q], reorder=True, init=init[q])
    assert_within_rounding(rel_err(b._Y64, a._Y64[q]), PERMUTED_INPUT_ERR, what="fit(X[q]) vs fit(X)[q]")


def test_callbacks_see_the_callers_order(every):
    X = _blobs(2)
    seen = {}

    def callback(it, kl, Y):
        seen[it] = np.array(Y)

    fitted = _fit(X, reorder=True, max_iter=50, callbacks=callback)
    assert sorted(seen) == [50]
    assert np.array_equal(seen[50].astype(np.float32), fitted.embedding_)  # the final positions, caller's order
    assert np.array_equal(fitted._Y64, seen[50])


def test_reorder_parameter_checked():
    with pytest.raises(ValueError, match="reorder"):
        TSNE(reorder="yes").fit(_blobs(0, n=50))
