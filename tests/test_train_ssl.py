"""benchmarks/train_ssl.py: every method trains (its loss falls) on 256 MNIST
digits, and the training loop runs on the Triton path (the interpreter on a
CPU machine) with the same first-step loss as the CPU path."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

from _ssl_models import METHODS  # noqa: E402
from conftest import triton_runnable  # noqa: E402
from fastrl._dispatch import use_backend  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    from _ssl_data import mnist_tensors
    try:
        X = mnist_tensors(256)[0]
    except FileNotFoundError:
        pytest.skip("MNIST not available (set FASTRL_MNIST)")
    return X


@pytest.fixture
def one_thread():
    # tiny models: a second thread only adds synchronisation
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _train(method, X, backend, **kw):
    from train_ssl import train
    with use_backend(backend):
        return train(method, X, tiny=True, progress=False, track=False, seed=0, lr=5e-3, **kw)[2]


@pytest.mark.parametrize("method", METHODS)
def test_loss_decreases(method, digits, one_thread):
    hist = _train(method, digits, "cpu", epochs=5, batch_size=64)
    losses = hist["loss_per_epoch"]
    assert len(losses) == 5 and len(hist["step_losses"]) == 20
    assert np.isfinite(hist["step_losses"]).all()
    # epoch means over the same 256 images must fall. MoCo's first epoch is
    # scored against the random initial queue (easy negatives): its loss
    # rises while real keys fill the queue, so MoCo starts from epoch 2.
    first = losses[1] if method == "moco" else losses[0]
    assert losses[-1] < first, losses


@pytest.mark.skipif(not triton_runnable(), reason="triton path not runnable here")
@pytest.mark.parametrize("method", METHODS)
def test_one_step_triton_matches_cpu(method, digits, one_thread):
    X = digits[:64]
    ref = _train(method, X, "cpu", epochs=1, batch_size=32, max_steps=1)["step_losses"]
    got = _train(method, X, "triton", epochs=1, batch_size=32, max_steps=1)["step_losses"]
    assert len(got) == 1 and np.isfinite(got[0])
    # same seed, same views and weights: the fused loss agrees with the CPU path
    np.testing.assert_allclose(got[0], ref[0], rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_bf16_autocast_step(method, digits, one_thread):
    # --device cuda trains under bf16 autocast; CPU autocast exercises the same
    # dtype plumbing (bf16 activations into the fused losses) without a GPU
    hist = _train(method, digits[:64], "cpu", epochs=1, batch_size=32, max_steps=2, bf16=True)
    ref = _train(method, digits[:64], "cpu", epochs=1, batch_size=32, max_steps=2, bf16=False)
    assert np.isfinite(hist["step_losses"]).all()
    # bf16 activations (8-bit mantissa) change the first loss only slightly
    np.testing.assert_allclose(hist["step_losses"][0], ref["step_losses"][0], rtol=0.05, atol=0.02)
