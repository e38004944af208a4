"""fastrl: fast kernels for representation learning.

Submodules are imported on first use, so ``import fastrl`` stays cheap and
works without triton (and without the compiled core, for the torch-only ops).

* :mod:`fastrl.neighbors` - exact and approximate kNN graphs
* :mod:`fastrl.manifold` - t-SNE and classical embeddings
* :mod:`fastrl.losses` - fused self-supervised losses
* :mod:`fastrl.masking` - masked-modelling ops
* :mod:`fastrl.metrics`, :mod:`fastrl.plot` - representation quality
"""
from __future__ import annotations

import importlib

from fastrl._dispatch import backend_info, use_backend
from fastrl.neighbors.cpu_kernel import use_cpu_kernel, use_gather  # reads FASTRL_CPU_KERNEL, FASTRL_GATHER once, now

__version__ = "0.1.0"
__all__ = ["backend_info", "use_backend", "use_cpu_kernel", "use_gather", "__version__"]

_SUBMODULES = {"neighbors", "manifold", "losses", "masking", "metrics", "plot", "datasets", "distributed"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"fastrl.{name}")
    raise AttributeError(f"module 'fastrl' has no attribute {name!r}")
