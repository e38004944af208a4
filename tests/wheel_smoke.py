"""Smoke test of an installed fastrl wheel: every function the compiled core
``fastrl._C`` exports, on tiny inputs, against a numpy statement of its
contract (csrc/knn.h, csrc/tsne.h), then the public kNN, t-SNE and loss paths.

    python tests/wheel_smoke.py                 # run from outside the checkout
    python tests/wheel_smoke.py --kernel base   # = FASTRL_CPU_KERNEL=base

Not a pytest module (no ``test_`` prefix): cibuildwheel's test-command and
.ci/build-wheel run it against the installed wheel, once with the kernel
the CPU picks and once with ``FASTRL_CPU_KERNEL=base`` (the portable kernel).
``FASTRL_SMOKE_REQUIRE_OPENMP=1`` also requires the core to be built with
OpenMP; ``FASTRL_SMOKE_ALLOW_SOURCE=1`` accepts a fastrl imported from a
source tree (an editable install). Runs every check, prints one line each,
and exits non-zero if any failed.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

CHECKS = []


def check(name):
    def deco(fn):
        CHECKS.append((name, fn))
        return fn
    return deco


def brute_knn(X, Q, k, exclude_self, metric="euclidean"):
    """(idx, dist) sorted by (float64 distance, index)."""
    X, Q = X.astype(np.float64), Q.astype(np.float64)
    if metric == "cosine":
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        D = 1.0 - Qn @ Xn.T
    else:
        D = np.sqrt(np.maximum(((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1), 0.0))
    if exclude_self:
        np.fill_diagonal(D, np.inf)
    idx = np.stack([np.lexsort((np.arange(D.shape[1]), row))[:k] for row in D])
    return idx, np.take_along_axis(D, idx, 1)


def _C():
    from fastrl import _C
    return _C


def _kernel() -> str:
    """The cpu_kernel argument of the core's calls (FASTRL_CPU_KERNEL, read at import)."""
    from fastrl.neighbors.cpu_kernel import cpu_kernel
    return cpu_kernel()


def kernels() -> list:
    """The SIMD kernels the per-ISA checks run: the one FASTRL_CPU_KERNEL
    forces, else every kernel this CPU and build support."""
    forced = _kernel()
    return list(_C().cpu_kernels_supported()) if forced == "auto" else [forced]


@check("import: fastrl and fastrl._C from the installed package")
def _import():
    import fastrl
    C = _C()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pkg = os.path.dirname(os.path.abspath(fastrl.__file__))
    if os.environ.get("FASTRL_SMOKE_ALLOW_SOURCE") != "1":  # set it to smoke-test an editable install
        assert "site-packages" in pkg or "dist-packages" in pkg, f"fastrl imported from {pkg}, not an installed package"
        assert not pkg.startswith(os.path.join(here, "fastrl")), f"fastrl imported from the checkout {pkg}"
    info = fastrl.backend_info()
    assert info["compiled_core"], info
    return f"{pkg}, core {os.path.basename(C.__file__)}"


@check("openmp_threads / has_openmp / knn_kernel_name / cpu_kernels_supported")
def _features():
    C = _C()
    threads, omp = C.openmp_threads(), C.has_openmp()
    assert isinstance(threads, int) and threads >= 1, threads
    assert isinstance(omp, bool)
    if os.environ.get("FASTRL_SMOKE_REQUIRE_OPENMP") == "1":
        assert omp, "the core was built without OpenMP"
    import fastrl
    supported = list(C.cpu_kernels_supported())
    assert supported[0] == "base", supported
    assert C.knn_kernel_name("auto") == supported[-1], "'auto' is not the widest kernel"
    assert [C.knn_kernel_name(k) for k in supported] == supported
    name = C.knn_kernel_name(_kernel())
    forced = os.environ.get("FASTRL_CPU_KERNEL", "")
    want = supported[-1] if forced in ("", "auto") else forced
    assert name == want == fastrl.backend_info()["cpu_kernel"], f"FASTRL_CPU_KERNEL={forced!r}: the core runs {name}"
    return f"kernel {name} of {supported}, openmp {omp}, {threads} threads"


