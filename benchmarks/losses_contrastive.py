"""Contrastive family of ``bench_losses.py``: fastrl ``nt_xent`` / ``clip_loss`` /
``siglip_loss`` against lightly ``NTXentLoss`` and open_clip ``ClipLoss`` / ``SigLipLoss``.

Per cell (N, D, dtype): forward+backward time (median), peak extra memory
(beyond inputs and their gradients), and the relative error of the loss and
of the gradients against float64 (fastrl's chunked path in float64, which
the tests pin to the full-matrix reference at 1e-12). CPU mode also runs the
issue's acceptance points (speed at N=8192, D=256 vs the peers; memory at
N=32768, D=256; SigLIP: speed at N=4096, D=256 vs open_clip, memory at
N=16384, D=256). GPU mode (CUDA present, or ``--device cuda``) runs bf16 and
fp32 up to N = 1M and compares with the time of the three N x N x D matmuls
the loss must do. ``--only`` restricts the losses; rows of other cells already
in the results file are kept (merged by loss, impl, N, D, dtype).
"""
from __future__ import annotations

import json
import statistics
import time

import torch
import torch.nn.functional as F

from _common import RESULTS, PeakMemory, print_table, timeit, write_results

CPU_SIZES = [1024, 4096, 16384, 65536]
GPU_SIZES = [1024, 4096, 16384, 65536, 262144, 1048576]
DIMS = [128, 512]
TEMPERATURE, LOGIT_SCALE = 0.5, 14.3
SIGLIP_BIAS = -10.0  # SigLIP's initial bias
LOSSES = ("nt_xent", "clip", "siglip")
_DEVICE = {"name": "auto"}


def _cuda() -> bool:
    if _DEVICE["name"] == "cpu":
        return False
    if _DEVICE["name"] == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    return torch.cuda.is_available()


def _sync():
    if _cuda():
        torch.cuda.synchronize()


def _fastrl_fns(only=LOSSES):
    from fastrl.losses import clip_loss, nt_xent, siglip_loss
    fns = {
        "nt_xent": lambda a, b, s: nt_xent(a, b, TEMPERATURE),
        "clip": lambda a, b, s: clip_loss(a, b, s),
        "siglip": lambda a, b, s: siglip_loss(a, b, s, SIGLIP_BIAS),
    }
    return {k: v for k, v in fns.items() if k in only}


def _peer_fns(only=LOSSES):
    from fastrl.losses.contrastive.reference import load_peer
    fns = {}
    lightly, open_clip, siglip = load_peer("lightly"), load_peer("open_clip"), load_peer("open_clip_siglip")
    if lightly is not None:
        mod = lightly(temperature=TEMPERATURE)
        fns["nt_xent"] = ("lightly", lambda a, b, s: mod(a, b))
    if open_clip is not None:
        mod2 = open_clip()
        fns["clip"] = ("open_clip", lambda a, b, s: mod2(a, b, s))
    if siglip is not None:
        mod3 = siglip()
        fns["siglip"] = ("open_clip", lambda a, b, s: mod3(a, b, s, SIGLIP_BIAS))
    return {k: v for k, v in fns.items() if k in only}


def _inputs(n, d, dtype, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    a = torch.randn(n, d, generator=g)
    b = a + torch.randn(n, d, generator=g)  # correlated views (CLIP loss ~ 1)
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)


def _step(fn, a, b):
    """One forward+backward; returns (loss, grad_a, grad_b, grad_scale)."""
    a = a.detach().requires_grad_()
    b = b.detach().requires_grad_()
    s = torch.tensor(LOGIT_SCALE, device=a.device, dtype=torch.float32, requires_grad=True)
    loss = fn(a, b, s)
    loss.backward()
    return loss.detach(), a.grad, b.grad, s.grad


def _rel_errors(out, exact):
    loss_err = abs(float(out[0]) - float(exact[0])) / max(abs(float(exact[0])), 1e-30)
    g_err = max(float((g.double() - e).abs().max()) / max(float(e.abs().max()), 1e-30)
                for g, e in zip(out[1:3], exact[1:3]))
    return loss_err, g_err


def _exact(fn, a, b):
    from fastrl import use_backend
    with use_backend("cpu"):
        out = _step(fn, a.double(), b.double())
    return tuple(x.double() if x is not None else None for x in out)


