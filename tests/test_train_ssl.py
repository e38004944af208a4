"""benchmarks/train_ssl.py: every method trains (its loss falls) on 256 MNIST
digits; its first step (loss and every parameter's gradient) equals the same
step with fastrl's float64 loss references (the formulas in plain torch); and
the Triton path (the interpreter on a CPU machine) gives that step within the
measured float32 rounding of the CPU path (tests/conftest.py states the rule)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

from _ssl_models import METHODS  # noqa: E402
from conftest import assert_within_rounding, rel_err, triton_runnable  # noqa: E402
from fastrl._dispatch import use_backend  # noqa: E402

# The names _ssl_models calls, and the float64 oracle of each (fastrl's references).
REFERENCE_LOSSES = {
    "nt_xent": ("fastrl.losses.contrastive.reference", "nt_xent_reference"),
    "moco_loss": ("fastrl.losses.contrastive.reference", "moco_reference"),
    "clip_loss": ("fastrl.losses.contrastive.reference", "clip_loss_reference"),
    "barlow_twins_loss": ("fastrl.losses.decorrelation.reference", "barlow_twins_reference"),
    "vicreg_loss": ("fastrl.losses.decorrelation.reference", "vicreg_reference"),
    "simsiam_loss": ("fastrl.losses.decorrelation.reference", "simsiam_reference"),
    "mae_loss": ("fastrl.masking.reference", "mae_forward_loss"),
}

# Measured (tests/conftest.py states the rule) over seeds 0-4 and 1 and 2 threads, 32 digits, tiny
# models: max error of the first step against the float64 step with the oracle losses, as (loss
# relative to |loss|, gradient relative to its largest entry). FP32: fastrl's CPU path in float32
# (the model in float32 too), the reference of the Triton path's rounding (Triton measured: at most
# 1.0x of these on the loss and 0.84-1.0x on the gradient, seeds 0-2). SimSiam's loss is a
# difference of cosines near 0 at initialisation, hence its larger relative loss error.
FP32_CPU_ERR = {"simclr": (1.38e-07, 2.97e-06), "moco": (1.17e-07, 4.21e-06), "clip": (6.62e-08, 2.71e-06),
                "barlow": (1.80e-07, 2.15e-06), "vicreg": (1.57e-07, 2.10e-06), "simsiam": (2.31e-05, 2.09e-06),
                "mae": (5.50e-08, 6.75e-07)}
# FP64: fastrl's CPU path in float64 against the oracles (summation order only: max over methods
# 4.2e-16 and 5.1e-15; 0 where the formulas coincide). MAE's gradient, measured on its own (seeds 0-4,
# 1 and 2 threads): 2.4e-16, fp64 rounding, now that mae_loss's backward forms its scale 1 / sum(mask)
# in float64 for float64 inputs (it was 1.5e-8 with the scale in float32).
FP64_ERR = (4.17e-16, 5.13e-15)
FP64_MAE_GRAD_ERR = 2.41e-16


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
    # tiny models: a second thread only adds synchronisation. The float32 rounding of the step (the
    # measured bounds below) depends on torch's thread count, so it must stay 1 for the whole test:
    # the Numba kernels of MAE (shuffle, gather, loss) leave it as they found it, although launching
    # Numba's OpenMP pool resets it to Numba's count (fastrl.masking._numba_kernels.run puts it back;
    # Numba's own count is not pinned here).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    during = torch.get_num_threads()
    torch.set_num_threads(n)
    assert during == 1, f"torch's thread count changed during the test: 1 -> {during}"


def _train(method, X, backend, **kw):
    from train_ssl import train
    with use_backend(backend):
        return train(method, X, tiny=True, progress=False, track=False, seed=0, lr=5e-3, **kw)[2]


def _reference(name):
    import importlib
    module, attr = REFERENCE_LOSSES[name]
    fn = getattr(importlib.import_module(module), attr)
    if name == "mae_loss":  # mae_forward_loss(imgs, pred, mask, p, norm) <- mae_loss(pred, imgs, mask, p, norm)
        return lambda pred, imgs, mask, p, norm_pix_loss=True: fn(imgs, pred, mask, p, norm_pix_loss)
    return fn


def _first_step(method, X, *, dtype=torch.float32, backend="cpu", reference=False, seed=0, batch_size=32):
    """Loss and parameter gradients of train()'s first step (same initial weights, batch,
    views and RNG stream), in ``dtype``; ``reference``: with the float64 oracle losses."""
    import _ssl_models
    torch.manual_seed(seed)
    model = _ssl_models.build(method, tiny=True)
    perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(seed * 1000))
    views = model.views(X[perm[:batch_size]], torch.Generator().manual_seed(seed))
    model = model.to(dtype)
    views = tuple(v.to(dtype) for v in views)
    saved = {name: getattr(_ssl_models, name) for name in REFERENCE_LOSSES}
    try:
        if reference:
            for name in REFERENCE_LOSSES:
                setattr(_ssl_models, name, _reference(name))
        with use_backend(backend):
            loss = model.loss(views)
            loss.backward()
    finally:
        for name, fn in saved.items():
            setattr(_ssl_models, name, fn)
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    return float(loss.detach()), grads.double()


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


@pytest.mark.parametrize("method", METHODS)
def test_first_step_matches_float64_references(method, digits, one_thread):
    """A wrong loss or a wrong gradient still lets the loss fall (AdamW is blind to a gradient's
    scale): the first step is checked against the plain-torch oracles, every parameter's gradient."""
    X = digits[:64]
    want, g_want = _first_step(method, X, dtype=torch.float64, reference=True)
    got, g_got = _first_step(method, X, dtype=torch.float64)
    assert_within_rounding(rel_err(got, want), FP64_ERR[0], what=f"{method} float64 loss")
    grad_err = FP64_MAE_GRAD_ERR if method == "mae" else FP64_ERR[1]
    assert_within_rounding(rel_err(g_got, g_want), grad_err, what=f"{method} float64 gradient")
    # the helper is train()'s first step: same weights, batch, views and RNG stream
    l32, g32 = _first_step(method, X)
    assert _train(method, X, "cpu", epochs=1, batch_size=32, max_steps=1)["step_losses"] == [l32]
    assert_within_rounding(rel_err(l32, want), FP32_CPU_ERR[method][0], what=f"{method} float32 CPU loss")
    assert_within_rounding(rel_err(g32, g_want), FP32_CPU_ERR[method][1], what=f"{method} float32 CPU gradient")


