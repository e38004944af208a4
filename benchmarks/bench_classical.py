"""Classical embeddings and embedding-quality metrics vs scikit-learn.

Default: MNIST 10k (pixels / 255). PCA, classical MDS (2k subset, against
scikit-learn's SMACOF MDS), Laplacian eigenmaps, symmetric SNE (2k subset) and
t-SNE, each with time, trustworthiness@10 (in pixel space), 5-fold kNN
accuracy@10 and linear-probe accuracy (80/20 split). fastrl's SNE/t-SNE rows
need ``fastrl.manifold.TSNE`` and are skipped without it. Writes
benchmarks/results/classical.json and classical.png (all embeddings side by
side).

``--laplacian-70k``: the speed acceptance on MNIST 70k (PCA-50):
LaplacianEigenmaps vs SpectralEmbedding with the same n_neighbors, and
trustworthiness on 70k points. Writes benchmarks/results/classical_70k.json.

``--pca``: PCA speed acceptance: ``pca(X, 50)`` against scikit-learn
``PCA(50).fit_transform`` on MNIST 10k x 784, float32 and float64, interleaved
(--repeat rounds, min and median). Writes benchmarks/results/classical_pca.json.

    python benchmarks/bench_classical.py [--n 10000] [--laplacian-70k | --pca]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import RESULTS, PeakMemory, interleaved, print_table, write_results

CUDA = torch.cuda.is_available()


def timed(fn):
    """(result, seconds, peak MiB) of one call: embeddings are too slow to repeat."""
    with PeakMemory(cuda=False) as pm:
        t0 = time.perf_counter()
        out = fn()
        if CUDA:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    return out, dt, pm.peak_mib


def fastrl_tsne():
    try:
        from fastrl.manifold import TSNE
    except ImportError:
        return None
    return TSNE


def methods(X, Z50, sub, n_neighbors, seed):
    """(group, method, implementation, rows used, callable) for every comparison."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import MDS, TSNE as SkTSNE, SpectralEmbedding

    from fastrl.manifold import LaplacianEigenmaps, classical_mds, pca

    Xs = X[sub]

    def dists():
        from scipy.spatial.distance import cdist
        return cdist(Xs.astype(np.float64), Xs.astype(np.float64))

    todo = [
        ("PCA", "PCA", "fastrl", None, lambda: pca(torch.from_numpy(X).cuda() if CUDA else X, 2)),
        ("PCA", "PCA", "sklearn", None, lambda: PCA(2, random_state=seed).fit_transform(X)),
        ("MDS", "cMDS", "fastrl", sub, lambda: classical_mds(dists(), n_components=2)),
        ("MDS", "MDS (SMACOF)", "sklearn", sub,
         lambda: MDS(2, metric="precomputed", init="random", n_init=1, random_state=seed).fit_transform(dists())),
        ("Laplacian", "Laplacian", "fastrl", None, lambda: LaplacianEigenmaps(2, n_neighbors).fit_transform(Z50)),
        ("Laplacian", "Laplacian", "sklearn", None,
         lambda: SpectralEmbedding(2, n_neighbors=n_neighbors + 1, random_state=seed).fit_transform(Z50)),
    ]
    TSNE = fastrl_tsne()
    if TSNE is not None:
        todo += [
            ("SNE", "SNE", "fastrl", sub,
             lambda: TSNE(2, kernel="gaussian", method="exact", random_state=seed).fit_transform(Z50[sub])),
            ("t-SNE", "t-SNE", "fastrl", None, lambda: TSNE(2, random_state=seed).fit_transform(Z50)),
        ]
    else:
        print("fastrl.manifold.TSNE is not available: skipping fastrl's SNE and t-SNE rows")
    todo.append(("t-SNE", "t-SNE", "sklearn", None, lambda: SkTSNE(2, random_state=seed).fit_transform(Z50)))
    return todo


