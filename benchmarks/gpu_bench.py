"""The measured steps of ``benchmarks/gpu_check.sh`` (one GPU run must be enough).

    python benchmarks/gpu_bench.py STEP [--out DIR] [--dry-run]

STEP is one of ``env``, ``correct``, ``contrastive``, ``large_n``, ``decorrelation``,
``tsne``. Every record is appended to ``DIR/<step>_gpu.jsonl`` (one JSON object a
line, flushed) the moment it is measured, so a run cut short still returns
numbers. ``--dry-run`` runs every step at tiny sizes (under the Triton
interpreter on a CPU machine) to prove the script end to end.

Timings use CUDA events on a GPU (perf_counter elsewhere): min and median of
``--repeat`` runs after one warm-up (compile) run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

CUDA = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") != "1"
DEV = "cuda" if CUDA else "cpu"


class Log:
    """Appends JSON lines to ``<out>/<step>_gpu.jsonl`` and echoes a short line."""

    def __init__(self, out: Path, step: str, dry: bool):
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / f"{step}_gpu.jsonl"
        self.step, self.dry = step, dry

    def __call__(self, **rec):
        rec = {"step": self.step, "dry_run": self.dry, "time": time.strftime("%H:%M:%S"), **rec}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec, default=str) + "\n")
        print(" ".join(f"{k}={v}" for k, v in rec.items() if k not in ("step", "dry_run", "time")), flush=True)


def _sync():
    if CUDA:
        torch.cuda.synchronize()


def timeit(fn, repeat: int = 3) -> dict:
    """min/median milliseconds of ``fn()`` after one warm-up call (``repeat=0``: the one
    call is timed, no warm-up)."""
    if repeat > 0:
        fn()
        _sync()
    times = []
    for _ in range(max(repeat, 1)):
        if CUDA:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
    return {"ms_min": round(min(times), 4), "ms_median": round(statistics.median(times), 4)}


def _peak_reset():
    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib():
    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if CUDA else None


# ------------------------------------------------------------------ env
def step_env(log, args):
    import triton
    from fastrl import backend_info
    rec = {"torch": torch.__version__, "triton": triton.__version__, "cuda_runtime": torch.version.cuda,
           "backend_info": backend_info()}
    if CUDA:
        p = torch.cuda.get_device_properties(0)
        rec.update(gpu=p.name, sm_count=p.multi_processor_count, mem_gib=round(p.total_memory / 2**30, 1),
                   capability=f"{p.major}.{p.minor}")
        try:
            q = "driver_version,clocks.max.sm,clocks.sm,clocks.max.mem,power.limit"
            rec["nvidia_smi"] = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv"],
                                               capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception as exc:  # noqa: BLE001
            rec["nvidia_smi"] = f"unavailable: {exc}"
    else:
        rec["gpu"] = None
    log(**rec)


# ------------------------------------------------------------------ correctness
def _err(out, ref):
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    return float((out - ref).abs().max() / max(float(ref.abs().max()), 1e-30))


def _check(log, kernel, dtype, errs: dict, tol: float):
    worst = max(errs.values())
    ok = worst <= tol
    log(result="PASS" if ok else "FAIL", kernel=kernel, dtype=str(dtype).replace("torch.", ""),
        max_rel_err=f"{worst:.3g}", tol=tol, **{k: f"{v:.3g}" for k, v in errs.items()})
    return ok


def _loss_errors(fn, a, b, dtype, ref_device):
    """Relative errors of loss and input gradients against float64 (CPU path on ref_device)."""
    from fastrl._dispatch import use_backend
    xs = [t.detach().to(DEV, dtype).requires_grad_() for t in (a, b)]
    with use_backend("triton"):
        out = fn(*xs)
        out.backward()
    rs = [t.detach().to(ref_device, torch.float64).requires_grad_() for t in (a, b)]
    with use_backend("cpu"):
        ref = fn(*rs)
        ref.backward()
    return {"loss": _err(out, ref), "grad_a": _err(xs[0].grad, rs[0].grad), "grad_b": _err(xs[1].grad, rs[1].grad)}


# tolerances: ~3x the CPU path's measured error against fp64, per dtype
_TOL = {torch.float32: 1e-4, torch.float16: 3e-3, torch.bfloat16: 3e-2}


def step_correct(log, args):
    import torch.nn.functional as F
    from fastrl.losses.contrastive import clip_loss, info_nce, nt_xent
    from fastrl.losses.decorrelation import barlow_twins_loss, vicreg_loss
    n, d = (40, 24) if args.dry_run else (4096, 512)
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(n, d, generator=g), dim=1)
    b = F.normalize(a + 0.5 * torch.randn(n, d, generator=g), dim=1)
    ref_dev = DEV
    ok = True
    losses = {"clip": lambda x, y: clip_loss(x, y, 30.0), "info_nce": lambda x, y: info_nce(x, y, 0.1),
              "nt_xent": lambda x, y: nt_xent(x, y, 0.2)}
    for name, fn in losses.items():
        for dt in (torch.float32, torch.float16, torch.bfloat16):
            ok &= _check(log, name, dt, _loss_errors(fn, a, b, dt, ref_dev), _TOL[dt])
    # the fp16 gradient at N = 16k (underflowed before the P scaling)
    n16 = 64 if args.dry_run else 16384
    a16 = F.normalize(torch.randn(n16, 64 if args.dry_run else 256, generator=g), dim=1)
    b16 = F.normalize(a16 + 0.5 * torch.randn(a16.shape, generator=g), dim=1)
    ok &= _check(log, f"clip_fp16_grad_n{n16}", torch.float16,
                 _loss_errors(losses["clip"], a16, b16, torch.float16, ref_dev), _TOL[torch.float16])
    nd, dd = (40, 33) if args.dry_run else (1024, 2048)
    z1 = torch.randn(nd, dd, generator=g)
    z2 = 0.5 * z1 + torch.randn(nd, dd, generator=g)
    for form in ("gram", "cross"):
        for name, fn in (("barlow_" + form, lambda x, y, f=form: barlow_twins_loss(x, y, form=f)),
                         ("vicreg_" + form, lambda x, y, f=form: vicreg_loss(x, y, form=f))):
            for dt in (torch.float32, torch.bfloat16):
                ok &= _check(log, name, dt, _loss_errors(fn, z1, z2, dt, ref_dev), 1e-3 if dt == torch.float32
                             else 3e-2)
    ok &= _tsne_correct(log, args)
    ok &= _masking_correct(log, args, g)
    log(summary="PASS" if ok else "FAIL")
    return ok


def _tsne_correct(log, args):
    import numpy as np
    from fastrl.manifold.tsne.triton_kernels import repulsive_triton
    n = 130 if args.dry_run else 4096
    Y = np.random.default_rng(1).normal(size=(n, 2)) * 5
    diff = Y[:, None, :] - Y[None, :, :] if n <= 4096 else None
    u = 1.0 / (1.0 + (diff ** 2).sum(-1))
    np.fill_diagonal(u, 0.0)
    R, z = repulsive_triton(torch.as_tensor(Y, dtype=torch.float32, device=DEV))
    errs = {"z": _err(z, torch.as_tensor(u.sum(1))), "R": _err(R, torch.as_tensor(((u * u)[:, :, None] * diff).sum(1)))}
    return _check(log, "tsne_repulsive", torch.float32, errs, 1e-4)


def _masking_correct(log, args, g):
    from fastrl._dispatch import use_backend
    from fastrl.masking import mae_loss, vq_nearest
    from fastrl.masking.reference import mae_forward_loss
    ok = True
    imgs = torch.randn(4, 3, 32, 32, generator=g)
    pred = torch.randn(4, 64, 48, generator=g)
    mask = (torch.rand(4, 64, generator=g) < 0.75).float()
    for dt in (torch.float32, torch.float16, torch.bfloat16):
        p = pred.detach().to(DEV, dt).clone().requires_grad_()
        with use_backend("triton"):
            out = mae_loss(p, imgs.to(DEV), mask.to(DEV), 4)
            out.backward()
        pr = pred.detach().double().clone().requires_grad_()
        ref = mae_forward_loss(imgs.double(), pr, mask.double(), 4, True)
        ref.backward()
        ok &= _check(log, "mae_loss", dt, {"loss": _err(out, ref), "grad": _err(p.grad, pr.grad)}, _TOL[dt])
    code = torch.randn(300, 32, generator=g)
    z = code[torch.randint(0, 300, (500,), generator=g)] + 0.01 * torch.randn(500, 32, generator=g)
    with use_backend("triton"):
        idx = vq_nearest(z.to(DEV), code.to(DEV)).cpu()
    want = torch.cdist(z.double(), code.double()).argmin(1)
    ok &= _check(log, "vq_nearest", torch.float32, {"mismatch": float((idx != want).float().mean())}, 0.0)
    return ok


# ------------------------------------------------------------------ contrastive timing
def _kernel_meta(which: str) -> dict:
    from fastrl.losses.contrastive import triton_kernels as tk
    ret, cfg = tk.LAST_LAUNCH.get(which, (None, None))
    meta = {"config": str(cfg)}
    for key in ("n_regs", "n_spills"):
        meta[key] = getattr(ret, key, None)
    md = getattr(ret, "metadata", None)
    meta["shared_bytes"] = getattr(md, "shared", None)
    return meta


def step_contrastive(log, args):
    import torch.nn.functional as F
    from fastrl._dispatch import use_backend
    from fastrl.losses.contrastive import clip_loss, info_nce, lse_core, nt_xent
    from fastrl.losses.contrastive import triton_kernels as tk
    n, d, dt = (140, 40, torch.float32) if args.dry_run else (65536, 512, torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(n, d, generator=g), dim=1).to(DEV, dt)
    b = F.normalize(torch.randn(n, d, generator=g), dim=1).to(DEV, dt)
    flop = 2.0 * n * n * d  # one pass over N x N x D
    floor1 = timeit(lambda: a @ b.T, args.repeat)
    z2 = torch.cat([a, b])
    floor_nt = timeit(lambda: z2 @ z2.T, args.repeat)
    log(kind="floor", what="one GEMM N x N x D", n=n, d=d, dtype=str(dt), **floor1,
        tflops=round(flop / floor1["ms_min"] / 1e9, 1))
    log(kind="floor", what="one GEMM 2N x 2N x D (NT-Xent)", n=n, d=d, dtype=str(dt), **floor_nt)
    floors = {"clip": 3 * floor1["ms_min"], "info_nce": 3 * floor1["ms_min"], "nt_xent": 2 * floor_nt["ms_min"]}
    scale = torch.tensor(20.0, device=DEV)
    bd = max(16, 1 << (d - 1).bit_length())
    # each kept tile config, forward (fused row + column LSE) and backward (dQ + atomic dK)
    for cfg in tk.kept_configs(bd, a.element_size()):
        bwd_ok = cfg in tk.kept_configs(bd, a.element_size(), backward=True)
        with use_backend("triton"), tk.tile_config(cfg):
            try:
                t = timeit(lambda: lse_core(a, b, scale, want_col=True), args.repeat)
                log(kind="config", pass_="fwd_row_col", n=n, d=d, **cfg, **t,
                    tflops=round(flop / t["ms_min"] / 1e9, 1), ratio_to_gemm=round(t["ms_min"] / floor1["ms_min"], 3),
                    **_kernel_meta("fwd"))
                if bwd_ok:
                    r, c = tk.lse_fwd(a, b, 20.0, None, True)
                    gr = torch.full_like(r, 1.0 / (2 * n))
                    t = timeit(lambda: tk.grad_rows(a, b, 20.0, None, r, gr, c, gr, grad_b=True), args.repeat)
                    log(kind="config", pass_="bwd_dq_dk", n=n, d=d, **cfg, **t,
                        tflops=round(3 * flop / t["ms_min"] / 1e9, 1),
                        ratio_to_floor=round(t["ms_min"] / (2 * floor1["ms_min"]), 3), **_kernel_meta("bwd"))
            except Exception as exc:  # noqa: BLE001 - a config that fails to compile is a result too
                log(kind="config", n=n, d=d, **cfg, error=repr(exc)[:500])
    # whole losses, forward + backward, fixed configs (or autotuned when FASTRL_AUTOTUNE=1)
    losses = {"clip": lambda x, y: clip_loss(x, y, 20.0), "info_nce": lambda x, y: info_nce(x, y, 0.1, normalize=False),
              "nt_xent": lambda x, y: nt_xent(x, y, 0.2, normalize=False)}
    budget = "64" if args.dry_run else "40000"  # MiB: N = 65k keeps 16 GiB fp32 logits + 8 GiB bf16 P
    for store in ("0", budget):
        os.environ["FASTRL_LOGITS_BUDGET_MB"] = store
        for name, fn in losses.items():
            x, y = a.detach().requires_grad_(), b.detach().requires_grad_()

            def run():
                with use_backend("triton"):
                    fn(x, y).backward()
            try:
                _peak_reset()
                t = timeit(run, args.repeat)
                log(kind="loss", loss=name, stored_logits=store != "0", n=n, d=d, dtype=str(dt), **t,
                    floor_ms=round(floors[name], 4), ratio_to_floor=round(t["ms_min"] / floors[name], 3),
                    peak_gib=_peak_gib())
            except Exception as exc:  # noqa: BLE001
                log(kind="loss", loss=name, stored_logits=store != "0", error=repr(exc)[:500])
    os.environ["FASTRL_LOGITS_BUDGET_MB"] = "0"


def step_large_n(log, args):
    import torch.nn.functional as F
    from fastrl._dispatch import use_backend
    from fastrl.losses.contrastive import clip_loss
    n, d, dt = (200, 16, torch.float32) if args.dry_run else (1 << 20, 512, torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(n, d, generator=g), dim=1).to(DEV, dt)
    b = F.normalize(torch.randn(n, d, generator=g), dim=1).to(DEV, dt)
    with torch.no_grad(), use_backend("triton"):
        clip_loss(a[:4096], b[:4096], 20.0)  # compiles the same kernels (N is a runtime argument)
        _sync()
        _peak_reset()
        base = torch.cuda.max_memory_allocated() if CUDA else 0
        out = {}
        t = timeit(lambda: out.setdefault("v", clip_loss(a, b, 20.0)), 0)  # one timed call
        val = float(out["v"])
    log(kind="large_n_forward", loss="clip", n=n, d=d, dtype=str(dt), **t, loss_value=val,
        tflops=round(2 * 2.0 * n * n * d / t["ms_min"] / 1e9, 1) if not args.dry_run else None,
        peak_gib=_peak_gib(), inputs_gib=round(2 * a.numel() * a.element_size() / 2**30, 3), base_bytes=base)


# ------------------------------------------------------------------ decorrelation
def step_decorrelation(log, args):
    from fastrl._dispatch import use_backend
    from fastrl.losses.decorrelation import barlow_twins_loss, vicreg_loss
    from fastrl.losses.decorrelation.reference import barlow_twins_reference, vicreg_reference
    n, d = (40, 96) if args.dry_run else (2048, 8192)
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(n, d, generator=g).to(DEV)
    z2 = (0.5 * z1.cpu() + torch.randn(n, d, generator=g)).to(DEV)
    x, y = z1.detach().requires_grad_(), z2.detach().requires_grad_()

    def fb(fn, backend=None):
        def run():
            if backend is None:
                fn(x, y).backward()
            else:
                with use_backend(backend):
                    fn(x, y).backward()
        return run

    # GEMM floor of the gram form: 2 Grams forward + 2 products backward, each 2 N^2 D flops
    floor = timeit(lambda: (z1 @ z1.T, z2 @ z2.T, (z1 @ z1.T) @ z1, (z2 @ z2.T) @ z2), args.repeat)
    log(kind="floor", what="gram form GEMMs (fwd 2 + bwd 2, approx.)", n=n, d=d, **floor)
    for name, ours, ref in (("barlow_twins", barlow_twins_loss, barlow_twins_reference),
                            ("vicreg", vicreg_loss, vicreg_reference)):
        _peak_reset()
        t_ref = timeit(fb(ref), args.repeat)
        _peak_reset()
        t_ours = timeit(fb(ours, "triton"), args.repeat)
        log(kind="loss", loss=name, n=n, d=d, fastrl=t_ours, official=t_ref,
            ratio_to_official=round(t_ours["ms_min"] / t_ref["ms_min"], 3),
            ratio_to_floor=round(t_ours["ms_min"] / floor["ms_min"], 3), peak_gib=_peak_gib())


# ------------------------------------------------------------------ t-SNE
def step_tsne(log, args):
    import numpy as np
    import scipy.sparse as sp
    from fastrl._dispatch import use_backend
    from fastrl.manifold.tsne.torch_path import TorchP, tsne_gradient
    n, k = (150, 10) if args.dry_run else (70000, 90)
    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(n), k)
    cols = (rows + rng.integers(1, n, size=n * k)) % n
    P = sp.csr_matrix((rng.random(n * k), (rows, cols)), shape=(n, n))
    P = P + P.T
    P = P / P.sum()
    TP = TorchP(P.tocsr(), DEV)
    Y = torch.as_tensor(rng.normal(size=(n, 2)) * 10, dtype=torch.float32, device=DEV)
    with use_backend("triton"):
        t = timeit(lambda: tsne_gradient(TP, Y, dof=1.0, exaggeration=1.0), args.repeat)
    log(kind="tsne_gradient", n=n, neighbours=k, **t, seconds_for_750_iters=round(750 * t["ms_min"] / 1e3, 2))


STEPS = {"env": step_env, "correct": step_correct, "contrastive": step_contrastive, "large_n": step_large_n,
         "decorrelation": step_decorrelation, "tsne": step_tsne}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=sorted(STEPS))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "benchmarks" / "results"))
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    if args.dry_run:
        args.repeat = 1
    log = Log(args.out, args.step, args.dry_run)
    try:
        ok = STEPS[args.step](log, args)
    except Exception as exc:  # noqa: BLE001 - record, then fail loudly
        log(error=repr(exc)[:1000], traceback=traceback.format_exc()[-3000:])
        print(f"FAIL step {args.step}: {exc!r}", file=sys.stderr)
        return 1
    return 0 if ok is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
