"""t-SNE benchmark: fastrl against openTSNE (FFT and Barnes-Hut) and scikit-learn.

    python benchmarks/bench_tsne.py              # MNIST 70k + 20k subset
    python benchmarks/bench_tsne.py --n 1000000  # synthetic mixture, fastrl only
    options: --skip-bh (no openTSNE Barnes-Hut on 70k), --skip-sklearn, --n-jobs

Every run uses perplexity 30, 750 iterations (250 early exaggeration), PCA-50
input. On MNIST, fastrl and the openTSNE runs are interleaved round-robin
(--repeat rounds, default 3; min and median wall time; results rewritten after
every round). Reported: wall time (affinities included), peak extra RSS, the
library's own final KL, a common KL (same fastrl P for everyone; the
normaliser Z by Barnes-Hut with theta=0.1), 10-NN accuracy of the embedding
(5-fold CV) and trustworthiness@10 on a 5k subsample.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from _common import RESULTS, PeakMemory, load_avg, print_table, write_results


def pca50(X: np.ndarray) -> np.ndarray:
    from fastrl.cli.tsne import pca_reduce
    return pca_reduce(np.asarray(X, dtype=np.float32), 50)


def mixture(n: int, seed: int = 0):
    """50-d Gaussian mixture with 100 clusters."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4.0, size=(100, 50)).astype(np.float32)
    y = rng.integers(0, 100, size=n)
    X = centers[y] + rng.normal(size=(n, 50)).astype(np.float32)
    return X, y


def common_kl(P, E) -> float:
    from fastrl.manifold.tsne import attractive_forces, bh_repulsion
    E = np.ascontiguousarray(E, dtype=np.float64)
    _, part = attractive_forces(P, E, eval_kl=True)
    _, Z = bh_repulsion(E, theta=0.1)
    return float(part + np.log(Z))


def quality(X, E, y, P, rng) -> dict:
    from sklearn.manifold import trustworthiness
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    out = {"kl_common": common_kl(P, E)}
    if y is not None:
        out["knn10_acc"] = float(cross_val_score(KNeighborsClassifier(10, n_jobs=2), E, y, cv=5).mean())
    sub = rng.choice(len(X), size=min(5000, len(X)), replace=False)
    out["trust10"] = float(trustworthiness(X[sub], E[sub], n_neighbors=10))
    return out


def run_one(name, fn, X, y, P, rng, rows, embeddings):
    print(f"-- {name} ...", flush=True)
    t0 = time.perf_counter()
    with PeakMemory() as pm:
        E, kl = fn(X)
    wall = time.perf_counter() - t0
    row = {"library": name, "n": len(X), "wall_s": wall, "peak_rss_mib": pm.peak_mib, "kl_own": kl}
    row.update(quality(X, E, y, P, rng))
    print(row, flush=True)
    rows.append(row)
    embeddings[name] = E
    return row


def fastrl_fn(n_jobs, device=None):
    def fn(X):
        from fastrl.manifold import TSNE
        t = TSNE(perplexity=30, max_iter=750, n_jobs=n_jobs, random_state=0, device=device)
        E = t.fit_transform(X)
        return E, t.kl_divergence_
    return fn


def opentsne_fn(method, n_jobs):
    def fn(X):
        from openTSNE import TSNE
        E = TSNE(perplexity=30, n_iter=500, early_exaggeration_iter=250, negative_gradient_method=method,
                 n_jobs=n_jobs, random_state=0).fit(X)
        return np.asarray(E), float(E.kl_divergence)
    return fn


def sklearn_fn(n_jobs):
    def fn(X):
        import inspect

        from sklearn.manifold import TSNE
        iters = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
        t = TSNE(perplexity=30, init="pca", learning_rate="auto", n_jobs=n_jobs, random_state=0, **{iters: 750})
        E = t.fit_transform(X)
        return E, float(t.kl_divergence_)
    return fn


def run_interleaved(libs, X, y, P, rng, repeat, emb, on_round=None):
    """Round-robin ``repeat`` rounds of every (name, fn) in ``libs`` (same load
    for all); quality measured on each library's first embedding (every round
    uses the same seed)."""
    times = {name: [] for name, _ in libs}
    loads = {name: [] for name, _ in libs}
    last = {}
    rows = []
    for r in range(repeat):
        for name, fn in libs:
            print(f"-- round {r + 1}/{repeat}: {name} ...", flush=True)
            loads[name].append(load_avg())
            t0 = time.perf_counter()
            with PeakMemory() as pm:
                E, kl = fn(X)
            times[name].append(time.perf_counter() - t0)
            last[name] = (E, kl, pm.peak_mib)
            print(f"   {times[name][-1]:.1f} s", flush=True)
        if r == 0:
            qual = {}
            for name, _ in libs:
                qual[name] = quality(X, last[name][0], y, P, rng)
                emb[name] = last[name][0]
        rows = [{"library": name, "n": len(X), "wall_s": float(np.min(times[name])),
                 "wall_median_s": float(np.median(times[name])), "times_s": times[name], "load": loads[name],
                 "peak_rss_mib": last[name][2], "kl_own": last[name][1], **qual[name]} for name, _ in libs]
        print(rows, flush=True)
        if on_round is not None:
            on_round(rows)
    return rows