@check("knn_exact: self-graph and queries equal brute force (euclidean, cosine)")
def _knn_exact():
    C = _C()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((53, 37)).astype(np.float32)  # 4 panels of 16, a ragged tail of columns
    Q = rng.standard_normal((7, 37)).astype(np.float32)
    unit = lambda A: (A / np.linalg.norm(A, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    Z = rng.integers(0, 3, size=(40, 4)).astype(np.float32)  # integer-valued: many exact ties, broken by index
    for kern in kernels():
        for metric in ("euclidean", "cosine"):
            Xs = unit(X) if metric == "cosine" else X  # the cosine scan takes unit rows (knn_compact_rows)
            for A, same in ((Xs, True), (unit(Q) if metric == "cosine" else Q, False)):
                k = 6
                idx = np.empty((A.shape[0], k), np.int64)
                dist = np.empty((A.shape[0], k), np.float32)
                C.knn_exact(Xs, A, k, metric, same, idx, dist, 2, cpu_kernel=kern)
                ref_i, ref_d = brute_knn(X, A, k, same, metric)
                assert np.array_equal(idx, ref_i), f"{kern} {metric} same={same}: indices differ"
                np.testing.assert_allclose(dist, ref_d, rtol=1e-5, atol=1e-5, err_msg=kern)
        idx = np.empty((40, 5), np.int64)
        dist = np.empty((40, 5), np.float32)
        C.knn_exact(Z, Z, 5, "euclidean", True, idx, dist, 1, cpu_kernel=kern)
        assert np.array_equal(idx, brute_knn(Z, Z, 5, True)[0]), f"{kern}: tie order differs from (distance, index)"
    return f"kernels {kernels()}: 53x37 and 7 queries, k=6; 40 tied integer rows"


@check("knn_column_stats: column sums and constant columns")
def _column_stats():
    C = _C()
    rng = np.random.default_rng(1)
    A = rng.standard_normal((30, 6)).astype(np.float32)
    A[:, 2] = 1.5  # constant
    col_sum = np.empty(6, np.float64)
    varies = np.empty(6, np.uint8)
    C.knn_column_stats(A, "euclidean", col_sum, varies, 2)
    np.testing.assert_allclose(col_sum, A.astype(np.float64).sum(0), rtol=1e-12, atol=1e-9)
    assert varies.tolist() == [1, 1, 0, 1, 1, 1], varies
    A[:, 4] = 0.0
    C.knn_column_stats(A, "cosine", col_sum, varies, 1)
    assert varies[4] == 0 and varies[2] == 1, varies  # cosine: only the all-zero column is dropped
    return "30x6"


@check("knn_compact_rows: kept columns, centred (euclidean) or row-normalised (cosine), zero padding")
def _compact_rows():
    C = _C()
    rng = np.random.default_rng(2)
    A = rng.standard_normal((25, 7)).astype(np.float32)
    keep = np.array([0, 2, 3, 6], np.int64)
    center = A.mean(0).astype(np.float32)
    out = np.full((25, 5), np.nan, np.float32)
    C.knn_compact_rows(A, "euclidean", center, keep, out, 2)
    np.testing.assert_allclose(out[:, :4], A[:, keep] - center[keep], rtol=1e-6, atol=1e-6)
    assert not out[:, 4].any(), "padding column not zero"
    C.knn_compact_rows(A, "cosine", None, keep, out, 1)
    ref = A[:, keep] / np.linalg.norm(A.astype(np.float64), axis=1, keepdims=True)
    np.testing.assert_allclose(out[:, :4], ref, rtol=1e-5, atol=1e-6)
    return "25x7 -> 4 (+1 pad) columns"


@check("knn_nndescent: recall >= 0.95 against brute force, true distances, no self")
def _nndescent():
    C = _C()
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 8)).astype(np.float32)
    k = 10
    ref_i, _ = brute_knn(X, X, k, True)
    recalls = []
    for kern in kernels():
        idx = np.empty((400, k), np.int64)
        dist = np.empty((400, k), np.float32)
        C.knn_nndescent(X, k, "euclidean", 4, 24, 20, 10, 0.001, 0, idx, dist, 2, cpu_kernel=kern)
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(idx, ref_i)])
        assert recall >= 0.95, f"{kern}: recall {recall:.3f}"
        assert not (idx == np.arange(400)[:, None]).any(), f"{kern}: a row lists itself"
        true = np.linalg.norm(X[idx].astype(np.float64) - X[:, None, :], axis=2)
        np.testing.assert_allclose(dist, true, rtol=1e-4, atol=1e-5, err_msg=kern)
        assert (np.diff(dist, axis=1) >= 0).all(), f"{kern}: rows not sorted by distance"
        recalls.append(f"{kern} {recall:.4f}")
    return "400x8, k=10, recall " + ", ".join(recalls)


