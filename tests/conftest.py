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

Tolerances
----------
A tolerance is set from a measurement, never guessed (flash-attention's rule):

* **rounding** - a path in float32 (or float16/bfloat16) is compared with a
  float64 oracle, and its error may be at most 3x the error of the
  *reference in that dtype* against the same oracle (the plain torch / numpy
  computation, or fastrl's CPU path, run in float32). That reference error is
  measured over several seeds (at least five where the test is cheap; and
  over 1 and 2 threads where the summation order follows the thread count),
  its maximum written next to the test with what was measured, and the bound is
  ``3 * measured`` (:func:`assert_within_rounding`). A float64 path is bounded
  the same way by the float64 reference's own error (other summation orders).
* **approximation** - an approximate method at fixed settings (Barnes-Hut at a
  fixed angle, FFT interpolation on a fixed grid) is bounded by 1.5-2x its
  error measured once over several seeds at those settings
  (``factor=2`` in :func:`assert_within_rounding`), not by a round 5 or 10%.

Errors are normwise: ``max |got - want| / max |want|`` (:func:`rel_err`), so
small entries cannot inflate them and large ones cannot hide behind an atol.
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


def rel_err(got, want) -> float:
    """Normwise relative error ``max |got - want| / max |want|`` (arrays, tensors or scalars), in float64."""
    got = np.asarray(got.detach().cpu().double() if isinstance(got, torch.Tensor) else got, dtype=np.float64)
    want = np.asarray(want.detach().cpu().double() if isinstance(want, torch.Tensor) else want, dtype=np.float64)
    scale = float(np.abs(want).max())
    return float(np.abs(got - want).max()) / (scale if scale > 0 else 1.0)


def assert_within_rounding(err: float, measured: float, factor: float = 3.0, what: str = "error") -> None:
    """Fail unless ``err <= factor * measured`` (the rule above: ``measured`` is the reference's
    own error, or the method's, measured over several seeds; ``factor`` 3 for rounding, 2 for methods)."""
    assert measured > 0, f"{what}: the measured reference error must be > 0, got {measured}"
    assert err <= factor * measured, (f"{what} {err:.3g} exceeds {factor:g}x the error measured for it "
                                      f"({measured:.3g}; bound {factor * measured:.3g})")


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
