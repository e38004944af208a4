"""t-SNE benchmark: fastrl against openTSNE (FFT and Barnes-Hut) and scikit-learn.

    python benchmarks/bench_tsne.py              # MNIST 70k + 20k subset
    python benchmarks/bench_tsne.py --n 1000000  # synthetic mixture, fastrl only
    python benchmarks/bench_tsne.py --scaling    # 70k .. 10M mixture points -> results/tsne_scaling.json
    options: --skip-bh (no openTSNE Barnes-Hut on 70k), --skip-sklearn, --n-jobs

Every run uses perplexity 30, 750 iterations (250 early exaggeration), PCA-50
input. On MNIST, fastrl and the openTSNE runs are interleaved round-robin
(--repeat rounds, default 3; min and median wall time; results rewritten after
every round). Reported: wall time (affinities included), peak extra RSS, the
library's own final KL, a common KL (same fastrl P for everyone; the
normaliser Z by Barnes-Hut with theta=0.1), 10-NN accuracy of the embedding
(5-fold CV) and trustworthiness@10 on a 5k subsample. fastrl rows add
``phases``: ``TSNE.timings_`` (seconds per phase, see
:mod:`fastrl.manifold.tsne.timing`) of the fastest round.

``--scaling`` (``--sizes``, default 70k, 200k, 1M, 3M, 10M points of the
50-d mixture; ``--iter``, default 750) runs each size in a fresh subprocess
(so that the peak RSS is that run's): fastrl with perplexity 30, from 3M
points on perplexity 10 (k = 30 neighbours: the kNN graph and P stay within
memory), and openTSNE (FFT, same settings) at ``--scaling-peer-n`` (200k).
Each row has the phase times, the time per iteration, the peak RSS and the
KL; ``tsne_scaling.png`` plots the time per iteration against N (log-log)
with a linear reference through the smallest N.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import (RESULTS, PeakMemory, PeakRSS, _vm_hwm_bytes, code_version, cpu_identity, cpu_label, load_avg,
                     print_table, write_results)


def pca50(X: np.ndarray) -> np.ndarray:
    from fastrl.cli.tsne import pca_reduce
    return pca_reduce(np.asarray(X, dtype=np.float32), 50)


def mixture(n: int, seed: int = 0):
    """50-d Gaussian mixture with 100 clusters."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4.0, size=(100, 50)).astype(np.float32)
    y = rng.integers(0, 100, size=n)
    X = np.empty((n, 50), dtype=np.float32)
    for s in range(0, n, 1 << 20):  # chunks: no (n, 50) float64 temporary (the same numbers)
        e = min(n, s + (1 << 20))
        X[s:e] = centers[y[s:e]] + rng.normal(size=(e - s, 50)).astype(np.float32)
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
        E, kl, extra = fn(X)
    wall = time.perf_counter() - t0
    row = {"library": name, "n": len(X), "wall_s": wall, "peak_rss_mib": pm.peak_mib, "kl_own": kl, **extra}
    row.update(quality(X, E, y, P, rng))
    print(row, flush=True)
    rows.append(row)
    embeddings[name] = E
    return row


def fastrl_fn(n_jobs, device=None, kernel=None, gather=None):
    """fastrl's fit; ``kernel``/``gather`` force a CPU kernel and gather mode
    (``use_cpu_kernel`` / ``use_gather``; None: the automatic choice)."""
    def fn(X):
        import contextlib

        import fastrl
        from fastrl.manifold import TSNE
        with contextlib.ExitStack() as stack:
            if kernel is not None:
                stack.enter_context(fastrl.use_cpu_kernel(kernel))
            if gather is not None:
                stack.enter_context(fastrl.use_gather(gather))
            info = fastrl.backend_info()
            t = TSNE(perplexity=30, max_iter=750, n_jobs=n_jobs, random_state=0, device=device)
            E = t.fit_transform(X)
        return E, t.kl_divergence_, {"phases": t.timings_, "cpu_kernel": info["cpu_kernel"],
                                     "tsne_attractive": info["tsne_attractive"]}
    return fn


