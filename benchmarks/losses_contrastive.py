"""Contrastive family of ``bench_losses.py``: fastrl ``nt_xent`` / ``clip_loss`` /
``siglip_loss`` against lightly ``NTXentLoss`` and open_clip ``ClipLoss`` / ``SigLipLoss``.

Per cell (N, D, dtype) and loss: fastrl and its peer run interleaved (one
round calls each once, ``--repeat`` rounds, 5 by default) after one untimed
run that measures the peak extra memory (beyond inputs and their gradients)
and the relative error of the loss and of the gradients against float64
(fastrl's chunked path in float64, which the tests pin to the full-matrix
reference at 1e-12). Each row has the min and the median of its rounds, and
the fastrl row the ratios fastrl / peer of the minima and of the medians
(both from the same rounds). The CPU grid covers small and large N (the
cells in ``CPU_CELLS``); the memory acceptance points (N = 32768, D = 256;
SigLIP N = 16384) are measured once per loss. GPU mode (CUDA present, or
``--device cuda``) runs bf16 and fp32 up to N = 1M and compares with the time
of the three N x N x D matmuls the loss must do.

A peer that cannot be loaded stops the run (``--allow-missing-peers``: the
run goes on, prints the missing peer in a banner and records it under
``missing_peers`` in the JSON). Every file holds one run on one machine: the
default grid writes ``losses_contrastive.json`` (``_gpu`` on CUDA); a run with
``--only``, ``--sizes`` or ``--dims`` writes ``losses_contrastive_partial.json``
(``--out NAME`` picks the name), so rows of different runs never mix.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from _common import PeakMemory, interleaved, load_avg, missing_peer, print_table, timeit, write_results

# (N, D) cells of the default CPU grid: small N (where fixed costs dominate)
# up to the acceptance point N = 8192, D = 256
CPU_CELLS = [(1024, 128), (1024, 512), (4096, 128), (4096, 256), (4096, 512), (8192, 256)]
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


def _peer_fns(only=LOSSES, allow_missing=False):
    """{loss: (peer name, fn)} and {loss: why its peer is missing} (a missing
    peer stops the run unless ``allow_missing``: ``_common.missing_peer``)."""
    from fastrl.losses.contrastive.reference import load_peer

    def nt_xent(cls):
        mod = cls(temperature=TEMPERATURE)
        return lambda a, b, s: mod(a, b)

    def clip(cls):
        mod = cls()
        return lambda a, b, s: mod(a, b, s)

    def siglip(cls):
        mod = cls()
        return lambda a, b, s: mod(a, b, s, SIGLIP_BIAS)

    specs = {"nt_xent": ("lightly", "lightly", nt_xent), "clip": ("open_clip", "open_clip", clip),
             "siglip": ("open_clip_siglip", "open_clip", siglip)}
    fns, missing = {}, {}
    for loss in only:
        key, name, make = specs[loss]
        try:
            fns[loss] = (name, make(load_peer(key, required=True)))
        except ImportError as exc:
            missing[loss] = missing_peer(loss, str(exc), allow_missing)
    return fns, missing


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


def _first_run(fn, a, b):
    """The untimed first run (warm-up): its output and peak extra memory (MiB)."""
    grad_mib = 2 * a.numel() * a.element_size() / 2**20
    with PeakMemory(cuda=a.is_cuda) as pm:
        out = _step(fn, a, b)
        _sync()
    return out, max(0.0, pm.peak_mib - grad_mib)


def _cells(args, cuda) -> list:
    """[(dtype, N, D)]: the default grid, or --sizes x --dims."""
    dtypes = [torch.bfloat16, torch.float32] if cuda else [torch.float32]
    if args.sizes or args.dims:
        sizes = args.sizes or (GPU_SIZES if cuda else sorted({n for n, _ in CPU_CELLS}))
        dims = args.dims or DIMS
        cells = [(n, d) for n in sizes for d in dims]
    else:
        cells = [(n, d) for n in GPU_SIZES for d in DIMS] if cuda else CPU_CELLS
    return [(dt, n, d) for dt in dtypes for n, d in cells]


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


def _row(loss, impl, n, d, dtype, res, peak, out, exact):
    row = {"loss": loss, "impl": impl, "N": n, "D": d, "dtype": str(dtype)[6:], "min_s": res["min_s"],
           "median_s": res["median_s"], "times_s": res["times_s"], "load": res["load"], "peak_mib": peak}
    if exact is not None:
        row["loss_rel_err"], row["grad_rel_err"] = _rel_errors(out, exact)
    return row


def run_grid(args, peers) -> list[dict]:
    cuda = _cuda()
    device = "cuda" if cuda else "cpu"
    ours = _fastrl_fns(args.only)
    peer_max_n = 65536 if cuda else 8192   # the peers' N x N logits must fit
    err_max_n = 65536 if cuda else 4096    # the float64 check costs 2-4x the run
    rows = []
    for dtype, n, d in _cells(args, cuda):
        if not cuda and n > args.max_n_cpu:
            print(f"skip N={n} on CPU (> --max-n-cpu={args.max_n_cpu}; hours at this core count)")
            continue
        a, b = _inputs(n, d, dtype, device)
        repeat = args.repeat if n <= (65536 if cuda else 16384) else 1
        mm = _matmul_time(n, d, dtype, device) if cuda else None
        for loss, fn in ours.items():
            cases = {"fastrl": fn}
            if loss in peers and n <= peer_max_n:
                cases[peers[loss][0]] = peers[loss][1]
            exact = _exact(fn, a, b) if n <= err_max_n else None
            first, note = {}, {}
            for impl, f in list(cases.items()):
                try:
                    first[impl] = _first_run(f, a, b)
                except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
                    note[impl] = f"failed: {type(exc).__name__}"
                    del cases[impl]
            res = interleaved({k: (lambda f=f: _step(f, a, b)) for k, f in cases.items()}, repeat=repeat,
                              sync=_sync) if cases else {}
            new = []
            for impl in list(first) + list(note):
                if impl in note:
                    new.append({"loss": loss, "impl": impl, "N": n, "D": d, "dtype": str(dtype)[6:],
                                "note": note[impl]})
                    continue
                out, peak = first[impl]
                new.append(_row(loss, impl, n, d, dtype, res[impl], peak, out, exact))
            ours_row = new[0]
            if ours_row["impl"] == "fastrl" and "min_s" in ours_row:
                for prow in new[1:]:
                    if "min_s" in prow:
                        ours_row.update(vs=prow["impl"], ratio_min=ours_row["min_s"] / prow["min_s"],
                                        ratio_median=ours_row["median_s"] / prow["median_s"])
                if mm is not None:
                    ours_row["matmul_s"], ours_row["x_matmul"] = mm, ours_row["median_s"] / mm
            if loss in peers and n > peer_max_n:
                ours_row["note"] = f"peer not run (N > {peer_max_n}: its N x N logits)"
            rows += new
            del first
        print(f"done N={n} D={d} {dtype} (load {load_avg()})", flush=True)
    return rows


def run_memory(args) -> list[dict]:
    """CPU memory acceptance: peak extra memory of one forward + backward at
    N = 32768, D = 256 (SigLIP: 16384) against the naive logits and their gradient."""
    out = []
    for loss, fn in _fastrl_fns(args.only).items():
        n, d = (16384 if loss == "siglip" else 32768), 256
        a, b = _inputs(n, d, torch.float32, "cpu", seed=2)
        grad_mib = 2 * a.numel() * 4 / 2**20
        t0 = time.perf_counter()
        with PeakMemory() as pm:
            _step(fn, a, b)
        rows = 2 * n if loss == "nt_xent" else n
        del a, b
        out.append({"loss": loss, "N": n, "D": d, "extra_peak_mib": max(0.0, pm.peak_mib - grad_mib),
                    "naive_logits_and_grad_mib": 2 * rows * rows * 4 / 2**20, "time_s": time.perf_counter() - t0})
    return out


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


def _default_grid(args) -> bool:
    return not (args.sizes or args.dims) and tuple(args.only) == LOSSES


def run(args) -> dict:
    _DEVICE["name"] = getattr(args, "device", "auto")
    if not getattr(args, "only", None):
        args.only = LOSSES
    torch.manual_seed(0)
    if not _cuda():
        _track_rss()
    t0 = time.perf_counter()
    peers, missing = ({}, {}) if args.no_peers else _peer_fns(args.only, getattr(args, "allow_missing_peers", False))
    rows = run_grid(args, peers)
    cols = ["loss", "impl", "N", "D", "dtype", "min_s", "median_s", "ratio_min", "ratio_median", "x_matmul",
            "peak_mib", "loss_rel_err", "grad_rel_err", "note"]
    print_table(rows, cols, title=f"contrastive losses: forward + backward, min / median of {args.repeat} "
                                  "interleaved rounds (ratio = fastrl / peer)")
    payload = {"repeat": args.repeat, "timing": "interleaved rounds (fastrl, peer) per cell; min and median",
               "peers": {k: v[0] for k, v in peers.items()}, "rows": rows}
    if args.no_peers:
        payload["missing_peers"] = "not run (--no-peers)"
    elif missing:
        payload["missing_peers"] = missing
    if not _cuda() and not args.no_acceptance:
        payload["memory"] = run_memory(args)
        print_table(payload["memory"], ["loss", "N", "D", "extra_peak_mib", "naive_logits_and_grad_mib"],
                    title="CPU memory above inputs and their gradients")
    payload["wall_s"] = time.perf_counter() - t0
    name = getattr(args, "out", None) or ("losses_contrastive" + ("_gpu" if _cuda() else "")
                                          + ("" if _default_grid(args) else "_partial"))
    write_results(name, payload)
    if missing:
        print("!!! PEER MISSING: " + "; ".join(missing.values()), flush=True)
    return payload