def _affinities(n=60, k=12, perplexity=4.0):
    C = _C()
    rng = np.random.default_rng(4)
    X = rng.standard_normal((n, 5)).astype(np.float32)
    nbr, D = brute_knn(X, X, k, True)
    D = D.astype(np.float32)
    P = np.empty((n, k))
    beta = np.empty(n)
    missed = C.tsne_perplexity(D, perplexity, 1e-5, 200, P, beta, 2)
    return nbr, D, P, beta, missed


@check("tsne_perplexity: rows sum to 1 at the target perplexity, P = softmax(-beta d^2)")
def _perplexity():
    nbr, D, P, beta, missed = _affinities()
    assert missed == 0, f"{missed} rows missed the tolerance"
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-10)
    H = -(P * np.log(np.maximum(P, 1e-300))).sum(1)
    np.testing.assert_allclose(np.exp(H), 4.0, rtol=1e-3)
    W = np.exp(-beta[:, None] * (D.astype(np.float64) ** 2 - D.astype(np.float64)[:, :1] ** 2))
    np.testing.assert_allclose(P, W / W.sum(1, keepdims=True), rtol=1e-6, atol=1e-12)
    return "60 rows, k=12, perplexity 4"


def _joint():
    nbr, _, P, _, _ = _affinities()
    indptr, indices, data = _C().tsne_symmetrize(nbr, P, 2)
    return nbr, P, indptr, indices, data


@check("tsne_symmetrize: CSR of (P + P^T) / 2N, sorted columns")
def _symmetrize():
    nbr, P, indptr, indices, data = _joint()
    n = nbr.shape[0]
    dense = np.zeros((n, n))
    np.add.at(dense, (np.repeat(np.arange(n), nbr.shape[1]), nbr.ravel()), P.ravel())
    dense = (dense + dense.T) / (2 * n)
    got = np.zeros((n, n))
    for i in range(n):
        cols = indices[indptr[i]:indptr[i + 1]]
        assert (np.diff(cols) > 0).all(), f"row {i}: columns not sorted"
        got[i, cols] = data[indptr[i]:indptr[i + 1]]
    np.testing.assert_allclose(got, dense, rtol=1e-12, atol=1e-15)
    assert indptr[-1] == np.count_nonzero(dense)
    return f"nnz {indptr[-1]}"


@check("tsne_attractive: sum_j p_ij u_ij (y_i - y_j) and the KL part (2-D SIMD and 3-D scalar paths)")
def _attractive():
    C = _C()
    nbr, P, indptr, indices, data = _joint()
    n = nbr.shape[0]
    rng = np.random.default_rng(5)
    rows = np.repeat(np.arange(n), np.diff(indptr))
    for dim, dof, exag in ((2, 1.0, 1.0), (2, 0.7, 12.0), (3, 1.0, 4.0)):
        Y = rng.standard_normal((n, dim))
        diff = Y[rows] - Y[indices]
        u = 1.0 / (1.0 + (diff ** 2).sum(1) / dof)
        ref = np.zeros((n, dim))
        np.add.at(ref, rows, (data * u)[:, None] * diff)
        for kern in kernels():
            out = np.empty((n, dim))
            kl = C.tsne_attractive(indptr, indices, data, Y, Y, dof, exag, False, out, 2, True, cpu_kernel=kern)
            np.testing.assert_allclose(out, exag * ref, rtol=1e-10, atol=1e-13, err_msg=kern)
            assert kl == 0.0
            kl = C.tsne_attractive(indptr, indices, data, Y, Y, dof, 1.0, True, out, 1, True, cpu_kernel=kern)
            np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-13, err_msg=kern)
            np.testing.assert_allclose(kl, (data * np.log(data / u ** dof)).sum(), rtol=1e-10, err_msg=kern)
    return f"kernels {kernels()}: n=60, dims 2 and 3, dof 1 and 0.7"


