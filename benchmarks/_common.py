"""Shared benchmark utilities: interleaved timing (min and median), peak
memory, machine info (CPU model, ISA flags, fastrl kernel, threads, BLAS,
load), result tables and JSON output. Benchmarks are scripts, not tests.

Rules every bench_*.py follows: fastrl and its peers run in one process,
interleaved (``interleaved``), >= 3 repeats, min and median reported, ratios
taken only between runs of the same round-robin (same load)."""
from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

# FASTRL_RESULTS_DIR redirects the JSON (gpu_check --dry-run keeps the committed results intact)
RESULTS = Path(os.environ.get("FASTRL_RESULTS_DIR") or Path(__file__).resolve().parent / "results")


ISA_FLAGS = ("sse2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "neon", "asimd", "sve")


def cpu_flags() -> list[str]:
    """The instruction-set flags of interest that /proc/cpuinfo lists."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    flags.update(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return [f for f in ISA_FLAGS if f in flags]


def blas_info() -> dict:
    """numpy's BLAS (threadpoolctl: library, kernel architecture, threads) and
    torch's (its build configuration)."""
    import torch
    out: dict = {}
    try:
        from threadpoolctl import threadpool_info
        out["threadpools"] = [{k: v for k, v in lib.items() if k != "filepath"} for lib in threadpool_info()]
    except ImportError:  # pragma: no cover
        out["threadpools"] = "threadpoolctl not installed"
    cfg = torch.__config__.show()
    out["torch_blas"] = next((ln.split("=", 1)[1].split(",")[0] for ln in cfg.split()
                              if ln.startswith("BLAS_INFO=")), None)
    out["torch_cpu_capability"] = next((ln.split(":", 1)[1].strip() for ln in cfg.splitlines()
                                        if "CPU capability usage" in ln), None)
    out["env"] = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                                  "MKL_NUM_THREADS", "FASTRL_CPU_KERNEL") if k in os.environ}
    return out


