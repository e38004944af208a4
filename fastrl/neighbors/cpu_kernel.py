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

``FASTRL_GATHER`` and :func:`use_gather` work the same way for a sibling
choice: how the SIMD builds of the 2-D t-SNE attractive loop load the
neighbours' coordinates, by hardware gathers (``"hw"``) or scalar loads
(``"scalar"``; faster on AMD up to Zen 4, measured on a Zen 3 and a Zen 4);
``"auto"`` picks by CPU family.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import Iterator

KERNEL_NAMES = ("auto", "base", "avx2", "avx512")
ENV_VAR = "FASTRL_CPU_KERNEL"
GATHER_NAMES = ("auto", "hw", "scalar")
GATHER_ENV_VAR = "FASTRL_GATHER"

_ENV_VALUE = os.environ.get(ENV_VAR, "")  # read once, at import
_GATHER_ENV_VALUE = os.environ.get(GATHER_ENV_VAR, "")  # read once, at import
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
    want = _normalised(name, KERNEL_NAMES, source)
    if want == "auto":
        return want
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
    return _current("kernel", check_cpu_kernel, _ENV_VALUE, ENV_VAR)


def _normalised(name, names: tuple[str, ...], source: str) -> str:
    """``name`` stripped and lower-cased (``""`` gives ``"auto"``); ValueError unless one of ``names``."""
    want = name.strip().lower() if isinstance(name, str) else None
    want = "auto" if want == "" else want
    if want not in names:
        raise ValueError(f"{source} must be one of {', '.join(map(repr, names))}; got {name!r}")
    return want


def _current(attr: str, check, env_value: str, env_var: str) -> str:
    """The innermost block's thread-local ``attr``, else the checked variable as read at import."""
    override = getattr(_local, attr, None)
    return override if override is not None else check(env_value, env_var)


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
    with _scoped("kernel", check_cpu_kernel(name, "use_cpu_kernel")) as checked:
        yield checked


@contextlib.contextmanager
def _scoped(attr: str, value: str) -> Iterator[str]:
    """Set the thread-local ``attr`` to ``value`` for a ``with`` block (nests)."""
    previous = getattr(_local, attr, None)
    setattr(_local, attr, value)
    try:
        yield value
    finally:
        setattr(_local, attr, previous)


def check_gather(name, source: str = "gather") -> str:
    """``name`` (``"auto"``, ``"hw"`` or ``"scalar"``; ``""`` gives
    ``"auto"``) checked: ValueError naming ``source`` for another."""
    return _normalised(name, GATHER_NAMES, source)


def gather_mode() -> str:
    """The gather mode (``"auto"``, ``"hw"`` or ``"scalar"``) the native t-SNE
    attractive calls of this thread pass: the innermost :func:`use_gather`
    block, else ``FASTRL_GATHER`` as read at import (ValueError when it names
    another mode), else ``"auto"``."""
    return _current("gather", check_gather, _GATHER_ENV_VALUE, GATHER_ENV_VAR)


@contextlib.contextmanager
def use_gather(name: str) -> Iterator[str]:
    """Choose how the SIMD t-SNE attractive loop loads the neighbours'
    coordinates inside a ``with`` block.

    Thread-local, nests, and takes precedence over ``FASTRL_GATHER``, like
    :func:`use_cpu_kernel`; ``fastrl.backend_info()["tsne_attractive"]``
    reports the loop that runs (e.g. ``"avx2-scalar"``). It changes the speed
    only: both modes fill the same lanes, the forces are identical::

        with fastrl.use_gather("hw"):
            Y = fastrl.manifold.TSNE().fit_transform(X)

    Parameters
    ----------
    name : {"auto", "hw", "scalar"}
        ``"hw"``: hardware gathers (``vgatherdpd``); ``"scalar"``: one scalar
        load per neighbour; ``"auto"``: scalar on CPUs with slow gathers (AMD
        and Hygon up to family 0x19, Zen 1-4: measured on a Zen 3 and a Zen
        4), hardware gathers elsewhere (a tie on an Intel Emerald Rapids;
        Zen 5 unmeasured).

    Yields
    ------
    str
        The checked name.

    Raises
    ------
    ValueError
        On entry, for an unknown name.
    """
    with _scoped("gather", check_gather(name, "use_gather")) as checked:
        yield checked