@pytest.mark.skipif(not triton_runnable(), reason="triton path not runnable here")
@pytest.mark.parametrize("method", METHODS)
def test_one_step_triton_matches_cpu(method, digits, one_thread):
    X = digits[:64]
    want, g_want = _first_step(method, X, dtype=torch.float64, reference=True)
    got, g_got = _first_step(method, X, backend="triton")
    assert np.isfinite(got)
    # same seed, views and weights: the fused kernels' step is within 3x the CPU path's float32 rounding
    assert_within_rounding(rel_err(got, want), FP32_CPU_ERR[method][0], what=f"{method} Triton loss")
    assert_within_rounding(rel_err(g_got, g_want), FP32_CPU_ERR[method][1], what=f"{method} Triton gradient")


@pytest.mark.parametrize("method", METHODS)
def test_bf16_autocast_step(method, digits, one_thread):
    # --device cuda trains under bf16 autocast; CPU autocast exercises the same
    # dtype plumbing (bf16 activations into the fused losses) without a GPU
    hist = _train(method, digits[:64], "cpu", epochs=1, batch_size=32, max_steps=2, bf16=True)
    ref = _train(method, digits[:64], "cpu", epochs=1, batch_size=32, max_steps=2, bf16=False)
    assert np.isfinite(hist["step_losses"]).all()
    # bf16 activations (8-bit mantissa) change the first loss only slightly
    np.testing.assert_allclose(hist["step_losses"][0], ref["step_losses"][0], rtol=0.05, atol=0.02)
