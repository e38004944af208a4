"""Benchmark: Barlow Twins, VICReg and negative cosine losses against lightly
and the official formulas (forward + backward time, peak extra memory, error).

Per cell (N, D) and family, every method runs once untimed (peak extra
memory and the error against fastrl in float64), then fastrl and lightly run
interleaved: one round calls each once, ``repeat`` rounds (5 by default).
Each row has the min and the median of its rounds; the fastrl row has the
ratios fastrl / lightly of the minima and of the medians, from the same
rounds. The official formulas (``reference.py``) are checked for error and
timed only with ``--time-official``. lightly missing stops the run
(``--allow-missing-peers``: a banner, and ``missing_peers`` in the JSON).

Run directly (``python benchmarks/losses_decorrelation.py``) or via
``benchmarks/bench_losses.py --family decorrelation`` which calls :func:`run`.
On CUDA it also reports the matmul floor (the time of the GEMMs the cheaper
algebraic form needs) and uses the Triton kernels.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakMemory, interleaved, missing_peer, print_table, timeit, write_results  # noqa: E402

SIZES = [(256, 2048), (256, 8192), (2048, 2048), (2048, 8192), (1024, 8192)]


def _load_module(relpath: str, name: str):
    """Load one lightly loss file by path (``import lightly.loss`` pulls torchvision)."""
    try:
        import lightly.loss as mod  # noqa: F401
        return importlib.import_module(f"lightly.loss.{name}")
    except Exception:
        pass
    spec = importlib.util.find_spec("lightly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / relpath
    mspec = importlib.util.spec_from_file_location(f"_fastrl_peer_{name}", path)
    module = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(module)
    return module


PEER_CLASSES = (("BarlowTwinsLoss", "barlow_twins_loss"), ("VICRegLoss", "vicreg_loss"),
                ("NegativeCosineSimilarity", "negative_cosine_similarity"))


def lightly_losses(errors: dict | None = None) -> dict:
    """lightly's BarlowTwinsLoss, VICRegLoss, NegativeCosineSimilarity classes
    (the ones that load); ``errors`` (a dict) receives why each missing one failed."""
    out = {}
    for cls, name in PEER_CLASSES:
        try:
            module = _load_module(f"loss/{name}.py", name)
            reason = None if module is not None else "lightly is not installed"
        except Exception as exc:  # broken peer install
            module, reason = None, f"lightly/loss/{name}.py failed to load: {type(exc).__name__}: {exc}"
        if module is not None:
            out[cls] = getattr(module, cls)
        elif errors is not None:
            errors[cls] = reason
    return out


def _methods(peers: dict) -> dict:
    """family -> {method name: loss(z1, z2)}; official formulas and lightly as peers."""
    from fastrl.losses import barlow_twins_loss, negative_cosine_similarity, vicreg_loss
    from fastrl.losses.decorrelation.reference import (barlow_twins_reference, negative_cosine_reference,
                                                       vicreg_reference)
    lam = 0.0051
    out = {
        "barlow": {"fastrl": lambda a, b: barlow_twins_loss(a, b, lam),
                   "official": lambda a, b: barlow_twins_reference(a, b, lam)},
        "vicreg": {"fastrl": vicreg_loss, "official": vicreg_reference},
        "negcos": {"fastrl": negative_cosine_similarity, "official": negative_cosine_reference},
    }
    if "BarlowTwinsLoss" in peers:
        out["barlow"]["lightly"] = peers["BarlowTwinsLoss"](lambda_param=lam)
    if "VICRegLoss" in peers:
        out["vicreg"]["lightly"] = peers["VICRegLoss"]()
    if "NegativeCosineSimilarity" in peers:
        out["negcos"]["lightly"] = peers["NegativeCosineSimilarity"]()
    return out


def _fwd_bwd(fn, z1, z2):
    a = z1.detach().requires_grad_()
    b = z2.detach().requires_grad_()
    loss = fn(a, b)
    loss.backward()
    return loss.detach(), a.grad


def _matmul_floor(z1, z2, sync, repeat):
    """Time of the GEMMs the cheaper algebraic form needs for forward + backward:
    gram (N < D): A A^T, B B^T, (B B^T) A, (A A^T) B; cross: A^T B, B G^T, A G."""
    n, d = z1.shape
    if n < d:
        def gemms():
            ga, gb = z1 @ z1.T, z2 @ z2.T
            return gb @ z1, ga @ z2
    else:
        def gemms():
            c = z1.T @ z2
            return z2 @ c.T, z1 @ c
    return timeit(gemms, repeat=repeat, warmup=1, sync=sync)["min_s"]


def _release_free_memory() -> None:
    """Give glibc's free heap pages back to the OS (malloc_trim), so that RSS
    sampling sees each method's own peak rather than reusing earlier frees."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _parse_sizes(sizes):
    """Accept [(N, D), ...], ["NxD", ...] or "NxD,NxD"."""
    if not sizes:
        return None
    if isinstance(sizes, str):
        sizes = sizes.split(",")
    return [tuple(int(v) for v in s.lower().split("x")) if isinstance(s, str) else tuple(s) for s in sizes]