def _measure(fn, a, b, repeat):
    grad_mib = 2 * a.numel() * a.element_size() / 2**20
    with PeakMemory(cuda=a.is_cuda) as pm:
        t0 = time.perf_counter()
        out = _step(fn, a, b)
        _sync()
        first = time.perf_counter() - t0
    peak = max(0.0, pm.peak_mib - grad_mib)
    if repeat == 1:  # big cells: the measured run is the timing (no warm-up needed at this size)
        return out, first, peak
    timing = timeit(lambda: _step(fn, a, b), repeat=repeat, warmup=0, sync=_sync)
    return out, timing["median_s"], peak


def _grid(args, cuda):
    sizes = args.sizes or (GPU_SIZES if cuda else CPU_SIZES)
    dims = args.dims or DIMS
    dtypes = [torch.bfloat16, torch.float32] if cuda else [torch.float32]
    return sizes, dims, dtypes


def _matmul_time(n, d, dtype, device):
    """Time of the three N x N x D matmuls (S = Q K^T, dQ = P K, dK = P^T Q);
    measured up to N = 65536 and scaled by N^2 above."""
    m = min(n, 65536)
    q = torch.randn(m, d, device=device, dtype=dtype)
    k = torch.randn(m, d, device=device, dtype=dtype)

    def run():
        s = q @ k.T
        s @ k
        s.T @ q

    t = timeit(run, repeat=3, warmup=1, sync=_sync)["median_s"]
    return t * (n / m) ** 2


def run_grid(args) -> list[dict]:
    cuda = _cuda()
    device = "cuda" if cuda else "cpu"
    sizes, dims, dtypes = _grid(args, cuda)
    ours = _fastrl_fns(args.only)
    peers = {} if args.no_peers else _peer_fns(args.only)
    peer_max_n = 65536 if cuda else 8192   # the peers' N x N logits must fit
    err_max_n = 65536 if cuda else 4096    # the float64 check costs 2-4x the run
    rows = []
    for dtype in dtypes:
        for n in sizes:
            if not cuda and n > args.max_n_cpu:
                print(f"skip N={n} on CPU (> --max-n-cpu={args.max_n_cpu}; hours at this core count)")
                continue
            for d in dims:
                a, b = _inputs(n, d, dtype, device)
                repeat = args.repeat if n <= (65536 if cuda else 4096) else 1
                mm = _matmul_time(n, d, dtype, device) if cuda else None
                for loss, fn in ours.items():
                    row = {"loss": loss, "impl": "fastrl", "N": n, "D": d, "dtype": str(dtype)[6:]}
                    try:
                        out, t, peak = _measure(fn, a, b, repeat)
                    except torch.cuda.OutOfMemoryError:
                        row["note"] = "OOM"
                        rows.append(row)
                        continue
                    row.update(time_s=t, peak_mib=peak)
                    exact = _exact(fn, a, b) if n <= err_max_n else None
                    if exact is not None:
                        row["loss_rel_err"], row["grad_rel_err"] = _rel_errors(out, exact)
                    if mm is not None:
                        row["matmul_s"], row["x_matmul"] = mm, t / mm
                    rows.append(row)
                    if loss in peers and n <= peer_max_n:
                        name, pfn = peers[loss]
                        prow = {"loss": loss, "impl": name, "N": n, "D": d, "dtype": row["dtype"]}
                        try:
                            pout, pt, ppeak = _measure(pfn, a, b, repeat)
                            prow.update(time_s=pt, peak_mib=ppeak)
                            if exact is not None:
                                prow["loss_rel_err"], prow["grad_rel_err"] = _rel_errors(pout, exact)
                            row["x_peer"] = t / pt
                        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
                            prow["note"] = f"failed: {type(exc).__name__}"
                        rows.append(prow)
                    del out
                print(f"done N={n} D={d} {dtype}", flush=True)
    return rows


