"""kNN graph benchmark: fastrl exact (every SIMD kernel the CPU runs, forced
with fastrl.use_cpu_kernel) and approx against faiss IndexFlatL2, pynndescent and
(optionally) scikit-learn brute force, interleaved in one process.

Data: MNIST (../shared/data/mnist.npz or $FASTRL_MNIST): raw 784-d pixels on
the first --n-raw points (default 20k) and PCA-50 on the first --n-pca
(default 30k), k = 15 and 90. Every case runs all libraries round-robin for
--repeat rounds (default 3): min and median wall time, recall@k against
fastrl's exact graph (approximate methods are compared at the recall each
reaches), ratios of minima to faiss (exact) or pynndescent (approx).
Writes benchmarks/results/knn.json after every case.

``--large 200000,1000000``: NN-descent at scale instead, fastrl approx against
pynndescent on bench_tsne's 50-d Gaussian mixture (100 clusters, the t-SNE
scaling set) at k = 90, interleaved, with the peak extra RSS of each call;
recall@k on 1000 random points against their exact neighbours (knn_query).
Rounds: --repeat up to 200k points, one above (pynndescent takes minutes).
Writes benchmarks/results/knn_large.json.

    python benchmarks/bench_knn.py [--repeat 3] [--quick] [--sklearn]
    python benchmarks/bench_knn.py --large 200000,1000000
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from _common import interleaved, print_table, write_results


def recall(idx, ref, k):
    hits = sum(len(set(a[:k].tolist()) & set(b[:k].tolist())) for a, b in zip(idx, ref))
    return hits / (k * len(ref))


def pca50(X):
    """PCA to 50 dims (the same reduction `fastrl tsne` applies)."""
    from fastrl.cli.tsne import pca_reduce
    return np.ascontiguousarray(pca_reduce(X, 50))


def with_kernel(name, fn):
    """``fn`` run with the core's SIMD kernel ``name`` (fastrl.use_cpu_kernel)."""
    def run():
        from fastrl import use_cpu_kernel
        with use_cpu_kernel(name):
            return fn()
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-raw", type=int, default=20000, help="points of the raw 784-d cases")
    ap.add_argument("--n-pca", type=int, default=30000, help="points of the PCA-50 cases")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds per case (min and median)")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the two acceptance cases only (PCA-50 k=90, raw k=15)")
    ap.add_argument("--settle", type=float, default=0.25,
                    help="seconds of sleep before each timed call (thread pools stop spinning)")
    ap.add_argument("--sklearn", action="store_true", help="also scikit-learn brute force (slowest peer)")
    ap.add_argument("--large", default="", help="comma-separated N: NN-descent vs pynndescent on the mixture")
    args = ap.parse_args()
    nj = args.n_jobs
    if args.large:
        return large(args)
    os.environ.setdefault("OMP_NUM_THREADS", str(nj))
    import torch
    torch.set_num_threads(nj)

    from fastrl import backend_info
    from fastrl.datasets import load_mnist
    from fastrl.manifold import pca
    from fastrl.neighbors import knn_graph

    X, _ = load_mnist(n=max(args.n_raw, args.n_pca))
    data = {"raw784": np.ascontiguousarray(X[: args.n_raw], dtype=np.float32),
            "pca50": np.ascontiguousarray(pca(np.asarray(X[: args.n_pca], dtype=np.float32), 50), dtype=np.float32)}
    cases = [("pca50", 90), ("raw784", 15)] if args.quick else [("pca50", 90), ("raw784", 15), ("pca50", 15),
                                                               ("raw784", 90)]
    kernels = [kn for kn in backend_info()["cpu_kernels"] if kn != "base"] or ["base"]

    import faiss
    from pynndescent import NNDescent
    faiss.omp_set_num_threads(nj)
    NNDescent(np.random.default_rng(0).standard_normal((3000, 10)).astype(np.float32),
              n_neighbors=10, n_jobs=nj, random_state=0)  # JIT warm-up, not timed

    rows = []
    for dname, k in cases:
        A = data[dname]
        case = f"{dname} n={A.shape[0]} k={k}"
        print(f"\n{case}: D={A.shape[1]}", flush=True)
        ref, _ = knn_graph(A, k, method="exact", n_jobs=nj)

        def f_faiss(A=A, k=k):
            index = faiss.IndexFlatL2(A.shape[1])
            index.add(A)
            return index.search(A, k + 1)[1][:, 1:]

        fns = {f"fastrl exact ({kn})": with_kernel(kn, lambda A=A, k=k: knn_graph(A, k, method="exact", n_jobs=nj)[0])
               for kn in kernels}
        fns["faiss IndexFlatL2"] = f_faiss
        fns["fastrl approx"] = lambda A=A, k=k: knn_graph(A, k, method="approx", n_jobs=nj, random_state=0)[0]
        fns["pynndescent"] = lambda A=A, k=k: NNDescent(A, n_neighbors=k + 1, n_jobs=nj,
                                                        random_state=0).neighbor_graph[0][:, 1:]
        if args.sklearn:
            from sklearn.neighbors import NearestNeighbors
            fns["sklearn brute"] = lambda A=A, k=k: NearestNeighbors(n_neighbors=k, algorithm="brute",
                                                                     n_jobs=nj).fit(A).kneighbors()[1]
        res = interleaved(fns, repeat=args.repeat, on_result=lambda name, idx: recall(idx, ref, k),
                          settle_s=args.settle)
        for lib, r in res.items():
            approx = lib in ("fastrl approx", "pynndescent")
            base = res["pynndescent" if approx else "faiss IndexFlatL2"]
            rows.append({"case": case, "library": lib, "min_s": r["min_s"], "median_s": r["median_s"],
                         "times_s": r["times_s"], "load": r["load"], "recall": float(np.mean(r["checks"])),
                         "ratio_min": r["min_s"] / base["min_s"], "ratio_median": r["median_s"] / base["median_s"],
                         "vs": "pynndescent" if approx else "faiss"})
            print(f"  {lib:24s} min {r['min_s']:8.3f} s  median {r['median_s']:8.3f} s  "
                  f"recall@{k} {rows[-1]['recall']:.4f}  x{rows[-1]['ratio_min']:.2f} {rows[-1]['vs']}", flush=True)
        write_results("knn", {"n_raw": args.n_raw, "n_pca": args.n_pca, "n_jobs": nj, "repeat": args.repeat,
                              "settle_s": args.settle,
                              "rows": rows})

    print_table(rows, ["case", "library", "min_s", "median_s", "recall", "ratio_min", "ratio_median", "vs"],
                title=f"kNN graphs, MNIST, n_jobs={nj} (min / median of {args.repeat} interleaved rounds)")