@check("tsne_bh_repulsive: theta=0 equals the exact sum, theta=0.5 within 2%")
def _bh():
    C = _C()
    rng = np.random.default_rng(6)
    Y = rng.standard_normal((150, 2)) * 3
    diff = Y[:, None, :] - Y[None, :, :]
    u = 1.0 / (1.0 + (diff ** 2).sum(-1))
    np.fill_diagonal(u, 0.0)
    R = ((u ** 2)[:, :, None] * diff).sum(1)
    out = np.empty_like(Y)
    z = np.empty(150)
    total = C.tsne_bh_repulsive(Y, Y, True, 0.0, 1.0, out, z, 2)
    np.testing.assert_allclose(out, R, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(z, u.sum(1), rtol=1e-12)
    np.testing.assert_allclose(total, u.sum(), rtol=1e-12)
    total = C.tsne_bh_repulsive(Y, Y, True, 0.5, 1.0, out, None, 2)
    err = np.linalg.norm(out - R) / np.linalg.norm(R)
    assert err < 0.02 and abs(total / u.sum() - 1) < 0.02, (err, total / u.sum())
    Q = rng.standard_normal((9, 2))  # new points against fixed ones
    dq = Q[:, None, :] - Y[None, :, :]
    uq = 1.0 / (1.0 + (dq ** 2).sum(-1))
    outq = np.empty_like(Q)
    C.tsne_bh_repulsive(Y, Q, False, 0.0, 1.0, outq, None, 1)
    np.testing.assert_allclose(outq, ((uq ** 2)[:, :, None] * dq).sum(1), rtol=1e-9, atol=1e-12)
    return f"n=150, theta 0.5 error {err:.2e}"


@check("tsne_fft_spread / tsne_fft_gather: quadratic interpolation is exact (float64 and float32 grids)")
def _fft_grid():
    C = _C()
    rng = np.random.default_rng(7)
    n_boxes, lo, h = 4, -2.0, 1.0 / 3.0  # g = 12 nodes per axis over [-2, 2]
    g = 3 * n_boxes
    Y = rng.uniform(-1.9, 1.9, size=(50, 2))
    charges = rng.standard_normal((50, 2))
    nodes = lo + (np.arange(g) + 0.5) * h
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 2e-4)):
        grid = np.full((2, g, g), np.nan, dtype)
        C.tsne_fft_spread(Y, lo, h, n_boxes, charges, grid, 2)
        # the weights reproduce polynomials of degree <= 2 per axis: moments of the charges
        for px, py in ((0, 0), (1, 0), (0, 1), (2, 1), (1, 2)):
            mono = nodes[:, None] ** py * nodes[None, :] ** px  # grid[c, row = y node, col = x node]
            got = (grid.astype(np.float64) * mono).sum((1, 2))
            want = (charges * (Y[:, :1] ** px * Y[:, 1:] ** py)).sum(0)
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)
        # gather from a padded (strided) potential: f(x, y) = 1 + 2x - y + x y + x^2 y^2
        xx, yy = nodes[None, :], nodes[:, None]
        full = np.zeros((2, g, g + 5), dtype)
        full[0, :, :g] = 1 + 2 * xx - yy + xx * yy + xx ** 2 * yy ** 2
        full[1, :, :g] = yy ** 2
        out = np.empty((50, 2))
        C.tsne_fft_gather(Y, lo, h, n_boxes, full[:, :, :g], out, 2)
        x, y = Y[:, 0], Y[:, 1]
        np.testing.assert_allclose(out[:, 0], 1 + 2 * x - y + x * y + x ** 2 * y ** 2, rtol=tol, atol=tol * 10)
        np.testing.assert_allclose(out[:, 1], y ** 2, rtol=tol, atol=tol * 10)
    return "12x12 grid, 50 points, 2 channels"


