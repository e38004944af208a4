"""Classical embeddings and embedding-quality metrics vs scikit-learn.

Default: MNIST 10k (pixels / 255). Each group runs fastrl and scikit-learn
interleaved in one process (round r: every case once, in order), 3 rounds, up
to 5 while a case's spread (max - min) / min exceeds 10% (groups with no peer:
3 rounds); min and median per case, and the ratios of the minima and of the
medians between cases of the same rounds. Every call runs on ``--threads``
threads (default 2: ``n_jobs`` of both libraries, BLAS / OpenMP pools, torch).
Peak memory: the extra peak RSS of each call (kernel high-water mark, read
outside the timed region), max over rounds. Quality (of the last round's
embedding): trustworthiness@10 in pixel space, 5-fold kNN accuracy@10 and a
linear probe (80/20 split).

Groups (same method unless a comparison says ``same_method: false``):

* PCA: ``pca(X, 2)`` vs ``PCA(2)``.
* MDS (``--subset`` points, distance matrix computed once, untimed): fastrl
  classical MDS vs scikit-learn ``ClassicalMDS``; scikit-learn's SMACOF
  ``MDS`` as a different-method reference.
* Laplacian (PCA-50): both on the same binary kNN graph: fastrl
  ``LaplacianEigenmaps(n_neighbors=k, weights="binary")`` and
  ``SpectralEmbedding(n_neighbors=k + 1)`` (scikit-learn counts the point
  itself); the script checks that the two adjacency matrices agree off the
  diagonal (``graph`` in the JSON). fastrl's default heat weights: one more
  row, no peer.
* SNE (``--subset`` points, PCA-50): fastrl's exact symmetric SNE, no peer.
* t-SNE (PCA-50): fastrl Barnes-Hut vs scikit-learn Barnes-Hut (same
  method), and fastrl FFT (its default above 10k points) vs the same run.

Writes benchmarks/results/classical.json and classical.png (all embeddings
side by side), or ``--out PATH`` (and PATH with .png). ``--quick``: 1000
points, 200-point subset, 300 t-SNE iterations (a smoke test, about a minute
on an idle 2-core machine). scikit-learn missing
stops the run (``--allow-missing-peers``: a banner, fastrl rows only, and
``missing_peers`` in the JSON).

``--laplacian-70k``: the speed acceptance on MNIST 70k (PCA-50):
LaplacianEigenmaps vs SpectralEmbedding with the same n_neighbors, and
trustworthiness on 70k points. Writes benchmarks/results/classical_70k.json.

``--pca``: PCA speed acceptance: ``pca(X, 50)`` against scikit-learn
``PCA(50).fit_transform`` on MNIST 10k x 784, float32 and float64, interleaved
(--repeat rounds, min and median). Writes benchmarks/results/classical_pca.json.

    python benchmarks/bench_classical.py [--n 10000 | --quick] [--groups PCA,t-SNE] [--out PATH]
    python benchmarks/bench_classical.py --laplacian-70k | --pca
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from _common import RESULTS, PeakMemory, PeakRSS, interleaved, missing_peer, print_table, write_results

CUDA = torch.cuda.is_available()
GROUPS = ("PCA", "MDS", "Laplacian", "SNE", "t-SNE")
ROUNDS, MAX_ROUNDS, MAX_SPREAD, SETTLE_S = 3, 5, 0.10, 0.25
PREWARM_ROWS = 300  # expensive groups: one call per case on this many rows before the timed rounds


def timed(fn):
    """(result, seconds, peak MiB) of one call: embeddings are too slow to repeat."""
    with PeakMemory(cuda=False) as pm:
        t0 = time.perf_counter()
        out = fn()
        if CUDA:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    return out, dt, pm.peak_mib


def sklearn_classes(allow_missing: bool):
    """scikit-learn's estimators by name (None where missing) and the missing ones' reasons."""
    names = {"PCA": "sklearn.decomposition", "ClassicalMDS": "sklearn.manifold", "MDS": "sklearn.manifold",
             "SpectralEmbedding": "sklearn.manifold", "TSNE": "sklearn.manifold"}
    found, missing = {}, {}
    for name, module in names.items():
        try:
            found[name] = getattr(__import__(module, fromlist=[name]), name)
        except (ImportError, AttributeError) as exc:
            found[name] = None
            missing[f"sklearn {name}"] = missing_peer(f"scikit-learn {name}", f"{type(exc).__name__}: {exc}",
                                                      allow_missing, hint="pip install scikit-learn>=1.8")
    return found, missing


def build_groups(X, Z50, sub, D, sk, args):
    """The comparison groups ``(name, data, rows, cases, pairs)``: data are
    points, or the subset's distance matrix for MDS; rows: the indices of X
    used (None: all); pairs ``(fastrl case, peer case, same method)``.
    A case is ``key -> dict(impl, method, params, fn)``, ``fn(data)`` returns
    the embedding; ``fits`` collects the fitted Laplacian estimators."""
    from fastrl.manifold import TSNE, LaplacianEigenmaps, classical_mds, pca

    th, seed, k = args.threads, args.seed, args.n_neighbors
    fits = {}

    def fit(key, est):
        def run(A):
            fits[key] = est
            return est.fit_transform(A)
        return run

    def case(impl, method, params, fn):
        return {"impl": impl, "method": method, "params": params, "fn": fn}

    def tsne_case(impl, cls, label, **kw):  # verbose=1: summary lines (final KL, FFT fallbacks), no extra work
        kw.update(random_state=seed, n_jobs=th, max_iter=args.tsne_iter, verbose=1)
        params = "TSNE(2, " + ", ".join(f"{name}={value!r}" for name, value in kw.items()) + ")"
        return case(impl, label, params, cls and (lambda A: cls(2, **kw).fit_transform(A)))

    lap = LaplacianEigenmaps
    groups = [
        ("PCA", X, None, {
            "fastrl": case("fastrl", "PCA", "pca(X, 2)",
                           lambda A: pca(torch.from_numpy(A).cuda() if CUDA else A, 2)),
            "sklearn": case("sklearn", "PCA", f"PCA(2, random_state={seed})",
                            sk["PCA"] and (lambda A: sk["PCA"](2, random_state=seed).fit_transform(A)))},
         [("fastrl", "sklearn", True)]),
        ("MDS", D, sub, {
            "fastrl cMDS": case("fastrl", "classical MDS", "classical_mds(D, n_components=2)",
                                lambda A: classical_mds(A, n_components=2)),
            "sklearn cMDS": case("sklearn", "classical MDS", "ClassicalMDS(2, metric='precomputed')",
                                 sk["ClassicalMDS"] and (lambda A: sk["ClassicalMDS"](
                                     2, metric="precomputed").fit_transform(A))),
            "sklearn SMACOF": case("sklearn", "metric MDS (SMACOF)",
                                   f"MDS(2, metric='precomputed', init='random', n_init=1, random_state={seed})",
                                   sk["MDS"] and (lambda A: sk["MDS"](
                                       2, metric="precomputed", init="random", n_init=1,
                                       random_state=seed).fit_transform(A)))},
         [("fastrl cMDS", "sklearn cMDS", True), ("fastrl cMDS", "sklearn SMACOF", False)]),
        ("Laplacian", Z50, None, {
            "fastrl": case("fastrl", "Laplacian eigenmaps, binary kNN graph",
                           f"LaplacianEigenmaps(2, n_neighbors={k}, weights='binary', n_jobs={th})",
                           lambda A: fit("fastrl", lap(2, k, weights="binary", n_jobs=th))(A)),
            "sklearn": case("sklearn", "spectral embedding, binary kNN graph",
                            f"SpectralEmbedding(2, n_neighbors={k + 1}, random_state={seed}, n_jobs={th})",
                            sk["SpectralEmbedding"] and (lambda A: fit("sklearn", sk["SpectralEmbedding"](
                                2, n_neighbors=k + 1, random_state=seed, n_jobs=th))(A))),
            "fastrl heat": case("fastrl", "Laplacian eigenmaps, heat-kernel kNN graph (fastrl default)",
                                f"LaplacianEigenmaps(2, n_neighbors={k}, n_jobs={th})",
                                lambda A: lap(2, k, n_jobs=th).fit_transform(A))},
         [("fastrl", "sklearn", True)]),
        ("SNE", Z50[sub], sub, {
            "fastrl": tsne_case("fastrl", TSNE, "symmetric SNE (exact)", kernel="gaussian", method="exact")},
         []),
        ("t-SNE", Z50, None, {
            "fastrl BH": tsne_case("fastrl", TSNE, "t-SNE, Barnes-Hut (angle 0.5)", method="barnes_hut"),
            "fastrl FFT": tsne_case("fastrl", TSNE, "t-SNE, FFT interpolation", method="fft"),
            "sklearn BH": tsne_case("sklearn", sk["TSNE"], "t-SNE, Barnes-Hut (angle 0.5)", method="barnes_hut")},
         [("fastrl BH", "sklearn BH", True), ("fastrl FFT", "sklearn BH", False)]),
    ]
    keep = [g for g in groups if g[0] in args.groups]
    return [(name, data, idx, {key: c for key, c in cases.items() if c["fn"]},
             [p for p in pairs if cases[p[0]]["fn"] and cases[p[1]]["fn"]])
            for name, data, idx, cases, pairs in keep], fits


def _small(data, is_distance: bool):
    m = min(PREWARM_ROWS, len(data))
    return data[:m, :m] if is_distance else data[:m]


def _np(E):
    return np.asarray(E.cpu() if isinstance(E, torch.Tensor) else E, dtype=np.float32)


def same_graph(fits: dict, k: int) -> dict:
    """Compare the two Laplacian graphs off the diagonal (scikit-learn's has self-loops, which its Laplacian drops)."""
    import scipy.sparse as sp

    A = sp.csr_matrix(fits["fastrl"].affinity_matrix_, dtype=np.float64)
    B = sp.csr_matrix(fits["sklearn"].affinity_matrix_, dtype=np.float64)
    A, B = (M - sp.diags(M.diagonal()) for M in (A, B))
    A.eliminate_zeros()
    B.eliminate_zeros()
    diff = (A - B).tocsr()
    diff.eliminate_zeros()
    return {"fastrl": f"symmetrised {k}-NN graph, self excluded, binary weights, W = (A + A^T) / 2",
            "sklearn": f"kneighbors_graph(n_neighbors={k + 1}, include_self=True), W = (A + A^T) / 2; "
                       "self-loops ignored by its Laplacian",
            "edges_fastrl": int(A.nnz), "edges_sklearn": int(B.nnz), "entries_differ": int(diff.nnz),
            "max_abs_weight_diff": float(abs(diff).max()) if diff.nnz else 0.0, "same_graph": diff.nnz == 0}


def tsne_log(text: str) -> dict:
    """Final KL divergence and FFT-to-Barnes-Hut fallbacks from a t-SNE's verbose output (last round)."""
    import re

    out = {}
    kl = re.findall(r"KL divergence after \d+ iterations: ([-+0-9.eE]+)", text)
    if kl:
        out["kl_divergence"] = float(kl[-1])
    bh = re.search(r"Barnes-Hut repulsion in (\d+) of (\d+) gradient evaluations", text)
    if bh:
        out["fft_evals_run_as_barnes_hut"] = f"{bh.group(1)} of {bh.group(2)}"
    return out


def run_group(name, data, idx, cases, pairs, X, y, seed):
    """Interleaved rounds of one group; rows (with quality) and comparisons."""
    from fastrl.metrics import knn_accuracy, linear_probe, trustworthiness

    caught, logs = {key: set() for key in cases}, {}

    def call(key, fn, A, prefix=""):
        def run():  # the call's warnings and stdout (t-SNE's verbose summary), kept for the JSON
            buf = io.StringIO()
            with warnings.catch_warnings(record=True) as w, contextlib.redirect_stdout(buf):
                warnings.simplefilter("always")
                out = fn(A)
            caught[key].update(f"{prefix}{x.category.__name__}: {x.message}" for x in w)
            logs[key] = buf.getvalue()
            return out
        return run

    expensive = name in ("MDS", "SNE", "t-SNE")
    if expensive:  # too slow to repeat: warm the code paths on a few rows
        for key, c in cases.items():
            call(key, c["fn"], _small(data, name == "MDS"), f"warm-up on {PREWARM_ROWS} rows: ")()
    warmup = 0 if expensive else 1
    res = interleaved({key: call(key, c["fn"], data) for key, c in cases.items()}, repeat=ROUNDS,
                      warmup=warmup, sync=torch.cuda.synchronize if CUDA else None, settle_s=SETTLE_S,
                      max_repeat=MAX_ROUNDS if pairs else ROUNDS, max_spread=MAX_SPREAD, peak_memory=True)
    Xr, yr = (X, y) if idx is None else (X[idx], y[idx])
    n_tr = int(0.8 * len(yr))
    rows, embeddings = [], {}
    for key, c in cases.items():
        r = res[key]
        E = embeddings[key] = _np(r["out"])
        row = {"group": name, "case": key, "impl": c["impl"], "method": c["method"], "params": c["params"],
               "N": len(yr), "rounds": r["rounds"], "warmup_rounds": warmup, "min_s": r["min_s"],
               "median_s": r["median_s"], "spread": r["spread"], "times_s": r["times_s"], "load": r["load"],
               "peak_mib": max(r["peak_mib"]), "peak_mib_rounds": r["peak_mib"],
               "trust@10": trustworthiness(Xr, E, 10),
               "knn_acc@10": knn_accuracy(E, yr, 10, cv=5, random_state=seed),
               "probe_acc": linear_probe(E[:n_tr], yr[:n_tr], E[n_tr:], yr[n_tr:]),
               "warnings": sorted(caught[key]), **tsne_log(logs.get(key, ""))}
        if "method='fft'" in c["params"]:
            row.setdefault("fft_evals_run_as_barnes_hut", "0")
        rows.append(row)
    comps = [{"group": name, "fastrl": a, "peer": b, "same_method": same,
              "speedup_min": res[b]["min_s"] / res[a]["min_s"],
              "speedup_median": res[b]["median_s"] / res[a]["median_s"],
              "rounds": res[a]["rounds"], "spread": max(res[a]["spread"], res[b]["spread"])}
             for a, b, same in pairs]
    return rows, comps, embeddings


def run_10k(args):
    from scipy.linalg import subspace_angles
    from scipy.spatial.distance import cdist

    from fastrl.datasets import load_mnist
    from fastrl.manifold import pca
    from fastrl.plot import compare

    t_start = time.perf_counter()
    X, y = load_mnist(n=args.n)
    X = X.astype(np.float32) / 255.0
    y = y.astype(np.int64)
    Z50 = pca(X, 50)
    sub = np.sort(np.random.default_rng(args.seed).choice(len(X), min(args.subset, len(X)), replace=False))
    D = cdist(X[sub].astype(np.float64), X[sub].astype(np.float64)) if "MDS" in args.groups else None
    sk, missing = sklearn_classes(args.allow_missing_peers)
    rows, comps, panels, panel_labels, extra, group_s = [], [], {}, {}, {}, {}
    groups, fits = build_groups(X, Z50, sub, D, sk, args)
    for name, data, idx, cases, pairs in groups:
        t_group = time.perf_counter()
        g_rows, g_comps, embeddings = run_group(name, data, idx, cases, pairs, X, y, args.seed)
        group_s[name] = time.perf_counter() - t_group
        rows += g_rows
        comps += g_comps
        print_table(g_rows, ["case", "method", "N", "rounds", "min_s", "median_s", "spread", "peak_mib",
                             "trust@10", "knn_acc@10", "probe_acc"], title=f"{name} ({g_rows[0]['N']} points)")
        if g_comps:
            print_table(g_comps, ["fastrl", "peer", "same_method", "speedup_min", "speedup_median", "rounds",
                                  "spread"])
        if name == "Laplacian" and "sklearn" in fits:
            extra["graph"] = same_graph(fits, args.n_neighbors)
            extra["graph"]["max_principal_angle_rad"] = float(np.max(subspace_angles(
                embeddings["fastrl"].astype(np.float64), embeddings["sklearn"].astype(np.float64))))
            print(f"Laplacian graphs: {extra['graph']}")
        for row in g_rows:
            for w in row["warnings"]:
                print(f"warning in {name} / {row['case']}: {w}")
            label = f"{name}: {row['case']} ({row['min_s']:.2f} s)"
            panels[label] = embeddings[row["case"]]
            panel_labels[label] = y if idx is None else y[idx]
    probe = PeakRSS().start()
    probe.stop()
    out = Path(args.out) if args.out else RESULTS / "classical.json"
    png = out.with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    compare(panels, panel_labels, png, ncols=4,
            suptitle=f"MNIST {args.n} (MDS and SNE: {len(sub)}-point subset); min time of the rounds")
    print(f"wrote {png}")
    payload = {"dataset": f"MNIST first {args.n} (pixels / 255)", "N": args.n, "subset": len(sub),
               "n_neighbors": args.n_neighbors, "threads": args.threads, "seed": args.seed,
               "rounds_rule": f"{ROUNDS} interleaved rounds, up to {MAX_ROUNDS} while a case's spread "
                              f"(max - min) / min > {MAX_SPREAD:.0%}; groups with no peer: {ROUNDS}",
               "timing": f"PCA, Laplacian: 1 untimed warm-up round; MDS, SNE, t-SNE: one untimed call per case "
                         f"on {PREWARM_ROWS} rows; {SETTLE_S} s pause before every call; MDS times exclude the "
                         "distance matrix (computed once)",
               "peak_memory": f"extra peak RSS per call ({probe.method}, read outside the timed region), "
                              "max over rounds",
               "speedup": "peer time / fastrl time of the same rounds (> 1: fastrl faster), of the minima and "
                          "of the medians",
               "rows": rows, "comparisons": comps, **extra, "missing_peers": missing,
               "group_s": group_s, "total_s": time.perf_counter() - t_start,
               "tsne_iter": args.tsne_iter,
               "notes": "Laplacian/SNE/t-SNE run on PCA-50; trustworthiness in pixel space. t-SNE: both "
                        "libraries exact kNN (3 x perplexity neighbours), perplexity 30, PCA init, "
                        f"{args.tsne_iter} iterations (250 exaggerated)."}
    write_results("classical", payload, path=out)


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
            write_results("classical_70k", out, path=args.out)
            return
        child.join()
        angle = float(np.max(subspace_angles(E.astype(np.float64), R.astype(np.float64))))
        print(f"sklearn SpectralEmbedding (n_neighbors={k + 1} incl. self): {t_sk:.2f} s, {mib_sk:.0f} MiB; "
              f"fastrl/sklearn time = {t_fast / t_sk:.3f}; max principal angle {angle:.2e} rad")
        out.update(sklearn_spectral_s=t_sk, sklearn_spectral_peak_mib=mib_sk, time_ratio_fastrl_over_sklearn=t_fast / t_sk,
                   max_principal_angle_rad=angle)
    write_results("classical_70k", out, path=args.out)


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
                                    "settle_s": 0.25, "rows": rows}, path=args.out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=None, help="MNIST points (default 10000)")
    p.add_argument("--subset", type=int, default=None, help="points for MDS and exact SNE (default 2000)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1000 points, 200-point subset, 300 t-SNE iterations")
    p.add_argument("--tsne-iter", type=int, default=None, help="SNE / t-SNE iterations (default 1000)")
    p.add_argument("--groups", default=",".join(GROUPS), help=f"comma-separated subset of {','.join(GROUPS)}")
    p.add_argument("--threads", type=int, default=2,
                   help="10k mode: threads for every call, both libraries (default 2)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/<name>.json)")
    p.add_argument("--allow-missing-peers", action="store_true",
                   help="go on when scikit-learn does not load (a banner, missing_peers in the JSON)")
    p.add_argument("--n-neighbors", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--laplacian-70k", action="store_true", help="MNIST 70k speed acceptance instead")
    p.add_argument("--pca", action="store_true", help="PCA speed acceptance (10k x 784 -> 50) instead")
    p.add_argument("--repeat", type=int, default=5, help="--pca: interleaved rounds")
    p.add_argument("--skip-sklearn", action="store_true", help="70k mode: time fastrl only")
    p.add_argument("--sklearn-timeout", type=float, default=None,
                   help="70k mode: stop SpectralEmbedding after this many seconds (reports a lower bound)")
    args = p.parse_args()
    args.n = args.n or (1000 if args.quick else 10_000)
    args.subset = args.subset or (200 if args.quick else 2000)
    args.tsne_iter = args.tsne_iter or (300 if args.quick else 1000)
    args.groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    unknown = sorted(set(args.groups) - set(GROUPS))
    if unknown:
        p.error(f"--groups: unknown {unknown}; choose from {list(GROUPS)}")
    if args.pca:
        run_pca(args)
    elif args.laplacian_70k:
        run_70k(args)
    else:
        torch.set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits
            limits = threadpool_limits(args.threads)
        except ImportError:  # pragma: no cover - scikit-learn depends on it
            limits = contextlib.nullcontext()
        with limits:
            run_10k(args)


if __name__ == "__main__":
    main()
