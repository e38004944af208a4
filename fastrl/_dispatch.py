"""The one place that decides which backend runs an op.

Every hot op in fastrl has two paths behind one public function: a fused Triton
kernel for CUDA tensors and a CPU path (C++/OpenMP, Numba or chunked torch).
:func:`use_triton` makes the choice per call:

* ``auto`` (default): Triton when triton imports and every tensor is on CUDA;
  otherwise the CPU path.
* ``triton``: always Triton. On CPU tensors this needs the Triton interpreter
  (``TRITON_INTERPRET=1`` set before fastrl's kernel modules are imported),
  which is how the test suite proves the kernels on machines without a GPU.
* ``cpu``: always the CPU path (CUDA tensors are computed on their device with
  the chunked torch implementation).

The choice comes from, in order: a :func:`use_backend` context, then the
``FASTRL_BACKEND`` environment variable, then ``auto``.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
import threading
import warnings
from typing import Iterator

import torch

BACKENDS = ("auto", "triton", "cpu")
_local = threading.local()


def _check_name(name: str, source: str) -> str:
    name = str(name).strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS}, got {name!r}")
    return name


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """True when the ``triton`` package can be imported."""
    if importlib.util.find_spec("triton") is None:
        return False
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # pragma: no cover - broken installs
        return False
    return True


def interpreting() -> bool:
    """True when Triton kernels run under the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def requested_backend() -> str:
    """The backend asked for by :func:`use_backend` or ``FASTRL_BACKEND``."""
    override = getattr(_local, "backend", None)
    if override is not None:
        return override
    return _check_name(os.environ.get("FASTRL_BACKEND", "auto") or "auto", "FASTRL_BACKEND")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force a backend (``"auto"``, ``"triton"`` or ``"cpu"``) inside a ``with`` block.

    The override is thread-local and takes precedence over ``FASTRL_BACKEND``.
    """
    name = _check_name(name, "backend")
    previous = getattr(_local, "backend", None)
    _local.backend = name
    try:
        yield
    finally:
        _local.backend = previous


def use_triton(*tensors: torch.Tensor | None) -> bool:
    """Decide whether the Triton path runs for an op on ``tensors``.

    Parameters
    ----------
    *tensors : torch.Tensor or None
        The op's tensor inputs (``None`` entries are ignored).

    Returns
    -------
    bool
        True for the Triton kernel, False for the CPU path.

    Raises
    ------
    RuntimeError
        If ``triton`` is forced but cannot run: triton is not installed, or the
        tensors are on the CPU and the interpreter is off.
    """
    ts = [t for t in tensors if isinstance(t, torch.Tensor)]
    on_cuda = bool(ts) and all(t.is_cuda for t in ts)
    choice = requested_backend()
    if choice == "cpu":
        return False
    if choice == "auto":
        if on_cuda and not triton_available():
            warn_fallback(
                "dispatch.cuda_without_triton",
                "fastrl: CUDA tensors with FASTRL_BACKEND=auto, but the triton package cannot be "
                "imported; running the chunked torch path instead of the fused Triton kernels "
                "(install triton for the fast path, or set FASTRL_BACKEND=cpu to silence this)",
            )
            return False
        return on_cuda
    # forced triton
    if not triton_available():
        raise RuntimeError("FASTRL_BACKEND=triton, but the triton package cannot be imported")
    if not on_cuda and not interpreting():
        raise RuntimeError(
            "FASTRL_BACKEND=triton on CPU tensors needs the Triton interpreter: set "
            "TRITON_INTERPRET=1 before importing fastrl, or move the tensors to CUDA"
        )
    return True


_fallbacks: dict[str, str] = {}
_fallbacks_lock = threading.Lock()


class FallbackWarning(UserWarning):
    """Warned (once per process and key) when fastrl runs another path than the one asked for."""


_SKIP_DIRS = (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(torch.__file__)))


def _caller_stacklevel() -> int:
    """``stacklevel`` of the first frame outside fastrl and torch, seen from :func:`warn_fallback`."""
    frame, level = sys._getframe(2), 2  # the caller of warn_fallback is stacklevel 2
    while frame is not None and frame.f_code.co_filename.startswith(_SKIP_DIRS):
        frame, level = frame.f_back, level + 1
    return level


def warn_fallback(key: str, message: str, stacklevel: int | None = None) -> None:
    """Warn once per process that a silent change of path happened, and record it.

    Parameters
    ----------
    key : str
        Stable identifier of the fallback, e.g. ``"dispatch.cuda_without_triton"``.
        The warning fires only the first time a key is seen in this process.
    message : str
        What was asked, what runs instead, and why.
    stacklevel : int, optional
        Passed to :func:`warnings.warn`; default: the first frame outside fastrl
        and torch (the user's call of the op).

    Notes
    -----
    Every recorded fallback is listed by :func:`backend_info` under ``"fallbacks"``
    (key -> message); :func:`fallbacks` returns a copy of the same dict.
    """
    with _fallbacks_lock:
        first = key not in _fallbacks
        if first:
            _fallbacks[key] = message
    if first:
        level = _caller_stacklevel() if stacklevel is None else stacklevel
        warnings.warn(message, FallbackWarning, stacklevel=level)


def fallbacks() -> dict[str, str]:
    """The fallbacks that happened in this process so far (key -> message)."""
    with _fallbacks_lock:
        return dict(_fallbacks)


def _reset_fallbacks() -> None:
    """Forget the recorded fallbacks so that they warn again (for tests)."""
    with _fallbacks_lock:
        _fallbacks.clear()


def use_triton_no_fp64(op: str, *tensors: torch.Tensor | None) -> bool:
    """:func:`use_triton` for an op whose Triton kernels take fp32/fp16/bf16 only.

    float64 inputs run the CPU path (the chunked torch implementation, on the
    tensors' device). With ``auto`` on CUDA tensors that is a change of path, so
    it warns once (:func:`warn_fallback`); with ``triton`` forced it raises.

    Parameters
    ----------
    op : str
        Name of the op, for the messages (e.g. ``"contrastive LSE"``).
    *tensors : torch.Tensor or None
        The op's tensor inputs.

    Returns
    -------
    bool
        As :func:`use_triton` (False for any float64 input).

    Raises
    ------
    ValueError
        If ``triton`` is forced and an input is float64 (and :func:`use_triton`'s
        RuntimeError otherwise).
    """
    ts = [t for t in tensors if isinstance(t, torch.Tensor)]
    if not any(t.dtype == torch.float64 for t in ts):
        return use_triton(*tensors)
    choice = requested_backend()
    if choice == "triton":
        raise ValueError(
            f"{op}: the backend is forced to 'triton' (FASTRL_BACKEND or use_backend), but its Triton "
            "kernels do not take float64 inputs; pass float32/float16/bfloat16 tensors, or use "
            "backend 'auto' or 'cpu' for the float64 torch path"
        )
    if choice == "auto" and ts and all(t.is_cuda for t in ts) and triton_available():
        warn_fallback(
            f"{op}.float64_on_cuda",
            f"fastrl: {op} on float64 CUDA tensors runs the chunked torch path instead of the fused "
            "Triton kernels (they take float32/float16/bfloat16 only)",
        )
    return False


def upcast_bf16_dot(dtype: torch.dtype) -> bool:
    """True when a kernel must upcast bf16 ``tl.dot`` operands to fp32.

    The Triton 3.x interpreter returns wrong results for bf16 ``tl.dot``; kernels
    take this flag as a ``tl.constexpr`` so that the interpreter tests stay exact,
    while real GPUs run the native bf16 tensor-core path.
    """
    return dtype == torch.bfloat16 and interpreting()


def autotune_enabled() -> bool:
    """True unless ``FASTRL_AUTOTUNE=0``: then every Triton kernel launches one fixed,
    known-good tile configuration and skips autotuning (no compile-everything first call)."""
    return os.environ.get("FASTRL_AUTOTUNE", "1") != "0"


FP32_PRECISIONS = ("tf32x3", "ieee", "tf32")


def fp32_precision(override: str | None = None) -> str:
    """``tl.dot`` input precision for fp32 operands on the GPU.

    ``"tf32x3"`` (default): TF32 tensor cores with error compensation (three TF32
    products), close to fp32 accuracy at tensor-core speed; ``"ieee"``: exact fp32
    products on the FMA units (about 30x slower); ``"tf32"``: one TF32 product
    (10-bit mantissa). Chosen by ``override``, else ``FASTRL_FP32_PRECISION``.
    The interpreter computes every precision exactly (IEEE).
    """
    name = override if override is not None else (os.environ.get("FASTRL_FP32_PRECISION") or "tf32x3")
    name = str(name).strip().lower()
    if name not in FP32_PRECISIONS:
        raise ValueError(f"fp32 precision (FASTRL_FP32_PRECISION) must be one of {FP32_PRECISIONS}, got {name!r}")
    return name


def _core():
    try:
        from fastrl import _C
    except ImportError:
        return None
    return _C


def backend_info() -> dict:
    """Report what this installation can run.

    Returns
    -------
    dict
        ``compiled_core`` (bool), ``cpu_kernel`` (the ISA of the kNN kernel in
        use: ``FASTRL_CPU_KERNEL=base|avx2|avx512`` forces one, otherwise the
        best this CPU runs), ``cpu_kernels`` (those this CPU and build run),
        ``gather`` (``"hw"`` or ``"scalar"``: how the SIMD t-SNE attractive loop
        loads neighbours, ``FASTRL_GATHER`` / ``use_gather``), ``tsne_attractive``
        (the loop a 2-D t-SNE gradient runs: ``"avx2-hw"``, ``"avx2-scalar"``,
        ``"avx512-hw"``, ``"avx512-scalar"`` or ``"base"``), ``openmp`` (bool), ``openmp_threads`` (int), ``triton`` (bool),
        ``triton_interpret`` (bool), ``cuda`` (bool), ``cuda_devices`` (int),
        ``numba`` (bool), ``torch_threads`` (int), ``requested_backend`` (str),
        ``autotune`` (bool, ``FASTRL_AUTOTUNE``), ``fp32_precision`` (str,
        ``FASTRL_FP32_PRECISION``), ``fallbacks`` (dict: key -> message of every
        change of path that happened in this process, see :func:`warn_fallback`).
    """
    from fastrl.neighbors.cpu_kernel import cpu_kernel, gather_mode
    core = _core()
    info = {
        "compiled_core": core is not None,
        "cpu_kernel": core.knn_kernel_name(cpu_kernel()) if core is not None else None,  # ValueError on a bad FASTRL_CPU_KERNEL
        "cpu_kernels": list(core.cpu_kernels_supported()) if core is not None else [],
        "gather": core.gather_mode_name(gather_mode()) if core is not None else None,
        "tsne_attractive": core.tsne_attractive_loop(cpu_kernel(), gather_mode()) if core is not None else None,
        "openmp": bool(core.has_openmp()) if core is not None else False,
        "openmp_threads": int(core.openmp_threads()) if core is not None else 1,
        "triton": triton_available(),
        "triton_interpret": interpreting(),
        "cuda": torch.cuda.is_available(),
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "numba": importlib.util.find_spec("numba") is not None,
        "torch_threads": torch.get_num_threads(),
        "requested_backend": requested_backend(),
        "autotune": autotune_enabled(),
        "fp32_precision": fp32_precision(),
        "fallbacks": fallbacks(),
    }
    return info