def run_10k(args):
    from fastrl.datasets import load_mnist
    from fastrl.manifold import pca
    from fastrl.metrics import knn_accuracy, linear_probe, trustworthiness
    from fastrl.plot import compare

    X, y = load_mnist(n=args.n)
    X = X.astype(np.float32) / 255.0
    y = y.astype(np.int64)
    Z50 = pca(X, 50)
    sub = np.sort(np.random.default_rng(args.seed).choice(len(X), min(args.subset, len(X)), replace=False))
    rows, panels, panel_labels, ratios = [], {}, {}, {}
    peers = {}
    for group, method, impl, idx, fn in methods(X, Z50, sub, args.n_neighbors, args.seed):
        E, dt, mib = timed(fn)
        E = np.asarray(E.cpu() if isinstance(E, torch.Tensor) else E, dtype=np.float32)
        Xr, yr = (X, y) if idx is None else (X[idx], y[idx])
        n_tr = int(0.8 * len(yr))
        row = {"method": method, "impl": impl, "N": len(yr), "time_s": dt, "peak_mib": mib,
               "trust@10": trustworthiness(Xr, E, 10),
               "knn_acc@10": knn_accuracy(E, yr, 10, cv=5, random_state=args.seed),
               "probe_acc": linear_probe(E[:n_tr], yr[:n_tr], E[n_tr:], yr[n_tr:])}
        rows.append(row)
        peers.setdefault(group, {})[impl] = row
        print_table([row], list(row))
        name = f"{method} ({impl}, {dt:.1f} s)"
        panels[name], panel_labels[name] = E, yr
    for group, pair in peers.items():
        if len(pair) == 2:
            ratios[group] = pair["sklearn"]["time_s"] / pair["fastrl"]["time_s"]
            pair["fastrl"]["speedup_vs_sklearn"] = ratios[group]
    cols = ["method", "impl", "N", "time_s", "speedup_vs_sklearn", "peak_mib", "trust@10", "knn_acc@10",
            "probe_acc"]
    print_table(rows, cols, title=f"MNIST {args.n}: classical embeddings vs scikit-learn")
    RESULTS.mkdir(parents=True, exist_ok=True)
    png = RESULTS / "classical.png"
    compare(panels, panel_labels, png, ncols=4, suptitle=f"MNIST {args.n} (MDS and SNE: {len(sub)}-point subset)")
    print(f"wrote {png}")
    write_results("classical", {"dataset": f"MNIST first {args.n} (pixels / 255)", "subset": len(sub),
                                "n_neighbors": args.n_neighbors, "rows": rows, "speedup_vs_sklearn": ratios,
                                "notes": "Laplacian/SNE/t-SNE run on PCA-50; trustworthiness in pixel space. "
                                         "sklearn SpectralEmbedding counts the point itself, so it gets "
                                         "n_neighbors + 1 for the same graph."})


def _sklearn_spectral(Z50, n_neighbors, seed, queue):
    """Child process: time scikit-learn's SpectralEmbedding (it may be stopped)."""
    from sklearn.manifold import SpectralEmbedding
    R, dt, mib = timed(lambda: SpectralEmbedding(2, n_neighbors=n_neighbors, random_state=seed,
                                                 n_jobs=-1).fit_transform(Z50))
    queue.put((R, dt, mib))