def ratios(rows, ref_name, lib="fastrl"):
    ref = next((r for r in rows if r["library"] == ref_name), None)
    me = next((r for r in rows if r["library"] == lib), None)
    if ref is None or me is None:
        return {}
    return {f"{lib}_over_{ref_name}": {
        "wall": me["wall_s"] / ref["wall_s"],
        "wall_median": me.get("wall_median_s", me["wall_s"]) / ref.get("wall_median_s", ref["wall_s"]),
        "kl_own": me["kl_own"] / ref["kl_own"],
        "kl_common": me.get("kl_common", np.nan) / ref.get("kl_common", np.nan),
        "knn10_acc_diff": me.get("knn10_acc", np.nan) - ref.get("knn10_acc", np.nan)}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=None, help="synthetic Gaussian mixture of this size (fastrl only)")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--skip-bh", action="store_true")
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--subset", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds on MNIST (min and median)")
    args = ap.parse_args()
    import torch

    from fastrl.manifold.tsne import joint_probabilities
    rng = np.random.default_rng(0)
    payload = {"perplexity": 30, "max_iter": 750, "n_jobs": args.n_jobs, "gpu": torch.cuda.is_available(),
               "repeat": args.repeat}
    cols = ["library", "n", "wall_s", "peak_rss_mib", "kl_own", "kl_common", "knn10_acc", "trust10"]
    if args.n:
        X, y = mixture(args.n)
        P = None
        rows = []
        print(f"-- fastrl on a {args.n} x 50 mixture", flush=True)
        t0 = time.perf_counter()
        with PeakMemory() as pm:
            from fastrl.manifold import TSNE
            t = TSNE(max_iter=payload["max_iter"], n_jobs=args.n_jobs, random_state=0, verbose=True)
            E = t.fit_transform(X)
        rows.append({"library": "fastrl", "n": args.n, "wall_s": time.perf_counter() - t0,
                     "peak_rss_mib": pm.peak_mib, "kl_own": t.kl_divergence_, "n_iter": int(t.n_iter_)})
        print_table(rows, cols, f"synthetic mixture N={args.n}")
        payload["synthetic"] = rows
        write_results(f"tsne_synthetic_{args.n}", payload)
        return
    from fastrl.datasets import load_mnist
    X, y = load_mnist()
    X = pca50(X.astype(np.float32) / 255.0)
    P = joint_probabilities(X, 30.0, n_jobs=args.n_jobs)
    emb = {}
    libs = [("fastrl", fastrl_fn(args.n_jobs))]
    if torch.cuda.is_available():  # GPU mode: Triton gradient kernels on the device
        libs.append(("fastrl-cuda", fastrl_fn(args.n_jobs, device="cuda")))
    libs.append(("openTSNE-fft", opentsne_fn("fft", args.n_jobs)))
    if not args.skip_bh:
        libs.append(("openTSNE-bh", opentsne_fn("bh", args.n_jobs)))

    def partial(rows):  # keep what has run if the benchmark is stopped
        write_results("tsne", {**payload, "mnist70k": rows, "partial": True,
                               "mnist70k_ratios": {**ratios(rows, "openTSNE-fft"), **ratios(rows, "openTSNE-bh")}})

    rows = run_interleaved(libs, X, y, P, rng, args.repeat, emb, on_round=partial)
    cols = cols[:3] + ["wall_median_s"] + cols[3:]
    print_table(rows, cols, f"MNIST 70k (PCA-50), min and median of {args.repeat} interleaved rounds")
    payload["mnist70k"] = rows
    payload["mnist70k_ratios"] = {**ratios(rows, "openTSNE-fft"), **ratios(rows, "openTSNE-bh")}
    print(payload["mnist70k_ratios"])
    from fastrl.plot import embedding
    RESULTS.mkdir(parents=True, exist_ok=True)
    embedding(emb["fastrl"], y, RESULTS / "tsne_mnist.png", title="fastrl t-SNE, MNIST 70k (PCA-50)")
    if not args.skip_sklearn:
        sub = rng.choice(len(X), size=args.subset, replace=False)
        Xs, ys = X[sub], y[sub]
        Ps = joint_probabilities(Xs, 30.0, n_jobs=args.n_jobs)
        rows_s, emb_s = [], {}
        run_one("fastrl", fastrl_fn(args.n_jobs), Xs, ys, Ps, rng, rows_s, emb_s)
        run_one("sklearn", sklearn_fn(args.n_jobs), Xs, ys, Ps, rng, rows_s, emb_s)
        print_table(rows_s, cols, f"MNIST {args.subset} subset")
        payload["mnist_subset"] = rows_s
        payload["mnist_subset_ratios"] = ratios(rows_s, "sklearn")
        print(payload["mnist_subset_ratios"])
    write_results("tsne", payload)


if __name__ == "__main__":
    main()