def kernel_variants(n_jobs) -> list:
    """(name, fn) of fastrl forced onto every attractive loop this CPU has
    besides the automatic one: each SIMD kernel with hardware gathers and
    with scalar loads (the gather-free loop), and the portable base kernel."""
    import fastrl
    from fastrl.neighbors.cpu_kernel import supported_cpu_kernels
    auto = fastrl.backend_info()["tsne_attractive"]
    out = []
    for kern in supported_cpu_kernels():
        for gather in ((None,) if kern == "base" else ("hw", "scalar")):
            with fastrl.use_cpu_kernel(kern), fastrl.use_gather(gather or "auto"):
                loop = fastrl.backend_info()["tsne_attractive"]
            if loop != auto and loop not in [n for n, _ in out]:
                out.append((loop, fastrl_fn(n_jobs, kernel=kern, gather=gather)))
    return [(f"fastrl[{loop}]", fn) for loop, fn in out]


def opentsne_fn(method, n_jobs):
    def fn(X):
        from openTSNE import TSNE
        E = TSNE(perplexity=30, n_iter=500, early_exaggeration_iter=250, negative_gradient_method=method,
                 n_jobs=n_jobs, random_state=0).fit(X)
        return np.asarray(E), float(E.kl_divergence), {}
    return fn


def sklearn_fn(n_jobs):
    def fn(X):
        import inspect

        from sklearn.manifold import TSNE
        iters = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
        t = TSNE(perplexity=30, init="pca", learning_rate="auto", n_jobs=n_jobs, random_state=0, **{iters: 750})
        E = t.fit_transform(X)
        return E, float(t.kl_divergence_), {}
    return fn


def run_interleaved(libs, X, y, P, rng, repeat, emb, on_round=None):
    """Round-robin ``repeat`` rounds of every (name, fn) in ``libs`` (same load
    for all); quality measured on each library's first embedding (every round
    uses the same seed)."""
    times = {name: [] for name, _ in libs}
    loads = {name: [] for name, _ in libs}
    last, extras = {}, {}
    rows = []
    for r in range(repeat):
        for name, fn in libs:
            print(f"-- round {r + 1}/{repeat}: {name} ...", flush=True)
            loads[name].append(load_avg())
            t0 = time.perf_counter()
            with PeakMemory() as pm:
                E, kl, extra = fn(X)
            times[name].append(time.perf_counter() - t0)
            last[name] = (E, kl, pm.peak_mib)
            if times[name][-1] <= min(times[name]):  # the phases of the fastest round
                extras[name] = extra
            print(f"   {times[name][-1]:.1f} s", flush=True)
        if r == 0:
            qual = {}
            for name, _ in libs:
                qual[name] = quality(X, last[name][0], y, P, rng)
                emb[name] = last[name][0]
        rows = [{"library": name, "n": len(X), "wall_s": float(np.min(times[name])),
                 "wall_median_s": float(np.median(times[name])), "times_s": times[name], "load": loads[name],
                 "peak_rss_mib": last[name][2], "kl_own": last[name][1], **qual[name], **extras[name]}
                for name, _ in libs]
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


# ------------------------------------------------------------------ --scaling
SCALING_SIZES = "70000,200000,1000000,3000000,10000000"
LARGE_N = 3_000_000  # from here on: the large-data settings (perplexity 10)
ITER_PHASES = ("attractive", "repulsion", "gradient", "update", "reorder", "checks")  # per-iteration phases


