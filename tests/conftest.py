"""Shared test machinery.

Backends
--------
Tests that take the ``backend`` fixture run once per path: ``"cpu"`` and
``"triton"``. Without a CUDA device the Triton path runs under the Triton
interpreter on CPU tensors: this file sets ``TRITON_INTERPRET=1`` before any
fastrl kernel module is imported (``@triton.jit`` reads it at decoration time).

* ``pytest``                      - CPU machine: interpreter on (the CI default);
                                     CUDA machine: real kernels on the GPU.
* ``TRITON_INTERPRET=1 pytest``   - interpreter on, even on a CUDA machine.
* ``TRITON_INTERPRET=0 pytest``   - interpreter off; without CUDA the Triton
                                     half of each test is skipped.

The ``device`` fixture gives the device the chosen path runs on.
"""
from __future__ import annotations

import os

import pytest

if "TRITON_INTERPRET" not in os.environ:
    try:
        import torch as _torch
        _cuda = _torch.cuda.is_available()
    except Exception:  # pragma: no cover
        _cuda = False
    if not _cuda:
        os.environ["TRITON_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fastrl._dispatch import interpreting, triton_available, use_backend  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


def triton_runnable() -> bool:
    """Triton kernels can run here: on CUDA, or on CPU through the interpreter."""
    return triton_available() and (torch.cuda.is_available() or interpreting())


def triton_device() -> str:
    return "cpu" if interpreting() or not torch.cuda.is_available() else "cuda"


@pytest.fixture(params=["cpu", "triton"])
def backend(request):
    """Run the test once on the CPU path and once on the Triton path."""
    name = request.param
    if name == "triton" and not triton_runnable():
        pytest.skip("triton path not runnable here (no CUDA and TRITON_INTERPRET=0, or triton missing)")
    with use_backend(name):
        yield name


@pytest.fixture
def device(backend):
    """Device for the tensors of a ``backend`` test."""
    return triton_device() if backend == "triton" else "cpu"


@pytest.fixture
def rng():
    """A fresh, seeded numpy generator per test."""
    return np.random.default_rng(12345)


@pytest.fixture
def mnist():
    """Real MNIST (X uint8 [70000, 784], y uint8): skips when not present."""
    from fastrl.datasets import load_mnist
    try:
        return load_mnist()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