def _measure_cell(methods: dict, family: str, z1, z2, cuda: bool, sync, repeat: int, timed: tuple) -> list:
    """Rows of one (cell, family): an untimed run of every method (memory,
    error against fastrl in fp64), then the ``timed`` ones interleaved."""
    ref_loss, ref_grad = _fwd_bwd(methods[family]["fastrl"], z1.double(), z2.double())
    rows = {}
    for name, fn in methods[family].items():
        if not cuda:
            _release_free_memory()
        with PeakMemory(cuda=cuda) as pm:  # also the warm-up and the error run
            loss, grad = _fwd_bwd(fn, z1, z2)
        rows[name] = {"family": family, "N": z1.shape[0], "D": z1.shape[1], "method": name, "peak_mib": pm.peak_mib,
                      "loss_rel_err": abs(float(loss.double()) - float(ref_loss)) / max(abs(float(ref_loss)), 1e-30),
                      "grad_rel_err": float((grad.double() - ref_grad).abs().max() / ref_grad.abs().max())}
        del grad
    cases = {name: (lambda fn=fn: _fwd_bwd(fn, z1, z2)) for name, fn in methods[family].items() if name in timed}
    res = interleaved(cases, repeat=repeat, sync=sync)
    for name, row in rows.items():
        if name not in res:
            row["note"] = "not timed (error check only; --time-official times it)"
            continue
        r = res[name]
        row.update(min_s=r["min_s"], median_s=r["median_s"], times_s=r["times_s"], load=r["load"])
    base = rows["fastrl"]
    for name in ("lightly", "official"):
        if "min_s" in rows.get(name, {}):
            base.update(vs=name, ratio_min=base["min_s"] / rows[name]["min_s"],
                        ratio_median=base["median_s"] / rows[name]["median_s"])
            break
    return list(rows.values())


def run(args=None) -> dict:
    """Run the decorrelation benchmark; returns (and writes) the results dict.

    ``args`` may carry: sizes (list of (N, D)), repeat (int, interleaved rounds), families (list),
    device ("cpu"/"cuda"), threads (CPU, default 1), seed, write (bool), no_peers,
    allow_missing_peers, time_official, out. Missing attributes use defaults.
    """
    import fastrl

    t_start = time.perf_counter()
    raw = getattr(args, "sizes", None)
    if raw and all(isinstance(v, int) for v in raw):  # bench_losses.py: --sizes N,... x --dims D,...
        dims = getattr(args, "dims", None) or sorted({d for _, d in SIZES})
        raw = [(n, d) for n in raw for d in dims]
    sizes = _parse_sizes(raw) or SIZES
    repeat = int(getattr(args, "repeat", None) or 5)
    families = getattr(args, "families", None) or ["barlow", "vicreg", "negcos"]
    if isinstance(families, str):
        families = families.split(",")
    device = getattr(args, "device", None)
    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = device == "cuda"
    threads = getattr(args, "threads", None)
    if not cuda:
        # one thread by default: on a shared machine OpenMP barriers make 2-thread
        # timings swing 100x; the ratios are what matter
        torch.set_num_threads(int(threads or 1))
    sync = torch.cuda.synchronize if cuda else None
    torch.manual_seed(int(getattr(args, "seed", None) or 0))
    errors: dict = {}
    no_peers = getattr(args, "no_peers", False)
    peers = {} if no_peers else lightly_losses(errors)
    missing = {cls: missing_peer(f"lightly {cls}", why, getattr(args, "allow_missing_peers", False))
               for cls, why in errors.items()}
    methods = _methods(peers)
    timed = ("fastrl", "lightly") + (("official",) if getattr(args, "time_official", False) else ())
    rows = []
    for n, d in sizes:
        z1 = torch.randn(n, d, device=device)
        z2 = 0.6 * z1 + 0.8 * torch.randn(n, d, device=device)
        floor = _matmul_floor(z1, z2, sync, repeat)
        for family in families:
            cell = _measure_cell(methods, family, z1, z2, cuda, sync, repeat, timed)
            for row in cell:
                if family != "negcos":
                    row["matmul_floor_s"] = floor
                    if "min_s" in row:
                        row["min_vs_floor"] = row["min_s"] / floor
            rows += cell
            print_table(cell, ["method", "min_s", "median_s", "ratio_min", "ratio_median", "min_vs_floor", "peak_mib",
                               "loss_rel_err", "grad_rel_err"],
                        title=f"{family} N={n} D={d} ({device}, min / median of {repeat} interleaved rounds)")
    payload = {"benchmark": "losses_decorrelation", "device": device, "repeat": repeat,
               "timing": "interleaved rounds (fastrl, lightly) per cell; min and median",
               "torch_threads": torch.get_num_threads(),
               "backend": "triton" if fastrl._dispatch.use_triton(z1) else "cpu", "rows": rows,
               "wall_s": time.perf_counter() - t_start}
    if no_peers:
        payload["missing_peers"] = "not run (--no-peers)"
    elif missing:
        payload["missing_peers"] = missing
    if getattr(args, "write", True):
        default = raw is None and sorted(families) == ["barlow", "negcos", "vicreg"]
        name = getattr(args, "out", None) or ("losses_decorrelation" + ("_gpu" if cuda else "")
                                              + ("" if default else "_partial"))
        write_results(name, payload)
    if missing:
        print("!!! PEER MISSING: " + "; ".join(missing.values()), flush=True)
    return payload


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=str, default=None, help="e.g. 256x2048,1024x8192")
    p.add_argument("--repeat", type=int, default=5, help="interleaved rounds (min and median)")
    p.add_argument("--families", type=str, default=None, help="comma list of barlow,vicreg,negcos")
    p.add_argument("--device", type=str, default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default 1)")
    p.add_argument("--no-write", dest="write", action="store_false")
    p.add_argument("--no-peers", action="store_true", help="fastrl and the official formulas only")
    p.add_argument("--allow-missing-peers", action="store_true", help="go on when lightly does not load")
    p.add_argument("--time-official", action="store_true", help="time the official formulas too")
    p.add_argument("--out", default=None, help="results file stem")
    args = p.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    main()