def scaling_settings(n: int, n_iter: int, n_jobs: int) -> dict:
    """The settings of a --scaling run of ``n`` points (stated in each row)."""
    large = n >= LARGE_N
    return {"perplexity": 10.0 if large else 30.0, "k_neighbors": 30 if large else 90, "max_iter": n_iter,
            "early_exaggeration_iter": min(250, n_iter // 3), "n_jobs": n_jobs, "init": "pca",
            "method": "fft", "large_data": large, "data": "50-d Gaussian mixture, 100 clusters (seed 0)"}


class PhasePeaks:
    """Peak RSS of each phase a fastrl fit announces ("init", "knn",
    "affinities", "early", "final"): the kernel's high-water mark (VmHWM) read,
    then reset, at each change of phase (Linux; ``ok`` False where the reset is refused)."""

    def __init__(self):
        self.peaks, self.name, self.ok = {}, "setup", True

    def switch(self, name: str) -> None:
        if not self.ok:
            return
        try:
            hwm = _vm_hwm_bytes()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.ok = False
            return
        self.peaks[self.name] = max(self.peaks.get(self.name, 0), hwm)
        self.name = name

    def install(self):
        """Announce fastrl's t-SNE phases to ``switch`` (wraps its progress_bar hook)."""
        import fastrl.manifold.tsne.tsne as mod
        orig = mod.progress_bar

        def progress_bar(*args):
            bar, phase = orig(*args)
            return bar, (lambda name: (self.switch(name), phase(name))[1])
        mod.progress_bar = progress_bar


def scaling_worker(library: str, n: int, n_iter: int, n_jobs: int) -> dict:
    """One --scaling run in this (fresh) process: a row."""
    cfg = scaling_settings(n, n_iter, n_jobs)
    X, _ = mixture(n)
    ee, rest = cfg["early_exaggeration_iter"], n_iter - cfg["early_exaggeration_iter"]
    peaks = PhasePeaks()
    if library == "fastrl":  # imported outside the timed block
        from fastrl.manifold import TSNE
        peaks.install()
    else:
        from openTSNE import TSNE
    with PeakRSS() as pm:
        t0 = time.perf_counter()
        if library == "fastrl":
            t = TSNE(perplexity=cfg["perplexity"], max_iter=n_iter, early_exaggeration_iter=ee, method="fft",
                     n_jobs=n_jobs, random_state=0, verbose=1)
            t.fit(X)
            phases, kl, iters = t.timings_, t.kl_divergence_, t.timings_["n_iter"]
            loop_s = sum(phases.get(p, 0.0) for p in ITER_PHASES)
        else:  # openTSNE's own fit, split into its affinities + init and its two optimisation phases
            t = TSNE(perplexity=cfg["perplexity"], n_iter=rest, early_exaggeration_iter=ee, n_jobs=n_jobs,
                     negative_gradient_method="fft", random_state=0)
            tic = time.perf_counter()
            E = t.prepare_initial(X)
            phases = {"affinities_init": time.perf_counter() - tic}
            for name, kw in (("early", dict(n_iter=ee, exaggeration=t.early_exaggeration,
                                             momentum=t.initial_momentum)),
                             ("final", dict(n_iter=rest, exaggeration=t.exaggeration, momentum=t.final_momentum))):
                tic = time.perf_counter()
                E = E.optimize(inplace=True, **kw) if kw["n_iter"] else E
                phases[name] = time.perf_counter() - tic
            kl, iters = float(E.kl_divergence), n_iter
            loop_s = phases["early"] + phases["final"]
        total = time.perf_counter() - t0
        peaks.switch("end")
    row = {"library": library, "n": n, "total_s": total, "per_iter_s": loop_s / max(iters, 1), "n_iter": iters,
           "peak_rss_gib": _vm_hwm_bytes() / 2**30, "fit_peak_extra_gib": pm.peak_mib / 1024, "kl": float(kl),
           "phases": phases, "settings": cfg, "load": load_avg(), "cpu": cpu_identity()["cpu_label"],
           "code": code_version()}
    if peaks.ok and len(peaks.peaks) > 1:  # the high-water mark was reset at each phase: the peak is their max
        row["peak_rss_by_phase_gib"] = {k: v / 2**30 for k, v in peaks.peaks.items() if k != "setup"}
        row["peak_rss_gib"] = max(peaks.peaks.values()) / 2**30
        row["fit_peak_extra_gib"] = max(row["peak_rss_by_phase_gib"].values()) - getattr(pm, "_base", 0) / 2**30
    return row


def _run_worker(library: str, n: int, args) -> dict:
    """``scaling_worker`` in a fresh subprocess (its own peak RSS); a row with ``error`` if it fails."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env.setdefault(var, str(args.n_jobs))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--scaling-worker", library, "--n", str(n),
               "--iter", str(args.iter), "--n-jobs", str(args.n_jobs), "--worker-out", str(out)]
        print(f"-- {library}, N={n}: {' '.join(cmd[1:])}", flush=True)
        proc = subprocess.run(cmd, env=env)
        if proc.returncode == 0 and out.exists():
            row = json.loads(out.read_text())
        else:
            row = {"library": library, "n": n, "error": f"worker exited with status {proc.returncode}",
                   "settings": scaling_settings(n, args.iter, args.n_jobs)}
    print({k: v for k, v in row.items() if k not in ("settings", "phases")}, flush=True)
    return row


def scaling_plot(rows: list, path: Path) -> None:
    """Log-log time per iteration against N, a linear reference through fastrl's smallest N."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5))
    cpus = sorted({r.get("cpu", "") for r in rows})  # a series per library and CPU
    for lib, marker in (("fastrl", "o"), ("openTSNE", "s")):
        for cpu, ls in zip(cpus, ("-", ":", "-.", "--")):
            pts = sorted((r["n"], r["per_iter_s"]) for r in rows
                         if r["library"] == lib and r.get("cpu", "") == cpu and "per_iter_s" in r)
            if pts:
                where = f", {cpu.split(' (')[0]}" if len(cpus) > 1 else ""
                ax.plot(*zip(*pts), marker=marker, ls=ls, label=f"{lib} (FFT{where})")
    ref = sorted((r["n"], r["per_iter_s"]) for r in rows
                 if r["library"] == "fastrl" and r.get("cpu", "") == cpus[0] and "per_iter_s" in r)
    if ref:
        ns = np.array([n for n, _ in ref], dtype=float)
        ax.plot(ns, ref[0][1] * ns / ns[0], "k--", lw=1, label=f"linear in N (through N={int(ns[0])})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (points)")
    ax.set_ylabel("time per iteration (s)")
    ax.set_title("t-SNE scaling, 50-d mixture")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def _earlier_rows(out: Path) -> list[dict]:
    """The rows of an existing scaling file, each marked with when it ran (``reused_from``)."""
    if not out.exists():
        return []
    old = json.loads(out.read_text())
    m = old.get("machine", {})
    cpu = cpu_label(m, m.get("cpu_flags", []))  # rows from before rows named their CPU ran on the file's machine
    return [dict(r, reused_from=r.get("reused_from", m.get("date")), cpu=r.get("cpu", cpu)) for r in old["runs"]]


def _earlier_machines(out: Path, labels: set) -> dict:
    """{cpu label: machine info} of the earlier file's machines among ``labels``
    (kept rows from another CPU keep their machine's record)."""
    if not out.exists():
        return {}
    old = json.loads(out.read_text())
    m = old.get("machine", {})
    known = {**old.get("machines", {}), cpu_label(m, m.get("cpu_flags", [])): m}
    return {k: v for k, v in known.items() if k in labels}


def run_scaling(args) -> None:
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()} | ({args.scaling_peer_n} - {0}))
    out = Path(args.out) if args.out else RESULTS / "tsne_scaling.json"
    payload = {"sizes": sizes, "iter": args.iter, "n_jobs": args.n_jobs, "peer_n": args.scaling_peer_n,
               "large_n": LARGE_N, "subprocess_per_run": True, "runs": []}
    if args.add:  # only the sizes given, no peer unless listed
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    # rows of the existing file that stay (each says when it ran: "reused_from"): the peer's
    # with --reuse-peer (this CPU's), with --add every other size's and every other CPU's
    here = cpu_identity()["cpu_label"]
    earlier = [r for r in _earlier_rows(out) if (args.add and (r["n"] not in sizes or r["cpu"] != here))
               or (args.reuse_peer and r["library"] == "openTSNE" and r["n"] in sizes and r["cpu"] == here)]
    kept = {r["n"]: r for r in earlier if r["n"] in sizes and r["cpu"] == here}
    payload["machines"] = _earlier_machines(out, {r["cpu"] for r in earlier} - {here})
    earlier = [r for r in earlier if r["n"] not in sizes or r["cpu"] != here]
    if args.add:
        payload["sizes"] = sorted(set(payload["sizes"]) | {r["n"] for r in earlier} | set(sizes))
    for n in sizes:
        payload["runs"].append(_run_worker("fastrl", n, args))
        if n == args.scaling_peer_n:
            payload["runs"].append(kept[n] if n in kept else _run_worker("openTSNE", n, args))
        runs = payload["runs"]
        payload["runs"] = sorted(earlier + runs, key=lambda r: r["n"])
        # peer_n is this run's; with --add the file also keeps earlier peer rows at other sizes
        payload["peer_sizes"] = sorted({r["n"] for r in payload["runs"] if r["library"] == "openTSNE"})
        write_results("tsne_scaling", payload, path=out)  # after every run: what has run is kept
        payload["runs"] = runs
    payload["runs"] = sorted(earlier + payload["runs"], key=lambda r: r["n"])
    cols = ["library", "n", "total_s", "per_iter_s", "peak_rss_gib", "kl", "error"]
    print_table(payload["runs"], cols, "t-SNE scaling")
    scaling_plot(payload["runs"], out.with_suffix(".png"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=None, help="synthetic Gaussian mixture of this size (fastrl only)")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--skip-bh", action="store_true")
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--subset", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds on MNIST (min and median)")
    ap.add_argument("--kernels", action="store_true",
                    help="MNIST: also fastrl forced onto each other CPU kernel / gather mode of this CPU")
    ap.add_argument("--scaling", action="store_true", help="time per iteration vs N (a subprocess per N)")
    ap.add_argument("--sizes", default=SCALING_SIZES, help="--scaling: comma-separated N")
    ap.add_argument("--iter", type=int, default=750, help="--scaling: iterations (a third early exaggeration)")
    ap.add_argument("--scaling-peer-n", type=int, default=200000, help="--scaling: openTSNE at this N (0: none)")
    ap.add_argument("--add", action="store_true",
                    help="--scaling: run only --sizes (no peer unless listed) and keep the existing file's rows of "
                         "the other sizes (marked reused_from)")
    ap.add_argument("--reuse-peer", action="store_true",
                    help="--scaling: keep the openTSNE row of the existing results file instead of rerunning it "
                         "(7 min at 200k on 2 cores); the row records reused_from")
    ap.add_argument("--out", default=None, help="results JSON (default results/tsne.json; --scaling: "
                    "results/tsne_scaling.json); another path also skips the MNIST plot")
    ap.add_argument("--scaling-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scaling_worker:
        try:
            row = scaling_worker(args.scaling_worker, args.n, args.iter, args.n_jobs)
        except MemoryError as exc:  # e.g. fastrl's InsufficientMemoryError: the row says why
            row = {"library": args.scaling_worker, "n": args.n, "error": f"{type(exc).__name__}: {exc}",
                   "settings": scaling_settings(args.n, args.iter, args.n_jobs)}
        Path(args.worker_out).write_text(json.dumps(row, default=float))
        return
    if args.scaling:
        run_scaling(args)
        return
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
                     "peak_rss_mib": pm.peak_mib, "kl_own": t.kl_divergence_, "n_iter": int(t.n_iter_),
                     "phases": t.timings_})
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
    if args.kernels:  # every other attractive loop of this CPU, forced, in the same rounds
        libs += kernel_variants(args.n_jobs)
    if torch.cuda.is_available():  # GPU mode: Triton gradient kernels on the device
        libs.append(("fastrl-cuda", fastrl_fn(args.n_jobs, device="cuda")))
    libs.append(("openTSNE-fft", opentsne_fn("fft", args.n_jobs)))
    if not args.skip_bh:
        libs.append(("openTSNE-bh", opentsne_fn("bh", args.n_jobs)))

    def all_ratios(rows):
        out = {}
        for lib in [n for n, _ in libs if n.startswith("fastrl")]:
            out.update(ratios(rows, "openTSNE-fft", lib))
        return {**out, **ratios(rows, "openTSNE-bh")}

    def partial(rows):  # keep what has run if the benchmark is stopped
        write_results("tsne", {**payload, "mnist70k": rows, "partial": True, "mnist70k_ratios": all_ratios(rows)},
                      path=args.out)

    rows = run_interleaved(libs, X, y, P, rng, args.repeat, emb, on_round=partial)
    cols = cols[:3] + ["wall_median_s"] + cols[3:]
    print_table(rows, cols, f"MNIST 70k (PCA-50), min and median of {args.repeat} interleaved rounds")
    payload["mnist70k"] = rows
    payload["mnist70k_ratios"] = all_ratios(rows)
    print(payload["mnist70k_ratios"])
    from fastrl.plot import embedding
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.out is None:  # the README's plot
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
    write_results("tsne", payload, path=args.out)


if __name__ == "__main__":
    main()
