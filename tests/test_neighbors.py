"""kNN graph tests: exact against the float64 reference and scikit-learn,
approximate recall, input handling and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fastrl.neighbors import knn_graph, knn_query, knn_reference
from fastrl.neighbors.knn import _core

KERNELS = list(_core().cpu_kernels_supported())


@pytest.fixture(params=KERNELS)
def cpu_kernel(request):
    """Runs the test once per SIMD kernel this CPU supports (fastrl.use_cpu_kernel)."""
    from fastrl import backend_info, use_cpu_kernel
    with use_cpu_kernel(request.param):
        assert backend_info()["cpu_kernel"] == request.param
        yield request.param


def _assert_matches(idx, dist, ref_idx, ref_dist, rtol=1e-4):
    """Distances agree to rtol; indices agree wherever the distance is not tied."""
    assert idx.dtype == np.int64 and dist.dtype == np.float32
    np.testing.assert_allclose(dist, ref_dist, rtol=rtol, atol=1e-5 * max(1.0, float(ref_dist.max())))
    assert np.all(np.diff(dist, axis=1) >= 0)
    for r in range(idx.shape[0]):
        # the neighbour sets agree up to points tied with the k-th distance
        kth = ref_dist[r, -1]
        strict = set(ref_idx[r][ref_dist[r] < kth * (1 - 1e-5) - 1e-6].tolist())
        assert strict <= set(idx[r].tolist()), r


@pytest.mark.parametrize("n,d,k", [(37, 3, 5), (501, 17, 15), (333, 100, 31), (129, 784, 9), (70, 1, 3)])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_matches_reference(rng, n, d, k, metric, cpu_kernel):
    X = rng.standard_normal((n, d)).astype(np.float32)
    idx, dist = knn_graph(X, k, method="exact", metric=metric)
    ref_idx, ref_dist = knn_reference(X, X, k, metric=metric, exclude_self=True)
    _assert_matches(idx, dist, ref_idx, ref_dist)
    assert not np.any(idx == np.arange(n)[:, None])


def test_exact_matches_sklearn_brute(rng):
    from sklearn.neighbors import NearestNeighbors
    X = rng.standard_normal((777, 23))
    k = 12
    idx, dist = knn_graph(X, k, method="exact")
    sk_dist, sk_idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(X).kneighbors()
    _assert_matches(idx, dist, sk_idx, sk_dist)


def test_duplicate_heavy_data(rng, cpu_kernel):
    base = rng.standard_normal((40, 6)).astype(np.float32)
    X = np.repeat(base, 7, axis=0)  # every point has 6 exact copies
    rng.shuffle(X)
    idx, dist = knn_graph(X, 10, method="exact")
    ref_idx, ref_dist = knn_reference(X, X, 10, exclude_self=True)
    _assert_matches(idx, dist, ref_idx, ref_dist)
    assert np.all(dist[:, :6] == 0.0)
    assert not np.any(idx == np.arange(len(X))[:, None])
    # ties are broken by index: rows list their copies in increasing index order
    assert np.all(np.diff(idx[:, :6], axis=1) > 0)


def test_all_identical_points():
    X = np.ones((50, 4), dtype=np.float32)
    idx, dist = knn_graph(X, 49, method="exact")
    assert np.all(dist == 0)
    for r in range(50):
        assert sorted(idx[r].tolist()) == [j for j in range(50) if j != r]


@pytest.mark.parametrize("layout", ["C", "F", "float64", "torch"])
def test_input_layouts_agree(rng, layout):
    X = rng.standard_normal((200, 13)).astype(np.float32)
    want_idx, want_dist = knn_graph(X, 7, method="exact")
    Y = {"C": X, "F": np.asfortranarray(X), "float64": X.astype(np.float64), "torch": torch.from_numpy(X)}[layout]
    idx, dist = knn_graph(Y, 7, method="exact")
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-6)


def test_knn_query_matches_reference(rng, cpu_kernel):
    A = rng.standard_normal((300, 11)).astype(np.float32)
    Q = rng.standard_normal((45, 11)).astype(np.float32)
    idx, dist = knn_query(A, Q, 300)  # k == N is allowed for queries
    ref_idx, ref_dist = knn_reference(A, Q, 300)
    _assert_matches(idx, dist, ref_idx, ref_dist)


def test_query_point_in_index_is_found(rng):
    A = rng.standard_normal((100, 5)).astype(np.float32)
    idx, dist = knn_query(A, A[:10], 1)
    np.testing.assert_array_equal(idx[:, 0], np.arange(10))
    np.testing.assert_allclose(dist[:, 0], 0.0, atol=1e-6)


def test_n_jobs_gives_same_result(rng):
    """README: the exact path is deterministic, ties by index: the same graph, bit for bit
    (indices and distances), whatever the thread count, also on tie-heavy integer data."""
    X = rng.standard_normal((600, 9)).astype(np.float32)
    Xi = rng.integers(0, 3, size=(400, 5)).astype(np.float32)  # many exactly tied distances
    for data in (X, Xi):
        a = knn_graph(data, 8, method="exact", n_jobs=1)
        for n_jobs in (2, None):  # None: every core (the default)
            b = knn_graph(data, 8, method="exact", n_jobs=n_jobs)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_approx_recall_clustered(rng, metric, cpu_kernel):
    centers = rng.standard_normal((20, 12)) * 4
    X = (centers[rng.integers(0, 20, 3000)] + rng.standard_normal((3000, 12))).astype(np.float32)
    k = 15
    idx, dist = knn_graph(X, k, method="approx", metric=metric, random_state=0)
    ref_idx, _ = knn_graph(X, k, method="exact", metric=metric)
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(idx, ref_idx)])
    assert recall >= 0.98
    assert not np.any(idx == np.arange(len(X))[:, None])
    assert np.all(np.diff(dist, axis=1) >= 0)
    # reported distances are the true distances of the reported neighbours
    if metric == "euclidean":
        d_true = np.linalg.norm(X[idx[:50]] - X[:50, None, :], axis=-1)
    else:
        U = X / np.linalg.norm(X, axis=1, keepdims=True)
        d_true = 1.0 - np.einsum("rkd,rd->rk", U[idx[:50]], U[:50])
    np.testing.assert_allclose(dist[:50], d_true, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("d", [1, 3, 8, 13, 50])
def test_approx_packed_gram_tile_odd_dims(rng, d, cpu_kernel):
    """NN-descent's Gram tiles (panels of 8 candidates, 4-row x 16-column tiles, zero padding
    past the candidates): every dimension, including d < 8 and d not a multiple of 8, gives the
    exact graph's recall and the true distances of the listed neighbours."""
    n, k = 1500, 20
    centers = rng.standard_normal((15, d)) * 4
    X = (centers[rng.integers(0, 15, n)] + rng.standard_normal((n, d))).astype(np.float32)
    idx, dist = knn_graph(X, k, method="approx", random_state=1)
    ref_idx, ref_dist = knn_graph(X, k, method="exact")
    if d == 1:  # ties in one dimension: compare the k-th distances, which ties cannot change
        np.testing.assert_allclose(dist[:, -1], ref_dist[:, -1], rtol=1e-3, atol=1e-5)
    else:
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(idx, ref_idx)])
        assert recall >= 0.99
    d_true = np.linalg.norm(X[idx].astype(np.float64) - X[:, None, :], axis=-1)
    np.testing.assert_allclose(dist, d_true, rtol=1e-4, atol=1e-5)