def load_avg() -> list[float] | None:
    """1, 5 and 15 minute load averages (other jobs on a shared machine)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def interleaved(cases: dict, repeat: int = 3, warmup: int = 0, sync=None, on_result=None,
                settle_s: float = 0.0, max_repeat: int | None = None, max_spread: float = 0.10,
                peak_memory: bool = False) -> dict:
    """Time several callables round-robin so they see the same machine load.

    ``cases`` maps a name to a zero-argument callable. Each round calls every
    case once, in order; ``repeat`` rounds. Returns, per name, ``min_s``,
    ``median_s``, ``times_s``, the last return value (``out``) and the load
    average before each round (``load``). ``on_result(name, out)`` is called
    after every run (e.g. to measure recall), its return values collected in
    ``checks``. ``settle_s`` sleeps before every call: BLAS and OpenMP pools
    spin-wait for a while after a call, and on 2 cores the next case (often
    another library's pool) would otherwise time against those spinning threads.

    Adaptive rounds: with ``max_repeat`` > ``repeat``, rounds go on (up to
    ``max_repeat``) while some case's ``spread`` = (max - min) / min of its
    times exceeds ``max_spread``. ``peak_memory``: each call's peak extra RSS
    (:class:`PeakRSS`, read outside the timed region) in ``peak_mib``.
    Every case also gets ``spread`` and ``rounds``.
    """
    res = {name: {"times_s": [], "load": [], "checks": [], "peak_mib": []} for name in cases}
    for _ in range(warmup):
        for fn in cases.values():
            fn()

    def spread(times):
        return (max(times) - min(times)) / min(times) if min(times) > 0 else 0.0

    rounds = 0
    while rounds < repeat or (rounds < (max_repeat or 0)
                              and max(spread(r["times_s"]) for r in res.values()) > max_spread):
        rounds += 1
        la = load_avg()
        for name, fn in cases.items():
            gc.collect()
            if settle_s:
                time.sleep(settle_s)
            mem = PeakRSS() if peak_memory else None
            if mem is not None:
                mem.start()
            t0 = time.perf_counter()
            out = fn()
            if sync:
                sync()
            res[name]["times_s"].append(time.perf_counter() - t0)
            if mem is not None:
                res[name]["peak_mib"].append(mem.stop())
            res[name]["load"].append(la)
            res[name]["out"] = out
            if on_result is not None:
                res[name]["checks"].append(on_result(name, out))
    for r in res.values():
        r["min_s"] = min(r["times_s"])
        r["median_s"] = statistics.median(r["times_s"])
        r["spread"] = spread(r["times_s"])
        r["rounds"] = rounds
    return res


def missing_peer(what: str, reason: str, allow: bool, hint: str | None = None) -> str:
    """A peer of a benchmark did not load: stop (``SystemExit``) unless
    ``allow``; then print a banner that cannot be missed and return the reason,
    for the JSON's ``missing_peers``. ``hint``: how to install the peer
    (default: lightly and open_clip)."""
    if not allow:
        hint = hint or "pip install --no-deps lightly==1.6.0 open_clip_torch==3.3.0"
        raise SystemExit(f"peer missing for {what}: {reason}\n({hint}, or --allow-missing-peers to time "
                         "fastrl alone)")
    bar = "!" * 78
    print(f"{bar}\n!!! PEER MISSING for {what}: {reason}\n!!! its rows have no peer and no ratio\n{bar}",
          flush=True)
    return reason


def cpu_identity() -> dict:
    """Model name, vendor / family / model / stepping of the first CPU (where
    gathers and caches differ) and a short ``cpu_label`` naming its generation."""
    cpu = platform.processor() or ""
    ident = {}
    keys = {"vendor_id": "cpu_vendor", "cpu family": "cpu_family", "model": "cpu_model", "stepping": "cpu_stepping"}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name":
                    cpu = value
                elif key in keys and keys[key] not in ident:
                    ident[keys[key]] = value if key == "vendor_id" else int(value)
                elif not key and ident:
                    break
    except (OSError, ValueError):
        pass
    return {"cpu": cpu, **ident, "cpu_label": cpu_label(ident, cpu_flags())}


# AMD family 25 (0x19) models: Zen 3 (Milan, Vermeer, Cezanne...) and Zen 4 (Genoa, Raphael, Phoenix...)
_ZEN_25 = (((0x00, 0x0F), "Zen 3"), ((0x10, 0x1F), "Zen 4"), ((0x20, 0x5F), "Zen 3"), ((0x60, 0xAF), "Zen 4"))


# Intel family-6 server and client models (Intel's SDM, vol. 4, table 2-1).
_INTEL_6 = {85: "Skylake/Cascade Lake", 106: "Ice Lake", 108: "Ice Lake", 140: "Tiger Lake",
            143: "Sapphire Rapids", 151: "Alder Lake", 183: "Raptor Lake", 173: "Granite Rapids",
            175: "Sierra Forest", 207: "Emerald Rapids"}


def cpu_label(ident: dict, flags: list) -> str:
    """'AMD Zen 4 (family 25, model 17, avx512)'-style name of a CPU, the
    widest fastrl-relevant ISA last (rows of results from different machines say which)."""
    fam, model = ident.get("cpu_family"), ident.get("cpu_model")
    isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse2"
    gen = ident.get("cpu_vendor", "unknown CPU")
    if gen == "AuthenticAMD":
        gen = {23: "AMD Zen/Zen 2", 26: "AMD Zen 5"}.get(fam, "AMD")
        if fam == 25:
            gen = "AMD " + next((g for (lo, hi), g in _ZEN_25 if lo <= (model or 0) <= hi), "family 25")
    elif gen == "GenuineIntel":
        gen = f"Intel {_INTEL_6[model]}" if fam == 6 and model in _INTEL_6 else "Intel"
    return f"{gen} (family {fam}, model {model}, {isa})"


def code_version() -> str | None:
    """The fastrl commit a result was measured on (``+dirty`` with uncommitted changes)."""
    import subprocess
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)benchmarks/results",  # results written earlier in a run are not code
                                ":(exclude)README.md", ":(exclude)docs"],  # nor is prose
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("+dirty" if dirty else "")) or None


def machine_info() -> dict:
    """What ran the benchmark: CPU model, vendor / family / model and ISA
    flags, OS kernel, cores, memory, the fastrl kernel and thread counts, BLAS, library versions, GPU, load."""
    import numpy as np
    import torch
    ident = cpu_identity()
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        **ident,
        "cpu_flags": cpu_flags(),
        "kernel": platform.release(),
        "cores": os.cpu_count(),
        "mem_gib": mem_gib,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "blas": blas_info(),
        "load_avg": load_avg(),
        "code": code_version(),
    }
    try:
        import fastrl
        info["fastrl"] = fastrl.backend_info()
        info["fastrl_cpu_kernel"] = info["fastrl"]["cpu_kernel"]
    except Exception as exc:  # pragma: no cover
        info["fastrl"] = f"unavailable: {exc}"
    return info


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _vm_hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


class PeakRSS:
    """Peak extra RSS of a block with no sampling thread: the kernel's
    high-water mark (``VmHWM``), reset by writing 5 to
    ``/proc/self/clear_refs`` (Linux >= 4.0). Where that is not allowed it
    falls back to :class:`PeakMemory`'s sampler (``method`` says which).

    ``m = PeakRSS(); m.start(); ...; mib = m.stop()`` or ``with PeakRSS() as m: ...`` then ``m.peak_mib``.
    """

    def __init__(self):
        self.peak_mib = 0.0
        self.method = "VmHWM"
        self._sampler = None

    def start(self):
        gc.collect()
        _malloc_trim()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._base = _rss_bytes()
        except OSError:
            self.method = "rss-sampler"
            self._sampler = PeakMemory(cuda=False).__enter__()
        return self

    def stop(self) -> float:
        if self._sampler is not None:
            self._sampler.__exit__(None, None, None)
            self.peak_mib = self._sampler.peak_mib
        else:
            self.peak_mib = max(0.0, (_vm_hwm_bytes() - self._base) / 2**20)
        return self.peak_mib

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def _malloc_trim() -> None:
    """Hand freed heap pages back to the OS (glibc), so that a call's peak RSS
    is not hidden by pages an earlier call left mapped."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


class PeakMemory:
    """Peak extra memory of a block: CUDA allocator stats on GPU, otherwise
    RSS sampled every millisecond by a background thread (an estimate).

    ``with PeakMemory(cuda=False) as pm: ...`` then ``pm.peak_mib``.
    """

    def __init__(self, cuda: bool = False, interval: float = 0.001):
        self.cuda = cuda
        self.interval = interval
        self.peak_mib = 0.0

    def __enter__(self):
        gc.collect()
        if self.cuda:
            import torch
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = _rss_bytes()
            self._peak = self._base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        if self.cuda:
            import torch
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _rss_bytes())
        self.peak_mib = max(0.0, (peak - self._base) / 2**20)
        return False


def timeit(fn, *, repeat: int = 5, warmup: int = 1, sync=None) -> dict:
    """Median, min and all wall times (s) of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times}


def print_table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
    """Print dict rows as an aligned text table (missing cells are blank)."""
    if title:
        print(f"\n== {title} ==")

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def write_results(name: str, payload: dict, path: str | Path | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json`` (or ``path``) with the machine
    info added (CPU model, ISA flags, fastrl kernel, threads, BLAS, load average)."""
    path = RESULTS / f"{name}.json" if path is None else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine_info(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    print(f"wrote {path}")
    return path