def large(args, k: int = 90):
    """--large: fastrl approx vs pynndescent on the t-SNE scaling mixture."""
    nj = args.n_jobs
    os.environ.setdefault("OMP_NUM_THREADS", str(nj))
    from bench_tsne import mixture
    from pynndescent import NNDescent

    from fastrl.neighbors import knn_graph, knn_query
    NNDescent(np.random.default_rng(0).standard_normal((3000, 10)).astype(np.float32),
              n_neighbors=10, n_jobs=nj, random_state=0)  # JIT warm-up, not timed
    rows = []
    for n in [int(x) for x in args.large.split(",")]:
        X, _ = mixture(n)
        q = np.random.default_rng(1).choice(n, 1000, replace=False)
        ref = knn_query(X, X[q], k + 1, n_jobs=nj)[0][:, 1:]  # the query points are in X: drop themselves
        case = f"mixture50 n={n} k={k}"
        fns = {"fastrl approx": lambda X=X: knn_graph(X, k, method="approx", n_jobs=nj, random_state=0)[0],
               # as pynndescent's authors run it: default parameters, n_jobs threads, no seed (a seed
               # serialises parts of the build)
               "pynndescent": lambda X=X: NNDescent(X, n_neighbors=k + 1, n_jobs=nj).neighbor_graph[0][:, 1:]}
        rounds = args.repeat if n <= 200_000 else 1
        res = interleaved(fns, repeat=rounds, on_result=lambda name, idx: recall(idx[q], ref, k),
                          settle_s=args.settle, peak_memory=True)
        for lib, r in res.items():
            base = res["pynndescent"]
            rows.append({"case": case, "library": lib, "n": n, "k": k, "min_s": r["min_s"],
                         "median_s": r["median_s"], "times_s": r["times_s"], "load": r["load"],
                         "peak_extra_mib": max(r["peak_mib"]), "recall": float(np.mean(r["checks"])),
                         "ratio_min": r["min_s"] / base["min_s"], "ratio_median": r["median_s"] / base["median_s"],
                         "vs": "pynndescent"})
            print(f"  {case} {lib:14s} min {r['min_s']:8.2f} s  median {r['median_s']:8.2f} s  "
                  f"peak +{rows[-1]['peak_extra_mib']:.0f} MiB  recall@{k} {rows[-1]['recall']:.5f}  "
                  f"x{rows[-1]['ratio_min']:.2f}", flush=True)
        write_results("knn_large", {"n_jobs": nj, "repeat": args.repeat, "settle_s": args.settle,
                                    "recall_points": 1000, "data": "50-d Gaussian mixture, 100 clusters (seed 0)",
                                    "rows": rows})


if __name__ == "__main__":
    main()