def test_nndescent_in_place_renumbering_matches_copy(rng):
    """NN-descent renumbers the points in tree-leaf order; on a scratch input (knn_graph's own
    prepared copy) it permutes the rows in place instead of copying them: the same graph, bit
    for bit (n_jobs=1), the input left a row permutation of itself, a non-scratch input untouched."""
    from fastrl.neighbors.nndescent import nndescent
    X = rng.standard_normal((700, 11)).astype(np.float32)
    out = []
    for scratch in (False, True):
        A = X.copy()
        idx = np.empty((700, 9), dtype=np.int64)
        dist = np.empty((700, 9), dtype=np.float32)
        nndescent(A, 9, "euclidean", idx, dist, 1, 5, scratch=scratch)
        out.append((idx, dist, A))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    np.testing.assert_array_equal(out[0][2], X)
    assert not np.array_equal(out[1][2], X)
    np.testing.assert_array_equal(np.sort(out[1][2], axis=0), np.sort(X, axis=0))


def test_approx_is_deterministic_with_seed(rng):
    """README: NN-descent is reproducible for a fixed random_state with n_jobs=1 (indices and
    distances, bit for bit); with more threads only exact distance ties may be broken
    differently, so on tie-free data (continuous random floats) the default thread count and
    n_jobs=2 give the n_jobs=1 graph too."""
    X = rng.standard_normal((800, 8)).astype(np.float32)
    a = knn_graph(X, 10, method="approx", random_state=3, n_jobs=1)
    assert len(np.unique(a[1])) > 0.45 * a[1].size  # (nearly) tie-free: each pair is listed from both ends
    b = knn_graph(X, 10, method="approx", random_state=3, n_jobs=1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    for n_jobs in (None, 2):
        c = knn_graph(X, 10, method="approx", random_state=3, n_jobs=n_jobs)
        np.testing.assert_array_equal(a[0], c[0])
        np.testing.assert_array_equal(a[1], c[1])


def test_approx_small_k_and_duplicates(rng):
    X = np.repeat(rng.standard_normal((100, 5)).astype(np.float32), 3, axis=0)
    idx, dist = knn_graph(X, 4, method="approx", random_state=0)
    assert not np.any(idx == np.arange(len(X))[:, None])
    assert np.all(dist[:, :2] == 0)



@pytest.mark.parametrize(
    "call, match",
    [
        (lambda X: knn_graph(X, 50), "k must be < N"),
        (lambda X: knn_graph(X, 0), "k must be >= 1"),
        (lambda X: knn_graph(X, 2.5), "k must be an integer"),
        (lambda X: knn_graph(X[0], 3), "X must be 2-D"),
        (lambda X: knn_graph(X[:, :, None], 3), "X must be 2-D"),
        (lambda X: knn_graph(X[:0], 3), "X is empty"),
        (lambda X: knn_graph(X, 3, method="fast"), "method must be one of"),
        (lambda X: knn_graph(X, 3, metric="l7"), "metric must be one of"),
        (lambda X: knn_query(X, X[:, :3], 3), "X_query has 3 features"),
        (lambda X: knn_query(X, X, 51), "k must be <= N"),
    ],
)
def test_bad_input(call, match):
    X = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    with pytest.raises((ValueError, TypeError), match=match):
        call(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("which", ["X", "X_query"])
def test_nonfinite_rejected(bad, which):
    X = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    Y = X.copy()
    Y[4, 1] = bad
    with pytest.raises(ValueError, match=f"{which} contains NaN or inf"):
        if which == "X":
            knn_graph(Y, 3)
        else:
            knn_query(X, Y, 3)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_torch_path_matches_reference(rng, metric):
    """The blocked matmul + topk path that serves CUDA tensors (run here on CPU)."""
    from fastrl.neighbors.torch_knn import torch_knn
    X = rng.standard_normal((301, 19)).astype(np.float32)
    t = torch.from_numpy(X)
    idx, dist = torch_knn(t, t, 11, metric, exclude_self=True, block=64)
    ref_idx, ref_dist = knn_reference(X, X, 11, metric=metric, exclude_self=True)
    _assert_matches(idx.numpy(), dist.numpy(), ref_idx, ref_dist)


@pytest.mark.slow
def test_approx_recall_mnist_pca50(mnist):
    """Acceptance: NN-descent recall@15 >= 0.98 on MNIST 70k reduced to 50 dims."""
    from fastrl.cli.tsne import pca_reduce
    P = np.ascontiguousarray(pca_reduce(mnist[0], 50))
    exact, _ = knn_graph(P, 15, method="exact")
    approx, _ = knn_graph(P, 15, method="approx", random_state=0)
    recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(approx, exact)])
    assert recall >= 0.98