def run_acceptance(args) -> dict:
    """CPU acceptance points of the issue (side by side, interleaved)."""
    ours, peers = _fastrl_fns(args.only), _peer_fns(args.only)
    acc = {"speed": [], "memory": []}
    for loss in ours:
        if loss not in peers:
            continue
        n_speed = 4096 if loss == "siglip" else 8192
        a, b = _inputs(n_speed, 256, torch.float32, "cpu", seed=1)
        name, pfn = peers[loss]
        wall = {"fastrl": [], name: []}
        cpu = {"fastrl": [], name: []}
        _step(ours[loss], a, b)
        _step(pfn, a, b)
        for _ in range(max(args.repeat, 3)):  # interleave: the machine is shared and noisy
            for fn, key in ((ours[loss], "fastrl"), (pfn, name)):
                t0, c0 = time.perf_counter(), time.process_time()
                _step(fn, a, b)
                wall[key].append(time.perf_counter() - t0)
                cpu[key].append(time.process_time() - c0)
        mo, mp = statistics.median(wall["fastrl"]), statistics.median(wall[name])
        co, cp = statistics.median(cpu["fastrl"]), statistics.median(cpu[name])
        acc["speed"].append({"loss": loss, "N": n_speed, "D": 256, "fastrl_s": mo, "peer": name, "peer_s": mp,
                             "ratio": mo / mp, "fastrl_cpu_s": co, "peer_cpu_s": cp, "cpu_ratio": co / cp,
                             "wall_times": wall, "cpu_times": cpu})
        del a, b
    for loss, fn in ours.items():
        n, d = (16384 if loss == "siglip" else 32768), 256
        a, b = _inputs(n, d, torch.float32, "cpu", seed=2)
        grad_mib = 2 * a.numel() * 4 / 2**20
        with PeakMemory() as pm:
            _step(fn, a, b)
        rows = 2 * n if loss == "nt_xent" else n
        del a, b
        acc["memory"].append({"loss": loss, "N": n, "D": d, "extra_peak_mib": max(0.0, pm.peak_mib - grad_mib),
                              "naive_logits_and_grad_mib": 2 * rows * rows * 4 / 2**20})
    return acc


def _track_rss() -> None:
    """Make glibc return big blocks to the OS on free (fixed mmap threshold),
    so the RSS sampled by PeakMemory follows the live memory of each run."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: blocks >= 1 MiB are mmapped
        libc.mallopt(-1, 1 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: PeakMemory stays an estimate
        pass


def _merge(old: dict, new: dict) -> dict:
    """Keep the rows/acceptance entries of ``old`` that ``new`` did not re-measure."""
    def key(r):
        return (r.get("loss"), r.get("impl"), r.get("N"), r.get("D"), r.get("dtype"))
    seen = {key(r) for r in new.get("rows", [])}
    out = dict(new)
    out["rows"] = [r for r in old.get("rows", []) if key(r) not in seen] + new.get("rows", [])
    if "acceptance" in old or "acceptance" in new:
        acc = {}
        for part in ("speed", "memory"):
            fresh = (new.get("acceptance") or {}).get(part, [])
            redone = {r["loss"] for r in fresh}
            acc[part] = [r for r in (old.get("acceptance") or {}).get(part, []) if r["loss"] not in redone] + fresh
        out["acceptance"] = acc
    return out


def run(args) -> dict:
    _DEVICE["name"] = getattr(args, "device", "auto")
    if not getattr(args, "only", None):
        args.only = LOSSES
    torch.manual_seed(0)
    if not _cuda():
        _track_rss()
    rows = run_grid(args)
    cols = ["loss", "impl", "N", "D", "dtype", "time_s", "x_peer", "x_matmul", "peak_mib",
            "loss_rel_err", "grad_rel_err", "note"]
    print_table(rows, cols, title="contrastive losses: forward + backward")
    payload = {"rows": rows}
    if not _cuda() and not args.no_acceptance:
        acc = run_acceptance(args)
        print_table(acc["speed"], ["loss", "N", "D", "fastrl_s", "peer", "peer_s", "ratio", "fastrl_cpu_s",
                                   "peer_cpu_s", "cpu_ratio"],
                    title="acceptance: CPU speed (ratio = fastrl / peer; medians of interleaved runs; "
                          "wall and process CPU time)")
        print_table(acc["memory"], ["loss", "N", "D", "extra_peak_mib", "naive_logits_and_grad_mib"],
                    title="acceptance: CPU memory above inputs and their gradients")
        payload["acceptance"] = acc
    name = "losses_contrastive" + ("_gpu" if _cuda() else "")
    path = RESULTS / f"{name}.json"
    if path.exists():
        old = json.loads(path.read_text())
        old.pop("machine", None)
        payload = _merge(old, payload)
    write_results(name, payload)
    return payload
