"""Run every benchmark and the seven self-supervised trainings; write one
Markdown report.

    python benchmarks/run_all.py            # full sizes -> benchmarks/results/REPORT.md
    python benchmarks/run_all.py --quick    # small sizes, in a scratch copy ->
                                            #   benchmarks/results/quick/REPORT.md
    python benchmarks/run_all.py --report-only   # rebuild REPORT.md from results/*.json

``--quick`` runs each ``bench_*.py`` at small sizes through its own flags
(its ``--quick`` where it has one) from a scratch copy of ``benchmarks/``,
so the committed full-size results are never overwritten; the quick JSON,
PNGs and logs are copied to ``benchmarks/results/quick/``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
METHODS = ("simclr", "moco", "clip", "barlow", "vicreg", "simsiam", "mae")

# small sizes through each script's existing flags (None: the script's defaults)
QUICK_ARGS = {
    "bench_classical.py": ["--n", "2000", "--subset", "500"],
    "bench_knn.py": ["--quick", "--n-raw", "3000", "--n-pca", "5000", "--repeat", "1"],
    "bench_losses.py": ["--sizes", "256", "--dims", "64", "--repeat", "1", "--no-acceptance"],
    "bench_masking.py": ["--quick", "--repeat", "1"],
    # no small MNIST mode: its synthetic mixture mode at 5000 points (fastrl only)
    "bench_tsne.py": ["--n", "5000"],
}
TRAIN_FULL = ["--method", "all", "--epochs", "30", "--max-train-seconds", "420"]
TRAIN_QUICK = ["--method", "all", "--epochs", "2", "--limit", "2048", "--no-tsne"]


def _quick_args(script: Path) -> list:
    if script.name in QUICK_ARGS:
        return QUICK_ARGS[script.name]
    helptext = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                              cwd=ROOT, env=_env()).stdout
    return ["--quick"] if "--quick" in helptext else []


def _env() -> dict:
    env = dict(os.environ)  # fastrl is the installed package (no checkout on PYTHONPATH)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_scripts(quick: bool, timeout: float, skip_bench: bool, skip_train: bool,
                only: list | None = None) -> tuple[Path, list]:
    """Run the benchmarks (and trainings); returns (results dir, status rows)."""
    if quick:
        scratch = Path(tempfile.mkdtemp(prefix="fastrl_quick_"))
        bench_dir = scratch / "benchmarks"
        shutil.copytree(HERE, bench_dir, ignore=shutil.ignore_patterns("results", "__pycache__"))
        (bench_dir / "results").mkdir()
    else:
        bench_dir = HERE
    out_dir = bench_dir / "results"
    status = []
    jobs = [] if skip_bench else [(s.name, [str(bench_dir / s.name)] + (_quick_args(s) if quick else []))
                                  for s in sorted(HERE.glob("bench_*.py"))]
    if not skip_train:
        jobs.append(("train_ssl.py", [str(bench_dir / "train_ssl.py"), *(TRAIN_QUICK if quick else TRAIN_FULL),
                                      "--quiet", "--json", str(out_dir / "ssl_mnist.json")]))
    if only:
        jobs = [j for j in jobs if j[0] in only]
    for name, argv in jobs:
        log = out_dir / f"{Path(name).stem}.log"
        print(f"== {name} {' '.join(argv[1:])}", flush=True)
        t0 = time.perf_counter()
        try:
            with open(log, "w") as fh:
                rc = subprocess.run([sys.executable, *argv], cwd=ROOT, env=_env(), stdout=fh,
                                    stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        status.append({"script": name, "args": " ".join(argv[1:]), "rc": rc, "wall_s": time.perf_counter() - t0,
                       "log": log.name})
        print(f"   rc={rc} in {status[-1]['wall_s']:.0f} s (log {log})", flush=True)
    if quick:
        dest = RESULTS / "quick"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(out_dir, dest)
        shutil.rmtree(out_dir.parent.parent, ignore_errors=True)   # the scratch copy
        return dest, status
    return RESULTS, status


# ----------------------------------------------------------------- report


def _fmt(v) -> str:
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v[:4]) + (" ..." if len(v) > 4 else "")
    if isinstance(v, dict):
        return json.dumps(v)[:60]
    return str(v).replace("|", "/")


def table(rows: list, columns: list | None = None) -> str:
    """Markdown table of a list of dicts (columns: union of keys, in order)."""
    if not rows:
        return "_(no rows)_\n"
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _machine_line(m: dict) -> str:
    keys = ("date", "cpu", "cores", "torch_threads", "torch", "cuda")
    return "; ".join(f"{k}: {m[k]}" for k in keys if k in m)


def generic_section(name: str, data: dict) -> str:
    """Every list-of-dict field as a table, scalars as a list."""
    out = [f"### `{name}`\n"]
    if isinstance(data.get("machine"), dict):
        out.append(f"_Machine: {_machine_line(data['machine'])}_\n")
    scalars = {k: v for k, v in data.items() if k != "machine" and not isinstance(v, (list, dict))}
    if scalars:
        out.append("\n".join(f"- {k}: {_fmt(v)}" for k, v in scalars.items()) + "\n")

    def walk(prefix, obj):
        for k, v in obj.items():
            if k == "machine":
                continue
            if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
                out.append(f"**{prefix}{k}**\n\n" + table(v))
            elif isinstance(v, dict) and v and all(not isinstance(x, (dict, list)) for x in v.values()):
                out.append(f"**{prefix}{k}**: " + ", ".join(f"{a}={_fmt(b)}" for a, b in v.items()) + "\n")
            elif isinstance(v, dict):
                walk(f"{prefix}{k}.", v)
    walk("", data)
    return "\n".join(out)


def ssl_section(data: dict, rel: Path) -> str:
    """Linear probe / kNN of every method, its random encoder, the baselines and the acceptance checks."""
    runs = {r["method"]: r for r in data.get("runs", [])}
    order = [m for m in METHODS if m in runs] + [m for m in runs if m not in METHODS]
    out = ["## Self-supervised training on MNIST (`benchmarks/train_ssl.py`)\n",
           f"Source: [`{rel / 'ssl_mnist.json'}`]({'ssl_mnist.json'}). Encoders are trained on the 60 000 "
           "MNIST training digits without labels; the linear probe (`fastrl.metrics.linear_probe`, L-BFGS "
           "logistic regression on standardised features) and the 20-NN vote (cosine) are fit on the "
           "training features with labels and scored on the 10 000 test digits. \"Random encoder\" is the "
           "same network with its initial weights, before training.\n"]
    rows = []
    for m in order:
        r = runs[m]
        loss = r.get("loss_per_epoch", [])
        rows.append({
            "method": m, "epochs": round(r.get("epochs", 0.0), 2), "train_s": round(r.get("train_seconds", 0.0)),
            "loss first -> last epoch": f"{loss[0]:.4g} -> {loss[-1]:.4g}" if loss else "",
            "alignment": (r.get("alignment_per_epoch") or [float("nan")])[-1],
            "uniformity": (r.get("uniformity_per_epoch") or [float("nan")])[-1],
            "linear probe": r["linear_probe"], "random encoder probe": r["random_encoder_probe"],
            "gain": r["linear_probe"] - r["random_encoder_probe"], "kNN": r["knn_accuracy"],
            "random kNN": r.get("random_encoder_knn", float("nan")),
            "t-SNE": f"[png]({Path(r['tsne_png']).name})" if r.get("tsne_png") else "",
        })
    out.append(table(rows))
    base = data.get("baselines", {})
    brow = []
    if "raw_pixels_probe" in base:
        brow.append({"features": "raw pixels (784)", "linear probe": base["raw_pixels_probe"],
                     "kNN": base.get("raw_pixels_knn", float("nan"))})
    if "pca50_probe" in base:
        brow.append({"features": "PCA-50 of the pixels (fastrl.manifold.pca)", "linear probe": base["pca50_probe"]})
    for m in order:
        brow.append({"features": f"random {m} encoder ({runs[m].get('feature_dim', '?')}-d)",
                     "linear probe": runs[m]["random_encoder_probe"],
                     "kNN": runs[m].get("random_encoder_knn", float("nan"))})
    out.append("**Baselines**\n\n" + table(brow))
    checks = []
    for m in order:
        r = runs[m]
        gain = r["linear_probe"] - r["random_encoder_probe"]
        ok_t, ok_g = r["train_seconds"] <= 600, gain > 0.02
        line = (f"- {m}: trained {r['train_seconds']:.0f} s ({'<=' if ok_t else '>'} 600 s), linear probe "
                f"{r['linear_probe']:.4f} beats its random encoder ({r['random_encoder_probe']:.4f}) by "
                f"{gain:+.4f} ({'> 0.02: yes' if ok_g else '> 0.02: NO'})")
        if m in ("simclr", "barlow", "vicreg"):
            line += f"; >= 0.95: {'yes' if r['linear_probe'] >= 0.95 else 'NO'}"
        checks.append(line)
    out.append("**Acceptance (issue 14)**\n\n" + "\n".join(checks) + "\n")
    for part in data.get("parts", []):
        a = part.get("args") or {}
        out.append(f"_Part `{part['file']}`: `train_ssl.py --method {','.join(part['methods'])} --epochs {a.get('epochs')} "
                   f"--max-train-seconds {a.get('max_train_seconds')} --threads {a.get('threads')}` "
                   f"(batch {a.get('batch_size')}, load average {_fmt(part.get('loadavg_start'))} at its start)._\n")
    for old in data.get("superseded", []):
        out.append(f"_Superseded run: {old['method']} ({old.get('part', '?')}: {old['epochs']:.2f} epochs in "
                   f"{old['train_seconds']:.0f} s, linear probe {old['linear_probe']:.4f} vs random "
                   f"{old['random_encoder_probe']:.4f}, gain {old['linear_probe'] - old['random_encoder_probe']:+.4f}), "
                   f"replaced by the run from {old.get('replaced_by', '?')} listed above._\n")
    loads = [r.get("loadavg_during") for r in runs.values() if r.get("loadavg_during")]
    if loads:
        peak = max(max(a[0], b[0]) for a, b in loads)
        out.append(f"_Load: the 2-core machine was shared; 1-minute load average up to {peak:.1f} during "
                   f"these runs (per run in the JSON, `loadavg_during`); parts may have run at the same time. Machine: {_machine_line(data.get('machine', {}))}. "
                   f"Threads per run: {data.get('args', {}).get('threads', '?')}._\n")
    return "\n".join(out)


def write_report(results: Path, status: list | None = None, path: Path | None = None) -> Path:
    """REPORT.md from every JSON and PNG in ``results``."""
    path = path or results / "REPORT.md"
    rel = results.relative_to(ROOT)
    parts = ["# fastrl benchmark report\n",
             f"Generated by `benchmarks/run_all.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from "
             f"the JSON files in `{rel}/`. Every timing is measured (min/median of repeats where the script "
             "repeats); the machine of each file is printed with it.\n"]
    if status:
        parts.append("## Runs\n\n" + table(status))
    ssl = results / "ssl_mnist.json"
    if ssl.is_file():
        parts.append(ssl_section(json.loads(ssl.read_text()), rel))
    others = sorted(p for p in results.glob("*.json") if p.name != "ssl_mnist.json")
    if others:
        parts.append("## Benchmarks\n")
        for p in others:
            try:
                data = json.loads(p.read_text())
            except json.JSONDecodeError as exc:
                parts.append(f"### `{p.name}`\n\n_unreadable: {exc}_\n")
                continue
            parts.append(generic_section(p.name, data) + f"\nSource: [`{p.name}`]({p.name})\n")
    pngs = sorted(results.glob("*.png"))
    if pngs:
        parts.append("## Plots\n\n" + "\n".join(f"- [`{p.name}`]({p.name})" for p in pngs) + "\n")
    logs = sorted(results.glob("*.log"))
    if logs:
        parts.append("## Logs\n\n" + "\n".join(f"- [`{p.name}`]({p.name})" for p in logs) + "\n")
    path.write_text("\n".join(parts))
    return path


def merge_ssl(paths: list, out: Path) -> None:
    """Merge several train_ssl.py JSON files (e.g. methods run in parallel)
    into one; a later file's run of a method replaces an earlier one, which
    is kept under ``superseded``."""
    merged = {"runs": [], "parts": [], "superseded": []}
    by_method = {}
    for p in paths:
        d = json.loads(Path(p).read_text())
        merged.setdefault("machine", d.get("machine"))
        merged.setdefault("args", d.get("args"))
        if "baselines" in d:
            merged["baselines"] = d["baselines"]
        for r in d.get("runs", []):
            if r["method"] in by_method:
                merged["superseded"].append({**by_method[r["method"]], "replaced_by": Path(p).name})
            by_method[r["method"]] = {**r, "part": Path(p).name}
        merged["parts"].append({"file": Path(p).name, "args": d.get("args"), "loadavg_start": d.get("loadavg_start"),
                                "loadavg_end": d.get("loadavg_end"), "methods": [r["method"] for r in d["runs"]]})
    rank = {m: i for i, m in enumerate(METHODS)}
    merged["runs"] = sorted(by_method.values(), key=lambda r: rank.get(r["method"], len(METHODS)))
    out.write_text(json.dumps(merged, indent=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, scratch copy, results/quick/REPORT.md")
    ap.add_argument("--report-only", action="store_true", help="only rebuild REPORT.md from results/")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per script")
    ap.add_argument("--only", nargs="+", default=None, metavar="SCRIPT",
                    help="run only these scripts (e.g. bench_masking.py train_ssl.py)")
    ap.add_argument("--merge-ssl", nargs="+", default=None, metavar="JSON",
                    help="merge train_ssl.py JSON files into results/ssl_mnist.json first")
    args = ap.parse_args(argv)
    if args.merge_ssl:
        merge_ssl(args.merge_ssl, RESULTS / "ssl_mnist.json")
    if args.report_only:
        print(write_report(RESULTS))
        return 0
    timeout = args.timeout or (1800 if args.quick else None)
    results, status = run_scripts(args.quick, timeout, args.skip_bench, args.skip_train, args.only)
    print(write_report(results, status))
    return 0 if all(s["rc"] == 0 for s in status) else 1


if __name__ == "__main__":
    sys.exit(main())