def test_cpu_kernel_switch():
    """use_cpu_kernel forces a kernel (nested blocks restore the outer one),
    backend_info reports it, and a kernel the CPU lacks (or an unknown name) is
    refused with a clear ValueError, by the switch and by the core itself."""
    from fastrl import backend_info, use_cpu_kernel
    assert backend_info()["cpu_kernels"] == KERNELS
    outer = backend_info()["cpu_kernel"]
    for name in KERNELS:
        with use_cpu_kernel(name):
            assert backend_info()["cpu_kernel"] == name
            with use_cpu_kernel("auto"):
                assert backend_info()["cpu_kernel"] == KERNELS[-1]
            assert backend_info()["cpu_kernel"] == name
    assert backend_info()["cpu_kernel"] == outer
    for name in {"base", "avx2", "avx512"} - set(KERNELS):  # not runnable here
        with pytest.raises(ValueError, match=f"use_cpu_kernel={name}: .*cannot run"):
            with use_cpu_kernel(name):
                pass
        with pytest.raises(ValueError, match=f"cpu_kernel={name}: .*cannot run"):
            _core().knn_kernel_name(name)
    with pytest.raises(ValueError, match="use_cpu_kernel must be one of"):
        with use_cpu_kernel("neon"):
            pass
    with pytest.raises(ValueError, match="cpu_kernel must be one of"):
        _core().knn_kernel_name("neon")
    assert backend_info()["cpu_kernel"] == outer


