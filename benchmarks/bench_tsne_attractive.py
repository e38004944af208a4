"""The t-SNE attractive pass alone: hardware gathers against scalar loads
(``FASTRL_GATHER`` / ``fastrl.use_gather``) in the SIMD build, and the
portable scalar loop (``use_cpu_kernel("base")``); the SIMD loops also with
P stored in float32 (``CSRParts(P, dtype=np.float32)``, float64 arithmetic).

    python benchmarks/bench_tsne_attractive.py                # MNIST 70k P + random 1M graph
    options: --repeat 15, --n-large 1000000, --k-large 90, --n-jobs 1 2, --skip-large,
             --fit-order (also the MNIST P as a fit holds it), --name (results file)

Graphs: the joint P of MNIST (PCA-50, perplexity 30, k = 90, symmetrised:
~125 edges per row) with a random 2-D Y, and N = --n-large points with
--k-large uniformly random neighbours per row (sorted, as CSR holds them) and
a random 2-D Y: the random-read regime, Y (16 MB at 1M) far beyond L2. With
--fit-order also ``mnist70k_fit``: the MNIST P and Y = its t-SNE embedding
(fastrl, 750 iterations), both in the Hilbert order of that embedding, as the
fit's re-ordering keeps them from 60 000 points on (neighbours close in
memory: the regime of the fit's own attractive phase). One
call of ``attractive_forces`` per timing (P converted and checked once),
loops interleaved round-robin, min and median over --repeat rounds; ratios
are taken per round (same load) against the same build's hardware-gather
loop with float64 P (``ratio_to``), and their min and median reported.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.sparse as sp

from _common import interleaved, print_table, write_results


def mnist_pca50():
    from bench_tsne import pca50

    from fastrl.datasets import load_mnist
    X, _ = load_mnist()
    return pca50(X)


def mnist_graph(X):
    from fastrl.manifold.tsne.affinities import joint_probabilities
    return joint_probabilities(X, 30.0)


def fit_ordered(P, X):
    """(P, Y) permuted into the Hilbert order of Y, the t-SNE embedding of X (P's data)."""
    from fastrl.manifold import TSNE
    from fastrl.manifold.tsne.locality import permute_csr, spatial_order
    Y = TSNE(perplexity=30, max_iter=750, n_jobs=2, random_state=0).fit_transform(X)
    perm = spatial_order(Y)
    return permute_csr(P, perm), np.ascontiguousarray(Y[perm], dtype=np.float64)


def random_graph(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.integers(0, n, size=(n, k), dtype=np.int32), axis=1)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    data = np.full(n * k, 1.0 / (n * k))
    return sp.csr_matrix((data, idx.ravel(), indptr), shape=(n, n))


def loops():
    """name -> (cpu_kernel, gather) for the SIMD builds this CPU runs, both ways, and the portable loop."""
    from fastrl import _C
    from fastrl.neighbors.cpu_kernel import supported_cpu_kernels
    out = {}
    for kern in supported_cpu_kernels():
        for gather in ("hw", "scalar"):
            out.setdefault(_C.tsne_attractive_loop(kern, gather), (kern, gather))
    return out


def bench(name: str, P, repeat: int, n_jobs: int, Y=None) -> dict:
    import fastrl
    from fastrl.manifold.tsne.gradients import CSRParts, attractive_forces
    parts = {"float64": CSRParts(P), "float32": CSRParts(P, dtype=np.float32)}
    if Y is None:
        Y = np.random.default_rng(1).normal(scale=10.0, size=(P.shape[0], 2))

    def case(kern, gather, p_dtype):
        def run():
            with fastrl.use_cpu_kernel(kern), fastrl.use_gather(gather):
                return attractive_forces(parts[p_dtype], Y, n_jobs=n_jobs)
        return run

    cases = {}
    for loop, (kern, gather) in loops().items():
        cases[loop] = case(kern, gather, "float64")
        if loop != "base":
            cases[f"{loop} P32"] = case(kern, gather, "float32")
    res = interleaved(cases, repeat=repeat, warmup=1)
    ref = res["base"]["out"]
    hws = [k for k in res if k.endswith("-hw")]

    def hw_of(loop):  # the same build's hardware-gather loop (float64 P); base: the widest build's
        kern = loop.split("-")[0]
        return f"{kern}-hw" if kern != "base" else (hws[-1] if hws else None)
    rows = []
    for loop, r in res.items():
        err = float(np.abs(r["out"] - ref).max() / np.abs(ref).max())
        row = {"graph": name, "n": P.shape[0], "nnz": int(P.nnz), "n_jobs": n_jobs, "loop": loop.split()[0],
               "P_dtype": "float32" if loop.endswith("P32") else "float64",
               "min_ms": 1e3 * r["min_s"], "median_ms": 1e3 * r["median_s"],
               "ns_per_edge": 1e9 * r["min_s"] / P.nnz, "max_rel_diff_vs_base": err,
               "times_ms": [1e3 * t for t in r["times_s"]], "load": r["load"][0]}
        hw = hw_of(loop)
        if hw is not None:
            row["ratio_to"] = hw
            ratios = [t / h for t, h in zip(r["times_s"], res[hw]["times_s"])]
            row["ratio_vs_hw_min"] = min(ratios)
            row["ratio_vs_hw_median"] = statistics.median(ratios)
        rows.append(row)
    return {"rows": rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--n-large", type=int, default=1_000_000)
    ap.add_argument("--k-large", type=int, default=90)
    ap.add_argument("--n-jobs", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--fit-order", action="store_true")
    ap.add_argument("--name", default="tsne_attractive", help="results/<name>.json")
    args = ap.parse_args()
    import fastrl
    from fastrl import _C
    t0 = time.perf_counter()
    X = mnist_pca50()
    graphs = {"mnist70k": mnist_graph(X)}
    print(f"MNIST P: {graphs['mnist70k'].nnz} edges ({time.perf_counter() - t0:.1f} s)", flush=True)
    embeddings = {}
    if args.fit_order:
        graphs["mnist70k_fit"], embeddings["mnist70k_fit"] = fit_ordered(graphs["mnist70k"], X)
    if not args.skip_large:
        graphs[f"random{args.n_large}_k{args.k_large}"] = random_graph(args.n_large, args.k_large)
    rows = []
    for name, P in graphs.items():
        for n_jobs in args.n_jobs:
            rows += bench(name, P, args.repeat, n_jobs, embeddings.get(name))["rows"]
            print_table(rows[-(2 * len(loops()) - 1):], ["graph", "n_jobs", "loop", "P_dtype", "min_ms", "median_ms",
                                                         "ns_per_edge", "ratio_vs_hw_min", "ratio_vs_hw_median"],
                        title=name)
    payload = {"repeat": args.repeat, "auto_gather": _C.gather_mode_name("auto"),
               "auto_loop": fastrl.backend_info()["tsne_attractive"], "rows": rows}
    write_results(args.name, payload)


if __name__ == "__main__":
    main()
