"""Benchmark: Barlow Twins, VICReg and negative cosine losses against lightly
and the official formulas (forward + backward time, peak extra memory, error).

Times are the minimum over ``repeat`` runs (the machine may be shared; the
median is stored too); ratios are against fastrl in the same process.

Run directly (``PYTHONPATH=. python benchmarks/losses_decorrelation.py``) or via
``benchmarks/bench_losses.py --family decorrelation`` which calls :func:`run`.
On CUDA it also reports the matmul floor (the time of the GEMMs the cheaper
algebraic form needs) and uses the Triton kernels.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakMemory, print_table, timeit, write_results  # noqa: E402

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


def lightly_losses() -> dict:
    """lightly's BarlowTwinsLoss, VICRegLoss, NegativeCosineSimilarity classes (or {})."""
    out = {}
    for cls, name in (("BarlowTwinsLoss", "barlow_twins_loss"), ("VICRegLoss", "vicreg_loss"),
                      ("NegativeCosineSimilarity", "negative_cosine_similarity")):
        try:
            module = _load_module(f"loss/{name}.py", name)
        except Exception:  # pragma: no cover - broken peer install
            module = None
        if module is not None:
            out[cls] = getattr(module, cls)
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


def run(args=None) -> dict:
    """Run the decorrelation benchmark; returns (and writes) the results dict.

    ``args`` may carry: sizes (list of (N, D)), repeat (int), families (list),
    device ("cpu"/"cuda"), threads (CPU, default 1), seed, write (bool). Missing attributes use defaults.
    """
    import fastrl

    raw = getattr(args, "sizes", None)
    if raw and all(isinstance(v, int) for v in raw):  # bench_losses.py: --sizes N,... x --dims D,...
        dims = getattr(args, "dims", None) or sorted({d for _, d in SIZES})
        raw = [(n, d) for n in raw for d in dims]
    sizes = _parse_sizes(raw) or SIZES
    repeat = int(getattr(args, "repeat", None) or 3)
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
    methods = _methods(lightly_losses())
    rows = []
    for n, d in sizes:
        z1 = torch.randn(n, d, device=device)
        z2 = 0.6 * z1 + 0.8 * torch.randn(n, d, device=device)
        floor = _matmul_floor(z1, z2, sync, repeat)
        for family in families:
            # exact values: fastrl in fp64 (tested equal to the official formula to 1e-10)
            ref_loss, ref_grad = _fwd_bwd(methods[family]["fastrl"], z1.double(), z2.double())
            base = None
            for name, fn in methods[family].items():
                if not cuda:
                    _release_free_memory()
                with PeakMemory(cuda=cuda) as pm:  # also the warm-up and the error run
                    loss, grad = _fwd_bwd(fn, z1, z2)
                t = timeit(lambda: _fwd_bwd(fn, z1, z2), repeat=repeat, warmup=0, sync=sync)
                row = {"family": family, "N": n, "D": d, "method": name, "time_s": t["min_s"],
                       "median_s": t["median_s"], "peak_mib": pm.peak_mib,
                       "loss_rel_err": abs(float(loss.double()) - float(ref_loss)) / max(abs(float(ref_loss)), 1e-30),
                       "grad_rel_err": float((grad.double() - ref_grad).abs().max() / ref_grad.abs().max()),
                       "matmul_floor_s": floor if family != "negcos" else None}
                del grad
                if name == "fastrl":
                    base = row
                rows.append(row)
            for row in rows:
                if row["family"] == family and row["N"] == n and row["D"] == d:
                    row["time_vs_fastrl"] = row["time_s"] / base["time_s"]
                    if row["matmul_floor_s"]:
                        row["time_vs_floor"] = row["time_s"] / row["matmul_floor_s"]
            print_table([r for r in rows if r["family"] == family and r["N"] == n and r["D"] == d],
                        ["method", "time_s", "time_vs_fastrl", "time_vs_floor", "peak_mib", "loss_rel_err",
                         "grad_rel_err"], title=f"{family} N={n} D={d} ({device})")
    payload = {"benchmark": "losses_decorrelation", "device": device, "repeat": repeat,
               "torch_threads": torch.get_num_threads(),
               "backend": "triton" if fastrl._dispatch.use_triton(z1) else "cpu", "rows": rows}
    if getattr(args, "write", True):
        write_results("losses_decorrelation", payload)
    return payload


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=str, default=None, help="e.g. 256x2048,1024x8192")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--families", type=str, default=None, help="comma list of barlow,vicreg,negcos")
    p.add_argument("--device", type=str, default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default 1)")
    p.add_argument("--no-write", dest="write", action="store_false")
    args = p.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    main()