def test_cpu_kernel_switch_is_thread_local():
    """A use_cpu_kernel block in one thread leaves the others' kernel alone,
    and threads running different kernels at once get the same graph."""
    import threading
    from fastrl import backend_info, use_cpu_kernel
    X = np.random.default_rng(5).standard_normal((600, 24)).astype(np.float32)
    outer = backend_info()["cpu_kernel"]
    entered, release = threading.Event(), threading.Event()
    seen = {}

    def worker(name):
        with use_cpu_kernel(name):
            seen[name] = backend_info()["cpu_kernel"]
            entered.set()
            release.wait(10)
            seen[name + " graph"] = knn_graph(X, 9, method="exact")

    threads = [threading.Thread(target=worker, args=(name,)) for name in KERNELS]
    for t in threads:
        t.start()
        assert entered.wait(10)
        entered.clear()
        assert backend_info()["cpu_kernel"] == outer  # this thread is unaffected
    release.set()
    for t in threads:
        t.join(30)
    want = knn_graph(X, 9, method="exact")
    for name in KERNELS:
        assert seen[name] == name
        np.testing.assert_array_equal(seen[name + " graph"][0], want[0])
        np.testing.assert_allclose(seen[name + " graph"][1], want[1], rtol=1e-6)


_ENV_SCRIPT = """
import os, sys
import numpy as np
import fastrl
from fastrl.neighbors import knn_graph
X = np.random.default_rng(0).standard_normal((300, 5)).astype(np.float32)
try:
    print("kernel", fastrl.backend_info()["cpu_kernel"])
    os.environ["FASTRL_CPU_KERNEL"] = "auto"  # read once, at import: no effect now
    print("after setenv", fastrl.backend_info()["cpu_kernel"])
    knn_graph(X, 5, method="approx", random_state=0)
except ValueError as exc:
    print("ValueError", exc)
with fastrl.use_cpu_kernel("base"):
    print("switch", fastrl.backend_info()["cpu_kernel"], knn_graph(X, 3, method="exact")[0].shape)
"""