@check("tsne_step: gains, momentum, step clipping and centring (openTSNE's rule)")
def _step():
    C = _C()
    rng = np.random.default_rng(8)
    Y = rng.standard_normal((40, 2))
    upd = rng.standard_normal((40, 2)) * 0.5
    gains = rng.uniform(0.5, 2.0, (40, 2))
    grad = rng.standard_normal((40, 2)) * 3
    lr, mom, min_gain, max_norm = 1.0, 0.8, 0.01, 3.0
    flip = np.sign(upd) != np.sign(grad)
    g_ref = np.where(flip, gains + 0.2, gains * 0.8 + min_gain)
    u_ref = mom * upd - lr * g_ref * grad
    norm = np.linalg.norm(u_ref, axis=1, keepdims=True)
    u_ref = np.where(norm > max_norm, u_ref * (max_norm / norm), u_ref)
    y_ref = Y + u_ref
    y_ref -= y_ref.mean(0)
    assert (norm > max_norm).any() and (norm <= max_norm).any(), "both clipped and unclipped rows"
    C.tsne_step(Y, upd, gains, grad, lr, mom, min_gain, max_norm, True, 2)
    np.testing.assert_allclose(gains, g_ref, rtol=1e-14)
    np.testing.assert_allclose(upd, u_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(Y, y_ref, rtol=1e-12, atol=1e-12)
    return "40x2"


@check("public API: knn_graph (exact, approx), knn_query, TSNE (fft, barnes_hut) on 3 blobs")
def _public():
    from fastrl.manifold import TSNE
    from fastrl.neighbors import knn_graph, knn_query
    rng = np.random.default_rng(9)
    centers = rng.standard_normal((3, 10)) * 8
    y = np.repeat(np.arange(3), 100)
    X = (centers[y] + rng.standard_normal((300, 10))).astype(np.float32)
    idx, dist = knn_graph(X, 8)
    ref_i, ref_d = brute_knn(X, X, 8, True)
    assert np.array_equal(np.asarray(idx), ref_i)
    idx_a, _ = knn_graph(X, 8, method="approx", random_state=0)
    recall = np.mean([len(set(a) & set(b)) / 8 for a, b in zip(np.asarray(idx_a), ref_i)])
    assert recall >= 0.95, recall
    qi, _ = knn_query(X, X[:5] + 0.01, 3)
    assert np.array_equal(np.asarray(qi), brute_knn(X, X[:5] + 0.01, 3, False)[0])
    msg = [f"approx recall {recall:.3f}"]
    for method in ("fft", "barnes_hut"):
        E = TSNE(perplexity=20, max_iter=300, method=method, random_state=0).fit_transform(X)
        E = np.asarray(E)
        assert E.shape == (300, 2) and np.isfinite(E).all()
        # 1-NN in the embedding recovers the blob of almost every point
        nn = brute_knn(E.astype(np.float32), E.astype(np.float32), 1, True)[0][:, 0]
        acc = np.mean(y[nn] == y)
        assert acc >= 0.98, f"{method}: 1-NN accuracy {acc}"
        msg.append(f"{method} 1-NN acc {acc:.3f}")
    return ", ".join(msg)


@check("loss step: NTXentLoss forward + backward equals the N x N reference")
def _loss():
    import torch
    from fastrl.losses import NTXentLoss
    from fastrl.losses.contrastive.reference import nt_xent_reference
    torch.manual_seed(0)
    z1 = torch.randn(64, 32, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(64, 32, dtype=torch.float64, requires_grad=True)
    loss = NTXentLoss(temperature=0.2)(z1, z2)
    loss.backward()
    g1, g2 = z1.grad.clone(), z2.grad.clone()
    z1.grad = z2.grad = None
    ref = nt_xent_reference(z1, z2, 0.2)
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g1, z1.grad, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(g2, z2.grad, rtol=1e-8, atol=1e-12)
    return f"N=64, D=32, loss {loss.item():.6f}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--kernel"] and len(argv) == 2:  # same as FASTRL_CPU_KERNEL=...; works in any shell (cmd.exe)
        os.environ["FASTRL_CPU_KERNEL"] = argv[1]
    elif argv:
        print("usage: wheel_smoke.py [--kernel base|avx2|avx512]", file=sys.stderr)
        return 2
    kernel = os.environ.get("FASTRL_CPU_KERNEL") or "auto"
    print(f"fastrl wheel smoke test (FASTRL_CPU_KERNEL={kernel}, python {sys.version.split()[0]})")
    failed = []
    for name, fn in CHECKS:
        t0 = time.perf_counter()
        try:
            detail = fn()
        except Exception as exc:  # report every check, then fail
            failed.append(name)
            print(f"FAIL  {name}: {type(exc).__name__}: {exc}")
            continue
        print(f"ok    {name} ({detail}; {time.perf_counter() - t0:.2f} s)")
    print(f"{len(CHECKS) - len(failed)}/{len(CHECKS)} checks passed" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
