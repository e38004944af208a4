"""kNN graph benchmark: fastrl exact and approx against scikit-learn brute
force, faiss IndexFlatL2 and pynndescent, side by side in one process.

Data: MNIST 70k (../shared/data/mnist.npz or $FASTRL_MNIST), raw 784-d and
PCA-50, k = 15 and k = 90. Reports median wall time, peak extra memory and
recall@k against the exact graph, plus each time as a ratio to faiss (exact)
or pynndescent (approx). Writes benchmarks/results/knn.json.

    PYTHONPATH=. python benchmarks/bench_knn.py [--n 70000] [--repeat 3] [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PeakMemory, print_table, write_results  # noqa: E402


def recall(idx, ref, k):
    hits = sum(len(set(a[:k].tolist()) & set(b[:k].tolist())) for a, b in zip(idx, ref))
    return hits / (k * len(ref))


def pca50(X):
    """PCA to 50 dims (the same reduction `fastrl tsne` applies)."""
    from fastrl.cli.tsne import pca_reduce
    return np.ascontiguousarray(pca_reduce(X, 50))


def run_case(name, fn, repeat):
    times, out, peak = [], None, 0.0
    for _ in range(repeat):
        with PeakMemory() as pm:
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        peak = max(peak, pm.peak_mib)
    return out, float(np.median(times)), peak


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=70000, help="points (first n MNIST rows)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per PCA-50 case (median)")
    ap.add_argument("--repeat-raw", type=int, default=1, help="timed runs per raw 784-d case")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="PCA-50 with k=90 only (the acceptance case)")
    ap.add_argument("--no-sklearn", action="store_true", help="skip scikit-learn (slowest peer)")
    args = ap.parse_args()

    from fastrl.datasets import load_mnist
    from fastrl.neighbors import knn_graph

    X, _ = load_mnist(n=args.n)
    data = {"pca50": pca50(X)} if args.quick else {"raw784": X.astype(np.float32), "pca50": pca50(X)}
    ks = [90] if args.quick else [15, 90]
    nj = args.n_jobs
    os.environ.setdefault("OMP_NUM_THREADS", str(nj))

    peers = {}
    try:
        import faiss
        faiss.omp_set_num_threads(nj)
        peers["faiss"] = faiss
    except ImportError:
        print("faiss-cpu not installed: skipping faiss")
    try:
        from pynndescent import NNDescent
        NNDescent(np.random.default_rng(0).standard_normal((3000, 10)).astype(np.float32),
                  n_neighbors=10, n_jobs=nj, random_state=0)  # JIT warm-up, not timed
        peers["pynndescent"] = NNDescent
    except ImportError:
        print("pynndescent not installed: skipping pynndescent")
    if not args.no_sklearn:
        try:
            from sklearn.neighbors import NearestNeighbors
            peers["sklearn"] = NearestNeighbors
        except ImportError:
            pass

    rows = []
    for dname, A in data.items():
        for k in ks:
            case = f"{dname} k={k}"
            print(f"\n{case}: N={A.shape[0]} D={A.shape[1]}", flush=True)
            repeat = args.repeat if dname == "pca50" else args.repeat_raw
            res = {}
            (ei, _), t, m = run_case("fastrl exact", lambda: knn_graph(A, k, method="exact", n_jobs=nj), repeat)
            res["fastrl exact"] = (t, m, 1.0)
            (ai, _), t, m = run_case("fastrl approx",
                                     lambda: knn_graph(A, k, method="approx", n_jobs=nj, random_state=0), repeat)
            res["fastrl approx"] = (t, m, recall(ai, ei, k))
            if "faiss" in peers:
                def f_faiss():
                    index = peers["faiss"].IndexFlatL2(A.shape[1])
                    index.add(A)
                    return index.search(A, k + 1)
                (D, Ii), t, m = run_case("faiss", f_faiss, repeat)
                res["faiss IndexFlatL2"] = (t, m, recall(Ii[:, 1:], ei, k))
            if "pynndescent" in peers:
                def f_pynn():
                    return peers["pynndescent"](A, n_neighbors=k + 1, n_jobs=nj, random_state=0).neighbor_graph
                (Ii, _), t, m = run_case("pynndescent", f_pynn, repeat)
                res["pynndescent"] = (t, m, recall(Ii[:, 1:], ei, k))
            if "sklearn" in peers:
                def f_sk():
                    return peers["sklearn"](n_neighbors=k, algorithm="brute", n_jobs=nj).fit(A).kneighbors()
                (_, Ii), t, m = run_case("sklearn", f_sk, 1)
                res["sklearn brute"] = (t, m, recall(Ii, ei, k))
            base_exact = res.get("faiss IndexFlatL2", res["fastrl exact"])[0]
            base_approx = res.get("pynndescent", res["fastrl approx"])[0]
            for lib, (t, m, r) in res.items():
                approx = lib in ("fastrl approx", "pynndescent")
                rows.append({"case": case, "library": lib, "time_s": t, "peak_mib": m, f"recall": r,
                             "ratio": t / (base_approx if approx else base_exact),
                             "vs": "pynndescent" if approx else "faiss"})
                print(f"  {lib:18s} {t:8.3f} s  peak {m:8.1f} MiB  recall@{k} {r:.4f}", flush=True)

    print_table(rows, ["case", "library", "time_s", "peak_mib", "recall", "ratio", "vs"],
                title=f"kNN graphs, MNIST n={args.n}, n_jobs={nj} (median of {args.repeat})")
    write_results("knn" if not args.quick else "knn_quick", {"n": args.n, "n_jobs": nj, "repeat": args.repeat, "rows": rows})


if __name__ == "__main__":
    main()