@pytest.mark.parametrize("value", ["base", "neon", "avx512"])
def test_cpu_kernel_env_read_once_at_import(value):
    """FASTRL_CPU_KERNEL still picks the kernel, read when fastrl is imported
    (the core never reads the environment); a bad value fails the calls with a
    ValueError naming the variable, not the import, and use_cpu_kernel
    overrides it. FASTRL_NND_VERBOSE (also read at import) prints NN-descent's
    phase timings."""
    import os
    import subprocess
    import sys
    if value == "avx512" and value in KERNELS:
        pytest.skip("this CPU runs avx512")
    env = dict(os.environ, FASTRL_CPU_KERNEL=value, FASTRL_NND_VERBOSE="1")
    r = subprocess.run([sys.executable, "-c", _ENV_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "switch base (300, 3)" in r.stdout
    if value == "base":
        assert "kernel base\nafter setenv base\n" in r.stdout
        assert "joined" in r.stderr and "finalized" in r.stderr  # NN-descent's verbose timings
    elif value == "neon":
        assert "ValueError FASTRL_CPU_KERNEL must be one of" in r.stdout
    else:
        assert "ValueError FASTRL_CPU_KERNEL=avx512: this CPU (or this build) cannot run" in r.stdout


@pytest.mark.parametrize("scale", [1.0, 2.0 ** -20])
@pytest.mark.parametrize("offset", [0.0, 1000.0])
@pytest.mark.parametrize("n,d,k", [(300, 4, 7), (257, 30, 20)])
def test_ties_at_k_boundary_go_by_index(offset, n, d, k, scale, cpu_kernel):
    """Integer data has many exactly tied distances: the exact path returns the
    float64 oracle's (distance, index) order exactly, boundary included, even
    far from the origin where the centred float32 scores round differently,
    and at a tiny scale (the rounding bound is relative to the data's norms)."""
    rng = np.random.default_rng(n + d)
    X = ((rng.integers(0, 3, (n, d)) + offset) * scale).astype(np.float32)
    idx, dist = knn_graph(X, k, method="exact")
    ref_idx, ref_dist = knn_reference(X, X, k, exclude_self=True)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(dist, ref_dist.astype(np.float32))
    qi, qd = knn_query(X[: n // 2], X, k)
    ref_qi, _ = knn_reference(X[: n // 2], X, k)
    np.testing.assert_array_equal(qi, ref_qi)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_tensors_accepted(rng, dtype):
    T = torch.from_numpy(rng.standard_normal((60, 5)).astype(np.float32)).to(dtype)
    idx, dist = knn_graph(T, 4, method="exact")
    ref_idx, ref_dist = knn_reference(T.float().numpy(), T.float().numpy(), 4, exclude_self=True)
    _assert_matches(idx, dist, ref_idx, ref_dist)
    qi, _ = knn_query(T, T[:7], 1)
    np.testing.assert_array_equal(qi[:, 0], np.arange(7))


@pytest.mark.parametrize("n_jobs", [2**40, -(2**40)])
def test_n_jobs_out_of_range(n_jobs):
    X = np.random.default_rng(0).standard_normal((30, 3))
    with pytest.raises(ValueError, match="n_jobs must be"):
        knn_graph(X, 3, n_jobs=n_jobs)
    with pytest.raises(ValueError, match="n_jobs must be"):
        knn_query(X, X, 3, n_jobs=n_jobs)


def test_complex_input_rejected():
    X = np.ones((10, 2), dtype=np.complex64)
    with pytest.raises(TypeError, match="X must be real"):
        knn_graph(X, 3)
    with pytest.raises(TypeError, match="X must be real"):
        knn_graph(torch.from_numpy(X), 3)


def _with_constant_columns(rng, n, d, n_const):
    """Random data with ``n_const`` constant columns (zeros and other values) among d."""
    X = rng.standard_normal((n, d)).astype(np.float32)
    cols = rng.choice(d, n_const, replace=False)
    X[:, cols] = rng.choice([0.0, 3.5, -2.0], n_const).astype(np.float32)
    return X, cols


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("pad", [False, True])
def test_prepare_compact_drops_only_constant_columns(rng, metric, pad):
    from fastrl.neighbors.knn import _prepare, _prepare_compact
    X, cols = _with_constant_columns(rng, 203, 37, 9)
    P, keep = _prepare_compact(X, metric, 2, pad=pad)
    if metric == "euclidean":
        expect = np.setdiff1d(np.arange(37), cols)  # every constant column goes
        full = _prepare(X, "X", metric, X.mean(0, dtype=np.float64).astype(np.float32))
    else:
        expect = np.setdiff1d(np.arange(37), cols[X[0, cols] == 0])  # only zero columns stay constant
        full = _prepare(X, "X", metric)
    np.testing.assert_array_equal(keep, expect)
    assert P.flags.c_contiguous and P.dtype == np.float32
    assert P.shape[1] == (-(-len(expect) // 8) * 8 if pad else len(expect))
    if pad:
        assert P.ctypes.data % 64 == 0
        assert np.all(P[:, len(expect):] == 0)
    np.testing.assert_allclose(P[:, : len(expect)], full[:, expect], rtol=1e-6, atol=1e-6)
    # pairwise distances are those of the full prepared rows
    D_full = ((full[:40, None, :].astype(np.float64) - full[None, :40, :]) ** 2).sum(-1)
    D_comp = ((P[:40, None, :].astype(np.float64) - P[None, :40, :]) ** 2).sum(-1)
    np.testing.assert_allclose(D_comp, D_full, rtol=1e-5, atol=1e-9)


def test_prepare_compact_all_rows_equal():
    from fastrl.neighbors.knn import _prepare_compact
    X = np.full((12, 5), 2.5, dtype=np.float32)
    P, keep = _prepare_compact(X, "euclidean", 1)
    assert P.shape == (12, 1) and np.all(P == 0)
    idx, dist = knn_graph(X, 3, method="exact")
    assert np.all(dist == 0)
    idx, dist = knn_graph(X, 3, method="approx", random_state=0)
    assert np.all(dist == 0) and not np.any(idx == np.arange(12)[:, None])


@pytest.mark.parametrize("method", ["exact", "approx"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_constant_columns_leave_graph_unchanged(rng, method, metric):
    """Dropped constant columns change neither the neighbours nor the distances
    (exact: against the float64 reference on the full data)."""
    X, _ = _with_constant_columns(rng, 700, 41, 11)
    idx, dist = knn_graph(X, 10, method=method, metric=metric, random_state=0)
    ref_idx, ref_dist = knn_reference(X, X, 10, metric=metric, exclude_self=True)
    if method == "exact":
        _assert_matches(idx, dist, ref_idx, ref_dist)
    else:
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, ref_idx)])
        assert recall >= 0.95  # unclustered 30-d Gaussian data: 0.958-0.975, as before the columns were dropped
    if metric == "euclidean":
        d_true = np.linalg.norm(X[idx].astype(np.float64) - X[:, None, :], axis=-1)
    else:
        U = X / np.linalg.norm(X, axis=1, keepdims=True).astype(np.float64)
        d_true = 1.0 - np.einsum("rkd,rd->rk", U[idx], U)
    np.testing.assert_allclose(dist, d_true, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_approx_distances_exact_for_near_duplicates_and_zero_rows(rng, metric, cpu_kernel):
    """NN-descent reports its Gram-expansion distances only where they are
    accurate: near-duplicates (far from the centre) and zero rows (cosine) are
    recomputed."""
    base = (rng.standard_normal((150, 24)) + 50.0).astype(np.float32)
    X = np.concatenate([base, base + rng.standard_normal(base.shape).astype(np.float32) * 1e-3,
                        np.zeros((3, 24), np.float32)])
    idx, dist = knn_graph(X, 6, method="approx", metric=metric, random_state=1)
    if metric == "euclidean":
        d_true = np.linalg.norm(X[idx].astype(np.float64) - X[:, None, :], axis=-1)
        np.testing.assert_allclose(dist, d_true, rtol=2e-5, atol=1e-7)
    else:
        nrm = np.linalg.norm(X, axis=1, keepdims=True).astype(np.float64)
        U = X / np.where(nrm > 0, nrm, 1.0)
        d_true = np.maximum(0.0, 1.0 - np.einsum("rkd,rd->rk", U[idx], U))
        np.testing.assert_allclose(dist, d_true, rtol=2e-5, atol=1e-6)
    assert np.all(np.diff(dist, axis=1) >= 0)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_self_join_in_block_pairs_matches_brute_force(metric, cpu_kernel):
    """csrc/knn_exact.cpp's self-join scans each pair of row blocks once (from 4 blocks of
    64-256 rows on) in a kd-tree order: the graph is the brute-force one, ties by index,
    on tie-heavy integer data of an odd size with a partial last block."""
    rng = np.random.default_rng(31)
    X = rng.integers(0, 4, size=(2501, 6)).astype(np.float32)
    X[::97] = X[5]  # exact duplicates
    k = 12
    idx, dist = knn_graph(X, k, method="exact", metric=metric, n_jobs=2)
    X64 = X.astype(np.float64)
    if metric == "cosine":
        X64 /= np.maximum(np.linalg.norm(X64, axis=1, keepdims=True), 1e-300)
        D = np.clip(1.0 - X64 @ X64.T, 0.0, None)
    else:
        D = ((X64[:, None, :] - X64[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(len(X)), D.shape), D), axis=1)[:, :k]
    want = np.take_along_axis(D, order, 1)
    got = np.take_along_axis(D, np.asarray(idx), 1)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # the same k-th distances
    if metric == "euclidean":  # integer data: exact distances, so the ids too (ties by index)
        np.testing.assert_array_equal(np.asarray(idx), order)