def run_70k(args):
    import multiprocessing as mp
    import queue as queue_mod

    from scipy.linalg import subspace_angles

    from fastrl.datasets import load_mnist
    from fastrl.manifold import LaplacianEigenmaps, pca
    from fastrl.metrics import trustworthiness

    X, _ = load_mnist()
    Z50 = pca(X.astype(np.float32) / 255.0, 50)
    k = args.n_neighbors
    E, t_fast, mib_fast = timed(lambda: LaplacianEigenmaps(2, k, weights="binary").fit_transform(Z50))
    print(f"fastrl LaplacianEigenmaps (binary, n_neighbors={k}): {t_fast:.2f} s, {mib_fast:.0f} MiB")
    T, t_trust, mib_trust = timed(lambda: trustworthiness(Z50, E, 10))
    print(f"fastrl trustworthiness@10 on 70k (X = PCA-50): {T:.4f} in {t_trust:.2f} s, {mib_trust:.0f} MiB")
    out = {"dataset": "MNIST 70k, PCA-50", "n_neighbors": k,
           "fastrl_laplacian_s": t_fast, "fastrl_laplacian_peak_mib": mib_fast,
           "trustworthiness_70k_s": t_trust, "trustworthiness_70k": T, "trustworthiness_70k_peak_mib": mib_trust,
           "sklearn_trustworthiness_would_need_gib": 70000 ** 2 * 8 * 2 / 2 ** 30}
    if not args.skip_sklearn:
        # scikit-learn counts the point itself: n_neighbors + 1 gives the same (binary) graph.
        # It runs in a child process so that --sklearn-timeout can stop it.
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_sklearn_spectral, args=(Z50, k + 1, args.seed, queue))
        t0 = time.perf_counter()
        child.start()
        try:
            R, t_sk, mib_sk = queue.get(timeout=args.sklearn_timeout)
        except queue_mod.Empty:
            child.terminate()
            child.join()
            t_sk = time.perf_counter() - t0
            print(f"sklearn SpectralEmbedding stopped after {t_sk:.0f} s (--sklearn-timeout): "
                  f"fastrl/sklearn time < {t_fast / t_sk:.3f}")
            out.update(sklearn_spectral_s_lower_bound=t_sk, time_ratio_fastrl_over_sklearn_upper_bound=t_fast / t_sk)
            write_results("classical_70k", out)
            return
        child.join()
        angle = float(np.max(subspace_angles(E.astype(np.float64), R.astype(np.float64))))
        print(f"sklearn SpectralEmbedding (n_neighbors={k + 1} incl. self): {t_sk:.2f} s, {mib_sk:.0f} MiB; "
              f"fastrl/sklearn time = {t_fast / t_sk:.3f}; max principal angle {angle:.2e} rad")
        out.update(sklearn_spectral_s=t_sk, sklearn_spectral_peak_mib=mib_sk, time_ratio_fastrl_over_sklearn=t_fast / t_sk,
                   max_principal_angle_rad=angle)
    write_results("classical_70k", out)


def run_pca(args):
    """fastrl pca vs scikit-learn PCA, 50 components, both dtypes, interleaved."""
    from sklearn.decomposition import PCA

    from fastrl.datasets import load_mnist
    from fastrl.manifold import pca
    X, _ = load_mnist(n=args.n)
    rows = []
    for dtype in (np.float32, np.float64):
        A = np.ascontiguousarray(X, dtype=dtype) / dtype(255.0)
        res = interleaved({"fastrl": lambda A=A: pca(A, 50), "sklearn": lambda A=A: PCA(50).fit_transform(A)},
                          repeat=args.repeat, warmup=1, settle_s=0.25)
        # same subspace: scores agree up to sign per component
        a, b = res["fastrl"]["out"], res["sklearn"]["out"]
        err = float(np.abs(np.abs(a.astype(np.float64)) - np.abs(b.astype(np.float64))).max() / np.abs(b).max())
        for impl, r in res.items():
            rows.append({"dtype": np.dtype(dtype).name, "impl": impl, "N": len(A), "D": A.shape[1],
                         "min_s": r["min_s"], "median_s": r["median_s"], "times_s": r["times_s"], "load": r["load"],
                         "ratio_min": r["min_s"] / res["sklearn"]["min_s"],
                         "ratio_median": r["median_s"] / res["sklearn"]["median_s"], "max_rel_score_diff": err})
    print_table(rows, ["dtype", "impl", "N", "min_s", "median_s", "ratio_min", "ratio_median", "max_rel_score_diff"],
                title=f"PCA(50) on MNIST {args.n} x 784, min / median of {args.repeat} interleaved rounds")
    write_results("classical_pca", {"task": "pca(X, 50) vs sklearn PCA(50).fit_transform", "repeat": args.repeat,
                                    "settle_s": 0.25, "rows": rows})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000, help="MNIST points (default 10000)")
    p.add_argument("--subset", type=int, default=2000, help="points for MDS and exact SNE")
    p.add_argument("--n-neighbors", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--laplacian-70k", action="store_true", help="MNIST 70k speed acceptance instead")
    p.add_argument("--pca", action="store_true", help="PCA speed acceptance (10k x 784 -> 50) instead")
    p.add_argument("--repeat", type=int, default=5, help="--pca: interleaved rounds")
    p.add_argument("--skip-sklearn", action="store_true", help="70k mode: time fastrl only")
    p.add_argument("--sklearn-timeout", type=float, default=None,
                   help="70k mode: stop SpectralEmbedding after this many seconds (reports a lower bound)")
    args = p.parse_args()
    if args.pca:
        run_pca(args)
    elif args.laplacian_70k:
        run_70k(args)
    else:
        run_10k(args)


if __name__ == "__main__":
    main()
