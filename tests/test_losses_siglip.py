"""SigLIP loss: both paths (chunked CPU, Triton) against the fp64 full-matrix
reference, with tiles small enough that every loop (rows, columns, D slices)
runs several times; open_clip's SigLipLoss as the peer."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fastrl.losses.siglip.cpu as cpu_path
from dist_utils import require_peer
from fastrl.losses import SigLipLoss, siglip_loss
from fastrl.losses.siglip.reference import siglip_loss_reference

# relative error (max |err| / max |ref|) of fp32/fp16/bf16 inputs, measured against
# fp64 on these inputs (N = 130, D = 33): loss <= 1.2e-7, grads <= 4.7e-4 (fp16),
# 3.1e-3 (bf16: the gradient rounded to bf16), 4.5e-7 (fp32); tolerances ~3x
TOL = {torch.float32: (4e-7, 1.5e-6), torch.float16: (1e-6, 1.5e-3), torch.bfloat16: (1e-6, 1e-2),
       torch.float64: (1e-13, 1e-12)}


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    """64-wide row/column tiles, 16-wide D slices, ~64-row CPU chunks."""
    monkeypatch.setattr(cpu_path, "CHUNK_ELEMENTS", 64 * 130)
    try:
        import fastrl.losses.siglip.triton_kernels as tk
    except ImportError:  # no triton: the CPU path only
        return
    monkeypatch.setattr(tk, "BLOCK_M", 64)
    monkeypatch.setattr(tk, "BLOCK_N", 64)
    monkeypatch.setattr(tk, "BLOCK_D_MAX", 16)


def _inputs(n, d, seed, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    y = F.normalize(x + torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    return x.to(dtype).to(device), y.to(dtype).to(device)


def _run(fn, x, y, scale, bias, gout=1.7, **kw):
    x, y = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    s = torch.tensor(scale, dtype=cdt, device=x.device, requires_grad=True)
    b = torch.tensor(bias, dtype=cdt, device=x.device, requires_grad=True)
    loss = fn(x, y, s, b, **kw)
    grads = torch.autograd.grad(loss * gout, [x, y, s, b])
    return [loss.detach().double().cpu()] + [t.double().cpu() for t in grads]


def _check(out, ref, tol_loss, tol_grad):
    names = ("loss", "dx", "dy", "dscale", "dbias")
    for got, want, name in zip(out, ref, names):
        err = float((got - want).abs().max()) / max(float(want.abs().max()), 1e-30)
        tol = tol_loss if name == "loss" else tol_grad
        assert err <= tol, (name, err, tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,d,scale,bias", [(130, 33, 10.0, -10.0), (7, 20, 3.0, 0.5), (1, 3, 1.0, -2.0)])
def test_matches_fp64_reference(backend, device, dtype, n, d, scale, bias):
    x, y = _inputs(n, d, seed=n + d, dtype=dtype)
    ref = _run(siglip_loss_reference, x.double(), y.double(), scale, bias)  # the rounded inputs, in fp64
    out = _run(siglip_loss, x.to(device), y.to(device), scale, bias)
    _check(out, ref, *TOL[dtype])


def test_fp64_cpu_path_exact():
    x, y = _inputs(130, 33, seed=1)
    _check(_run(siglip_loss, x, y, 10.0, -10.0), _run(siglip_loss_reference, x, y, 10.0, -10.0),
           *TOL[torch.float64])


def test_negative_only(backend, device):
    x, y = _inputs(130, 33, seed=2, dtype=torch.float32)
    ref = _run(siglip_loss_reference, x.double(), y.double(), 5.0, -1.0, negative_only=True)
    out = _run(siglip_loss, x.to(device), y.to(device), 5.0, -1.0, negative_only=True)
    _check(out, ref, *TOL[torch.float32])


def test_tiny_softplus_terms_kept(backend, device):
    """Negatives far below the margin: softplus(t) ~ exp(t) < fp32 epsilon must not round to 0."""
    x, y = _inputs(70, 16, seed=3, dtype=torch.float32)
    ref = _run(siglip_loss_reference, x.double(), y.double(), 1.0, -25.0)
    out = _run(siglip_loss, x.to(device), y.to(device), 1.0, -25.0)
    _check(out, ref, *TOL[torch.float32])


def test_chunked_cpu_never_holds_full_matrix(monkeypatch):
    seen = []
    orig = cpu_path._margins

    def spy(x, y, r0, r1, *args):
        seen.append(r1 - r0)
        return orig(x, y, r0, r1, *args)

    monkeypatch.setattr(cpu_path, "_margins", spy)
    x, y = _inputs(130, 33, seed=4, dtype=torch.float32)
    x.requires_grad_()
    siglip_loss(x, y, 10.0, -10.0).backward()
    # one fused forward + gradient pass over the 130 rows in 64-row blocks
    assert seen and max(seen) <= 64 and len(seen) == 3


def test_forward_only_matches_reference(backend, device):
    """No gradient wanted (eval, no_grad): the forward-only path."""
    x, y = _inputs(130, 33, seed=8, dtype=torch.float32)
    want = float(siglip_loss_reference(x.double(), y.double(), 10.0, -10.0))
    xr = x.to(device).requires_grad_()
    with torch.no_grad():
        got = siglip_loss(xr, y.to(device), 10.0, -10.0)
    assert not got.requires_grad
    assert abs(float(got) - want) <= TOL[torch.float32][0] * abs(want)
    assert abs(float(siglip_loss(x.to(device), y.to(device), 10.0, -10.0)) - want) <= TOL[torch.float32][0] * abs(want)


def test_open_clip_parity(backend, device):
    peer = require_peer("open_clip_siglip")
    x, y = _inputs(33, 20, seed=5, dtype=torch.float32)
    outs = []
    for fn, dev in ((SigLipLoss(), device), (peer(), "cpu")):
        outs.append(_run(lambda a, b, s, t: fn(a, b, s, t), x.to(dev), y.to(dev), 10.0, -10.0))
    ref = _run(siglip_loss_reference, x.double(), y.double(), 10.0, -10.0)
    # open_clip's own fp32 error against fp64 bounds ours (within 3x or 1e-4 relative)
    for ours, theirs, want in zip(outs[0], outs[1], ref):
        peer_err = float((theirs - want).abs().max())
        err = float((ours - want).abs().max())
        assert err <= max(3 * peer_err, 1e-4 * float(want.abs().max())), (err, peer_err)


def test_get_logits_and_ground_truth():
    peer = require_peer("open_clip_siglip")
    x, y = _inputs(9, 5, seed=6, dtype=torch.float32)
    ours, theirs = SigLipLoss(), peer()
    torch.testing.assert_close(ours.get_logits(x, y, 3.0, -1.0), theirs.get_logits(x, y, 3.0, -1.0))
    for neg in (False, True):
        torch.testing.assert_close(ours.get_ground_truth("cpu", torch.float32, 9, neg),
                                   theirs.get_ground_truth("cpu", torch.float32, 9, neg))
    d = SigLipLoss()(x, y, 3.0, -1.0, output_dict=True)
    assert set(d) == {"contrastive_loss"}


def test_bad_inputs():
    x, y = torch.randn(5, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="text_features"):
        siglip_loss(x, torch.randn(6, 4), 1.0, 0.0)
    with pytest.raises(ValueError, match="D = 0"):
        siglip_loss(x[:, :0], y[:, :0], 1.0, 0.0)
    with pytest.raises(ValueError, match="logit_scale"):
        siglip_loss(x, y, 0.0, 0.0)
    with pytest.raises(ValueError, match="logit_scale"):
        siglip_loss(x, y, 1e39, 0.0)
    with pytest.raises(ValueError, match="logit_bias"):
        siglip_loss(x, y, 1.0, float("inf"))
    with pytest.raises(ValueError, match="empty"):
        siglip_loss(x[:0], y[:0], 1.0, 0.0)
    bad = x.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="image_features contains NaN"):
        siglip_loss(bad, y, 1.0, 0.0)
    with pytest.raises(ValueError, match="dist_impl"):
        SigLipLoss(dist_impl="ring")
    with pytest.raises(ValueError, match="world_size"):
        SigLipLoss(rank=0, world_size=2)(x, y, 1.0, 0.0)
    assert SigLipLoss(bidir=False).dist_impl == "shift"


@pytest.mark.parametrize("autotune", ["0", "1"])
def test_triton_cuda_autotune_switch(monkeypatch, autotune):
    """On a GPU: the autotuned and the fixed-config kernels agree with the reference."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA (the interpreter always runs the fixed tiles)")
    from fastrl import use_backend
    from fastrl._dispatch import autotune_enabled
    monkeypatch.setenv("FASTRL_AUTOTUNE", autotune)
    assert autotune_enabled() == (autotune == "1")
    x, y = _inputs(1000, 96, seed=7, dtype=torch.float32)
    ref = _run(siglip_loss_reference, x.double(), y.double(), 10.0, -10.0)
    with use_backend("triton"):
        out = _run(siglip_loss, x.cuda(), y.cuda(), 10.0, -10.0)
    _check(out, ref, 4e-7, 1.5e-6)


def test_default_tiles(backend, device, monkeypatch):
    """The module's default tiles (one D slice) on both paths."""
    try:
        import fastrl.losses.siglip.triton_kernels as tk
        monkeypatch.setattr(tk, "BLOCK_D_MAX", None)
    except ImportError:  # no triton: the CPU path only
        pass
    monkeypatch.setattr(cpu_path, "CHUNK_ELEMENTS", 1 << 23)
    x, y = _inputs(70, 40, seed=9, dtype=torch.float32)
    ref = _run(siglip_loss_reference, x.double(), y.double(), 10.0, -10.0)
    _check(_run(siglip_loss, x.to(device), y.to(device), 10.0, -10.0), ref, *TOL[torch.float32])
