"""Compact t-SNE affinities (float32 P values, int32 column ids) and the memory of the
affinity stage and of the re-ordering (issue 20)."""
import numpy as np
import pytest

from fastrl.manifold.tsne import affinities as aff
from fastrl.manifold.tsne.affinities import perplexity_affinities, symmetrize
from fastrl.manifold.tsne.gradients import CSRParts, attractive_forces
from fastrl.manifold.tsne.locality import PermutedCSRParts, permute_csr_arrays, spatial_order
from fastrl.manifold.tsne.memory import estimate_fit_memory
from fastrl.neighbors import knn_graph


@pytest.fixture
def graph(rng):
    X = rng.standard_normal((1337, 7)).astype(np.float32)
    idx, dist = knn_graph(X, 21, method="exact")
    return idx, perplexity_affinities(dist, 7.0)


def test_float32_symmetrize_matches_float64(graph):
    """One transpose serves both passes; float32 storage: the same sparsity, each value the
    float64 one rounded once (so within 2^-24 relative), summing to 1 in float64."""
    idx, Pc = graph
    P64 = symmetrize(idx, Pc)
    P32 = symmetrize(idx, Pc, dtype=np.float32)
    assert P64.dtype == np.float64 and P32.dtype == np.float32
    np.testing.assert_array_equal(P64.indptr, P32.indptr)
    np.testing.assert_array_equal(P64.indices, P32.indices)
    np.testing.assert_array_equal(P32.data, P64.data.astype(np.float32))
    assert abs(P32.data.sum(dtype=np.float64) - 1.0) < 1e-6
    # symmetric and the textbook (P + P^T) / 2N
    dense = np.zeros((len(idx), len(idx)))
    np.put_along_axis(dense, idx, Pc, axis=1)
    np.testing.assert_allclose(P64.toarray(), (dense + dense.T) / (2 * len(idx)), rtol=1e-12, atol=0)


def test_symmetrize_rejects_other_dtypes(graph):
    with pytest.raises(ValueError, match="dtype"):
        symmetrize(*graph, dtype=np.float16)


def test_float32_p_forces_and_kl_match_float64(graph, rng):
    """CSRParts keeps a float32 P float32 (the native loop sums in float64): forces and KL
    within float32 rounding of the values (a few 1e-8 relative), not of the sums."""
    idx, Pc = graph
    P64 = symmetrize(idx, Pc)
    P32 = symmetrize(idx, Pc, dtype=np.float32)
    parts = CSRParts(P32)
    assert parts.data.dtype == np.float32 and CSRParts(P64).data.dtype == np.float64
    Y = rng.standard_normal((len(idx), 2)) * 5
    f64, kl64 = attractive_forces(P64, Y, eval_kl=True)
    f32, kl32 = attractive_forces(parts, Y, eval_kl=True)
    np.testing.assert_allclose(f32, f64, rtol=2e-7, atol=1e-7 * np.abs(f64).max())
    assert abs(kl32 - kl64) <= 1e-6 * abs(kl64)
    # and against forces on the float32 values widened to float64: the same sums
    f_wide = attractive_forces(P32.astype(np.float64), Y)
    np.testing.assert_allclose(f32, f_wide, rtol=1e-12, atol=1e-15)


def test_fit_with_compact_p_matches_float64_fit(rng, monkeypatch):
    """Whole fits with float32 P (the rule lowered to every N) against float64-P fits with
    the same seed: t-SNE amplifies rounding (the embeddings diverge after some tens of
    iterations and may settle in different local arrangements, ~1% apart in KL at 900
    points), so the check is on what a user measures over 4 data sets: the KL, no bias
    (mean relative difference within 0.5%) and each within 2%, and the 10-NN accuracy of
    the embedding (0.02), on 3 well separated clusters."""
    from fastrl.manifold import TSNE
    from fastrl.metrics import knn_accuracy
    rel = []
    for _ in range(4):
        centers = rng.standard_normal((3, 10)) * 6
        y = rng.integers(0, 3, 900)
        X = (centers[y] + rng.standard_normal((900, 10))).astype(np.float32)
        fits = {}
        for compact in (False, True):
            monkeypatch.setattr(aff, "COMPACT_P_MIN_N", 0 if compact else 10**12)
            t = TSNE(perplexity=20, max_iter=300, random_state=0, n_jobs=1, method="fft")
            fits[compact] = (t.fit_transform(X), t.kl_divergence_)
        rel.append((fits[True][1] - fits[False][1]) / fits[False][1])
        acc = [knn_accuracy(fits[c][0], y, k=10) for c in (False, True)]
        assert abs(acc[0] - acc[1]) <= 0.02 and min(acc) > 0.95
    assert abs(np.mean(rel)) <= 0.005 and max(map(abs, rel)) <= 0.02, rel


def test_permuted_parts_consuming_the_old_p(graph, rng):
    """The re-ordering permutes P array by array, releasing each old array once copied:
    the same arrays as the plain permutation, and the old parts unusable after."""
    idx, Pc = graph
    for dtype in (np.float64, np.float32):
        parts = CSRParts(symmetrize(idx, Pc, dtype=dtype))
        perm = spatial_order(rng.standard_normal((len(idx), 2)))
        ref = permute_csr_arrays(parts.indptr, parts.indices, parts.data, perm, sort=False)
        new = PermutedCSRParts(parts, perm, consume=True)
        for a, b in zip((new.indptr, new.indices, new.data), ref):
            np.testing.assert_array_equal(a, b)
        assert new.data.dtype == dtype
        assert parts.indices is None and parts.data is None


def test_memory_estimate_counts_compact_p():
    """The estimate follows the fit's rule: float32 P from COMPACT_P_MIN_N points on (off the
    device), int32 positions in the transposed graph, and a re-ordering that costs one of P's
    arrays rather than a second P."""
    n, k = 1_000_000, 90
    small = estimate_fit_memory(n, 50, n_neighbors=k, reorder=True)
    wide = estimate_fit_memory(n, 50, n_neighbors=k, reorder=True, compact=False)
    assert small["affinities"] < wide["affinities"] and small["optimizer"] < wide["optimizer"]
    assert wide["optimizer"] - small["optimizer"] == 2 * n * k * 8  # 4 bytes less per value, twice
    assert estimate_fit_memory(n, 50, n_neighbors=k, method="device")["affinities"] == \
        estimate_fit_memory(n, 50, n_neighbors=k, compact=False)["affinities"]
    assert estimate_fit_memory(aff.COMPACT_P_MIN_N - 1, 50)["affinities"] == \
        estimate_fit_memory(aff.COMPACT_P_MIN_N - 1, 50, compact=False)["affinities"]
