"""Which SIMD build of the compiled core's loops runs: ``FASTRL_CPU_KERNEL``
and the thread-local :func:`use_cpu_kernel` switch.

The core (``fastrl._C``) compiles its hot loops once per instruction set
(``base``, ``avx2``, ``avx512``) and runs the one named by the ``cpu_kernel``
argument of each call; ``"auto"`` is the best this CPU and build support. The
name passed is, in order: the innermost :func:`use_cpu_kernel` block of the
calling thread, then ``FASTRL_CPU_KERNEL`` as it was when fastrl was imported,
then ``"auto"``. The variable is read once, here: the core never calls
``getenv``, which would race with ``os.environ`` changes made by other threads
while a kernel runs without the GIL.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import Iterator

KERNEL_NAMES = ("auto", "base", "avx2", "avx512")
ENV_VAR = "FASTRL_CPU_KERNEL"

_ENV_VALUE = os.environ.get(ENV_VAR, "")  # read once, at import
_local = threading.local()


@functools.lru_cache(maxsize=None)
def supported_cpu_kernels() -> tuple[str, ...]:
    """The kernels this CPU and build run, narrowest first (``("base",)``
    without the compiled core)."""
    try:
        from fastrl import _C
    except ImportError:
        return ("base",)
    return tuple(_C.cpu_kernels_supported())


def check_cpu_kernel(name, source: str = "cpu_kernel") -> str:
    """``name`` as a kernel this machine runs (``""`` and ``"auto"`` give
    ``"auto"``).

    Parameters
    ----------
    name : str
        ``"auto"``, ``"base"``, ``"avx2"`` or ``"avx512"``.
    source : str
        The setting named in the error message.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For an unknown name, or a kernel this CPU (or this build) cannot run.
    """
    if not isinstance(name, str):
        raise ValueError(f"{source} must be one of {KERNEL_NAMES}, got {name!r}")
    want = name.strip().lower()
    if want in ("", "auto"):
        return "auto"
    if want not in KERNEL_NAMES:
        raise ValueError(f"{source} must be one of 'auto', 'base', 'avx2', 'avx512'; got {name!r}")
    supported = supported_cpu_kernels()
    if want not in supported:
        raise ValueError(f"{source}={want}: this CPU (or this build) cannot run the {want!r} kernel; "
                         f"the best it supports is {supported[-1]!r}")
    return want


def cpu_kernel() -> str:
    """The kernel name the native calls of this thread pass (``"auto"`` or a
    kernel this CPU runs).

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If ``FASTRL_CPU_KERNEL`` (as read at import) names an unknown kernel
        or one this CPU lacks, and no :func:`use_cpu_kernel` block is active.
    """
    override = getattr(_local, "kernel", None)
    if override is not None:
        return override
    return check_cpu_kernel(_ENV_VALUE, ENV_VAR)


@contextlib.contextmanager
def use_cpu_kernel(name: str) -> Iterator[str]:
    """Run the compiled core's SIMD kernel ``name`` inside a ``with`` block.

    The choice is thread-local (other threads keep theirs), nests, and takes
    precedence over ``FASTRL_CPU_KERNEL``; ``fastrl.backend_info()["cpu_kernel"]``
    reports it. An AVX-512 machine can so test and time the AVX2 path::

        with fastrl.use_cpu_kernel("avx2"):
            idx, dist = fastrl.neighbors.knn_graph(X, 15)

    Parameters
    ----------
    name : {"auto", "base", "avx2", "avx512"}
        ``"auto"``: the best this CPU and build run.

    Yields
    ------
    str
        The checked name.

    Raises
    ------
    ValueError
        On entry, for an unknown name or a kernel this CPU (or build) cannot
        run (never a silent fallback).
    """
    name = check_cpu_kernel(name, "use_cpu_kernel")
    previous = getattr(_local, "kernel", None)
    _local.kernel = name
    try:
        yield name
    finally:
        _local.kernel = previous
