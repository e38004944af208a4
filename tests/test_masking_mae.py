"""MAE ops: patchify round trip, random masking and fused patchify+mask parity
with MAE's argsort-of-noise algorithm, masking statistics, fused loss parity
(forward and gradient), bad input."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from fastrl import use_backend
from fastrl.masking import (MAELoss, PatchifyAndMask, RandomMasking, mae_loss, patchify, patchify_and_mask,
                            random_masking, unpatchify)
from fastrl.masking import reference as R

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# About 3x the largest error against the fp64 reference (same rounded inputs),
# measured over 6 seeds on the CPU and Triton-interpreter paths of these tests:
# fp32 loss 1.2e-7, grad 1.8e-7; fp16 3.6e-4, 3.4e-4; bf16 3.2e-3, 5.6e-3.
# Loss: relative error; gradient: max abs error / max |reference gradient|.
TOL = {torch.float32: dict(loss=4e-7, grad=6e-7), torch.float16: dict(loss=1.1e-3, grad=1.1e-3),
       torch.bfloat16: dict(loss=1e-2, grad=1.7e-2)}


def _loss_err(out, ref):
    return abs(out.double().item() - ref.item()) / abs(ref.item())


def _grad_err(grad, ref):
    return ((grad.cpu().double() - ref).abs().max() / ref.abs().max()).item()


def _imgs(B=2, C=3, H=12, W=20, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, C, H, W, generator=g).to(dtype).to(device)


@pytest.mark.parametrize("C,H,W,p", [(3, 12, 12, 4), (1, 10, 15, 5), (3, 12, 20, 4), (2, 7, 7, 1)])
def test_patchify_matches_mae_and_round_trips(C, H, W, p):
    imgs = _imgs(3, C, H, W)
    x = patchify(imgs, p)
    assert x.shape == (3, (H // p) * (W // p), p * p * C)
    # MAE's element order, checked pixel by pixel on the first patch of each row
    w = W // p
    for b, l in [(0, 0), (2, (H // p) * w - 1), (1, w)]:
        hi, wi = divmod(l, w)
        patch = imgs[b, :, hi * p:(hi + 1) * p, wi * p:(wi + 1) * p].permute(1, 2, 0).reshape(-1)
        assert torch.equal(x[b, l], patch)
    if H == W:
        assert torch.equal(x, R.patchify(imgs, p))
        assert torch.equal(unpatchify(x, p, C), imgs)
        assert torch.equal(R.unpatchify(x, p, C), imgs)
    assert torch.equal(unpatchify(x, p, C, grid=(H // p, W // p)), imgs)


def _noise(B, L, seed=1, ties=False):
    g = torch.Generator().manual_seed(seed)
    if ties:  # many equal values: MAE's order is the stable one (lower index first)
        return torch.randint(0, 4, (B, L), generator=g).float()
    return torch.rand(B, L, generator=g)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ratio,ties", [(0.75, False), (0.5, True), (0.0, False), (0.9, False)])
def test_random_masking_equals_mae(backend, device, dtype, ratio, ties):
    x = torch.randn(3, 15, 7).to(dtype)
    noise = _noise(3, 15, ties=ties)
    ref = R.random_masking(x, ratio, noise)
    out = random_masking(x.to(device), ratio, noise=noise.to(device))
    for a, b in zip(out, ref):
        assert torch.equal(a.cpu(), b), (a, b)
    assert out[1].dtype == torch.float32 and out[2].dtype == torch.int64
    assert out[0].shape == (3, int(15 * (1 - ratio)), 7)


def test_random_masking_gradient(backend, device):
    x = torch.randn(2, 11, 5, device=device, requires_grad=True)
    xr = x.detach().cpu().clone().requires_grad_()
    noise = _noise(2, 11)
    out = random_masking(x, 0.6, noise=noise.to(device))[0]
    ref = R.random_masking(xr, 0.6, noise)[0]
    go = torch.randn_like(ref)
    out.backward(go.to(device))
    ref.backward(go)
    assert torch.equal(x.grad.cpu(), xr.grad)


def test_random_masking_keeps_each_patch_with_prob_1_minus_ratio():
    B, L, ratio = 20000, 5, 0.6  # keep 2 of 5
    g = torch.Generator().manual_seed(7)
    x = torch.arange(L, dtype=torch.float32).view(1, L, 1).expand(B, L, 1).contiguous()
    vis, mask, ids_restore = random_masking(x, ratio, generator=g)
    keep = int(L * (1 - ratio))
    assert torch.equal(mask.sum(1), torch.full((B,), float(L - keep)))
    # per patch: kept ~ Binomial(B, 1 - ratio), 5 sigma
    kept = (1 - mask).sum(0)
    p = keep / L
    assert ((kept - B * p).abs() <= 5 * math.sqrt(B * p * (1 - p))).all(), kept
    # uniform over the 10 subsets of size 2
    subsets = {s: 0 for s in itertools.combinations(range(L), keep)}
    for row in vis[..., 0].long().sort(1).values.tolist():
        subsets[tuple(row)] += 1
    q = 1 / len(subsets)
    for s, n in subsets.items():
        assert abs(n - B * q) <= 5 * math.sqrt(B * q * (1 - q)), (s, n)
    # the kept order is random too (not sorted by index): both orders appear
    first_smaller = (vis[:, 0, 0] < vis[:, 1, 0]).float().mean().item()
    assert abs(first_smaller - 0.5) <= 5 * math.sqrt(0.25 / B)
    # ids_restore is the inverse of the shuffle: restoring puts patches back in place
    full = torch.cat([vis, torch.full((B, L - keep, 1), -1.0)], 1)
    restored = torch.gather(full, 1, ids_restore.unsqueeze(-1))
    assert torch.equal(restored[mask == 0], x[mask == 0])


def test_random_masking_generator_reproducible():
    x = torch.randn(4, 9, 3)
    a = random_masking(x, 0.5, generator=torch.Generator().manual_seed(3))
    b = RandomMasking(0.5)(x, generator=torch.Generator().manual_seed(3))
    for u, v in zip(a, b):
        assert torch.equal(u, v)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C,H,W,p,ratio", [(3, 12, 20, 4, 0.75), (1, 15, 10, 5, 0.5), (3, 8, 8, 4, 0.0)])
def test_patchify_and_mask_equals_mae(backend, device, dtype, C, H, W, p, ratio):
    imgs = _imgs(2, C, H, W, dtype)
    L = (H // p) * (W // p)
    noise = _noise(2, L)
    ref = R.random_masking(patchify(imgs, p), ratio, noise)
    out = patchify_and_mask(imgs.to(device), p, ratio, noise=noise.to(device))
    for a, b in zip(out, ref):
        assert a.dtype == b.dtype
        assert torch.equal(a.cpu(), b)


def test_patchify_and_mask_module_generator_and_autograd():
    imgs = _imgs(3, 3, 16, 16)
    a = patchify_and_mask(imgs, 4, 0.75, generator=torch.Generator().manual_seed(5))
    b = PatchifyAndMask(4, 0.75)(imgs, generator=torch.Generator().manual_seed(5))
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    # images that need a gradient take the differentiable path
    im = imgs.clone().requires_grad_()
    vis, mask, _ = patchify_and_mask(im, 4, 0.75, generator=torch.Generator().manual_seed(5))
    assert torch.equal(vis, a[0])
    vis.sum().backward()
    per_patch = patchify(im.grad, 4).sum(-1) / 48
    assert torch.equal(per_patch, 1 - mask)


@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("C,H,W,p", [(3, 12, 20, 4), (1, 10, 15, 5)])
def test_mae_loss_forward_and_gradient(backend, device, norm, C, H, W, p):
    B = 3
    imgs = _imgs(B, C, H, W, seed=2)
    L, D = (H // p) * (W // p), p * p * C
    _, mask, _ = R.random_masking(torch.zeros(B, L, 1), 0.6, _noise(B, L, seed=4))
    pred = torch.randn(B, L, D, generator=torch.Generator().manual_seed(9))
    pr = pred.double().requires_grad_()
    ref = R.mae_forward_loss(imgs.double(), pr, mask.double(), p, norm)
    go = torch.tensor(2.5)
    ref.backward(go.double())
    pf = pred.clone().to(device).requires_grad_()
    out = mae_loss(pf, imgs.to(device), mask.to(device), p, norm_pix_loss=norm)
    assert out.shape == () and out.dtype == torch.float32
    assert _loss_err(out, ref) <= TOL[torch.float32]["loss"]
    out.backward(go.to(device))
    assert _grad_err(pf.grad, pr.grad) <= TOL[torch.float32]["grad"]
    # visible patches get no gradient
    assert (pf.grad.cpu()[mask == 0] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mae_loss_low_precision(backend, device, dtype):
    imgs = _imgs(2, 3, 8, 12, seed=3)
    L, D = 6, 48
    mask = torch.tensor([[1, 0, 1, 1, 0, 1], [0, 1, 1, 0, 1, 1]], dtype=torch.bool)
    pred = torch.randn(2, L, D, generator=torch.Generator().manual_seed(0)).to(dtype)
    imgs = imgs.to(dtype)
    pr = pred.double().requires_grad_()
    ref = R.mae_forward_loss(imgs.double(), pr, mask.double(), 4)
    ref.backward()
    pf = pred.to(device).requires_grad_()
    out = mae_loss(pf, imgs.to(device), mask.to(device), 4)
    assert out.dtype == dtype
    assert _loss_err(out, ref) <= TOL[dtype]["loss"]
    out.backward()
    assert pf.grad.dtype == dtype
    assert _grad_err(pf.grad, pr.grad) <= TOL[dtype]["grad"]


# float64 on the CPU path against the float64 reference (summation order only), max over 6 seeds,
# both norm settings and both shapes: loss 2.4e-16, gradient 4.0e-16 (with the backward's scale
# 1 / sum(mask) formed in float32, as before, the gradient was off by ~1e-8).
FP64_MAE_ERR = (2.42e-16, 4.01e-16)


@pytest.mark.parametrize("norm", [True, False])
def test_mae_loss_float64_gradient_is_float64_exact(norm):
    from conftest import assert_within_rounding, rel_err
    C, H, W, p, B = 3, 12, 20, 4, 3
    L, D = (H // p) * (W // p), p * p * C
    for seed in range(2):
        g = torch.Generator().manual_seed(seed)
        imgs = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
        mask = (torch.rand(B, L, generator=g) < 0.6).double()
        mask[:, 0] = 1
        pred = torch.randn(B, L, D, generator=g, dtype=torch.float64)
        pr, pf = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        go = torch.tensor(2.5, dtype=torch.float64)
        ref = R.mae_forward_loss(imgs, pr, mask, p, norm)
        ref.backward(go)
        with use_backend("cpu"):
            out = mae_loss(pf, imgs, mask, p, norm)
            out.backward(go)
        assert out.dtype == torch.float64 and pf.grad.dtype == torch.float64
        assert_within_rounding(rel_err(out, ref), FP64_MAE_ERR[0], what="float64 loss")
        assert_within_rounding(rel_err(pf.grad, pr.grad), FP64_MAE_ERR[1], what="float64 gradient")


def test_mae_loss_module_and_no_grad():
    imgs = _imgs(2, 3, 8, 8)
    pred = torch.randn(2, 4, 48)
    mask = torch.tensor([[1.0, 0, 1, 0], [0, 0, 1, 1]])
    a = MAELoss(4, norm_pix_loss=False)(pred, imgs, mask)
    b = R.mae_forward_loss(imgs.double(), pred.double(), mask.double(), 4, False)
    assert _loss_err(a, b) <= TOL[torch.float32]["loss"]


def test_bad_input():
    imgs = _imgs(2, 3, 8, 12)
    x = torch.randn(2, 6, 48)
    for r in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="mask_ratio"):
            random_masking(x, r)
        with pytest.raises(ValueError, match="mask_ratio"):
            patchify_and_mask(imgs, 4, r)
    with pytest.raises(TypeError, match="mask_ratio"):
        random_masking(x, "0.5")
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        patchify_and_mask(imgs, 5)
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        patchify(_imgs(1, 3, 9, 8), 4)
    with pytest.raises(ValueError, match="noise must have shape"):
        patchify_and_mask(imgs, 4, 0.5, noise=torch.rand(2, 5))
    with pytest.raises(ValueError, match="noise contains NaN"):
        random_masking(x, 0.5, noise=torch.full((2, 6), float("nan")))
    with pytest.raises(ValueError, match="imgs must be 4-D"):
        patchify(x, 4)
    with pytest.raises(ValueError, match="patch dimension"):
        unpatchify(x, 4, channels=1)
    with pytest.raises(ValueError, match="square grid"):
        unpatchify(x, 4)
    mask = torch.ones(2, 6)
    with pytest.raises(ValueError, match="pred must have shape"):
        mae_loss(torch.randn(2, 6, 47), imgs, mask, 4)
    with pytest.raises(ValueError, match="pred must have shape"):
        mae_loss(torch.randn(2, 5, 48), imgs, mask, 4)
    with pytest.raises(ValueError, match="mask must have shape"):
        mae_loss(x, imgs, torch.ones(2, 5), 4)
    with pytest.raises(ValueError, match="not divisible"):
        mae_loss(x, imgs, mask, 5)
    with pytest.raises(ValueError, match="patch_size must be >= 1"):
        patchify(imgs, 0)


def test_strided_inputs(backend, device):
    # channels-last images and a non-contiguous pred take the same paths
    imgs = _imgs(2, 3, 8, 12).to(memory_format=torch.channels_last)
    noise = _noise(2, 6)
    ref = R.random_masking(patchify(imgs.contiguous(), 4), 0.5, noise)
    out = patchify_and_mask(imgs.to(device), 4, 0.5, noise=noise.to(device))
    for a, b in zip(out, ref):
        assert torch.equal(a.cpu(), b)
    pred = torch.randn(2, 48, 6).transpose(1, 2)  # [2, 6, 48], non-contiguous
    pr = pred.double().requires_grad_()
    R.mae_forward_loss(imgs.double(), pr, ref[1].double(), 4).backward()
    pf = pred.to(device).requires_grad_()
    out = mae_loss(pf, imgs.to(device), ref[1].to(device), 4)
    out.backward()
    assert _grad_err(pf.grad, pr.grad) <= TOL[torch.float32]["grad"]


@pytest.mark.parametrize("norm", [True, False])
def test_chunked_torch_fallback(norm):
    # the path CUDA tensors take when triton is absent, checked here on CPU tensors
    from fastrl.masking.loss import _torch_fwd
    imgs = _imgs(5, 3, 8, 8)
    pred = torch.randn(5, 4, 48)
    mask = (torch.rand(5, 4, generator=torch.Generator().manual_seed(1)) < 0.7).float()
    rows, grad = _torch_fwd(pred, imgs, mask, 4, norm, True, chunk=2)
    pr = pred.double().requires_grad_()
    ref = R.mae_forward_loss(imgs.double(), pr, mask.double(), 4, norm)
    ref.backward()
    assert _loss_err(rows.sum() / mask.sum(), ref) <= TOL[torch.float32]["loss"]
    assert _grad_err(grad / mask.sum(), pr.grad) <= TOL[torch.float32]["grad"]


def test_mae_loss_rejects_nonfinite_negative_and_complex(backend, device):
    imgs = _imgs(2, 3, 8, 12)
    pred = torch.randn(2, 6, 48)
    mask = torch.tensor([[1.0, 0, 1, 1, 0, 1], [0, 1, 1, 0, 1, 1]])
    cases = []
    for bad in (float("nan"), float("inf")):
        p1 = pred.clone()
        p1[0, 0, 5] = bad  # a removed patch
        p2 = pred.clone()
        p2[0, 1, 7] = bad  # a visible patch: MAE's loss is NaN too (0 * NaN)
        i1 = imgs.clone()
        i1[1, 2, 0, 0] = bad  # patch 0 of sample 1: visible
        i2 = imgs.clone()
        i2[0, 0, 7, 11] = bad  # last patch of sample 0: removed
        m1 = mask.clone()
        m1[1, 2] = bad
        cases += [(p1, imgs, mask, "pred"), (p2, imgs, mask, "pred"), (pred, i1, mask, "imgs"),
                  (pred, i2, mask, "imgs"), (pred, imgs, m1, "mask")]
    for norm in (True, False):
        for p_, i_, m_, name in cases:
            for dt in (torch.float32, torch.float16):
                with pytest.raises(ValueError, match=f"{name} contains NaN or inf"):
                    mae_loss(p_.to(dt).to(device).requires_grad_(), i_.to(dt).to(device), m_.to(device), 4, norm)
    for neg in (-mask, mask - 0.5 * (mask == 0).float(), mask.long() - 1):
        with pytest.raises(ValueError, match="mask must be >= 0"):
            mae_loss(pred.to(device), imgs.to(device), neg.to(device), 4)
    cplx = [(pred.to(torch.complex64), imgs, mask, "pred"), (pred, imgs.to(torch.complex64), mask, "imgs"),
            (pred, imgs, mask.to(torch.complex64), "mask")]
    for p_, i_, m_, name in cplx:
        with pytest.raises(TypeError, match=f"{name} must be real-valued"):
            mae_loss(p_.to(device), i_.to(device), m_.to(device), 4)
    # weights >= 0 other than 0/1 and int/bool masks still work
    for m_ in (mask * 2.5, mask.long(), mask.bool()):
        ref = R.mae_forward_loss(imgs.double(), pred.double(), m_.double(), 4)
        out = mae_loss(pred.to(device), imgs.to(device), m_.to(device), 4)
        assert _loss_err(out, ref) <= TOL[torch.float32]["loss"]


def test_masking_rejects_complex(backend, device):
    x = torch.randn(2, 6, 4)
    with pytest.raises(TypeError, match="x must be real-valued"):
        random_masking(x.to(torch.complex64).to(device), 0.5)
    with pytest.raises(TypeError, match="noise must be real-valued"):
        random_masking(x.to(device), 0.5, noise=torch.rand(2, 6, dtype=torch.complex64).to(device))
    with pytest.raises(TypeError, match="imgs must be real-valued"):
        patchify_and_mask(_imgs(2, 3, 8, 12).to(torch.complex64).to(device), 4)
    # real dtypes other than float are gathered exactly (the op is a gather)
    for dt in (torch.int64, torch.int32, torch.uint8, torch.bool):
        xi = (torch.randn(2, 6, 4) * 5).to(dt)
        noise = _noise(2, 6)
        for a, b in zip(random_masking(xi.to(device), 0.5, noise=noise.to(device)), R.random_masking(xi, 0.5, noise)):
            assert torch.equal(a.cpu(), b)


def _numba_step():
    """A small patchify_and_mask + mae_loss step: the three Numba kernels, each below the parallel threshold."""
    imgs = _imgs(2, 3, 8, 8)
    _, mask, _ = patchify_and_mask(imgs, 4, 0.5)
    pred = torch.randn(2, 4, 48, requires_grad=True)
    mae_loss(pred, imgs, mask, 4).backward()


def test_numba_kernels_keep_torch_thread_count(monkeypatch):
    """Where Numba's OpenMP layer shares torch's libgomp, numba.set_num_threads(n) also sets torch's
    count (emulated here): a Numba kernel run on one thread must still leave torch's count as it was."""
    numba = pytest.importorskip("numba")
    if numba.get_num_threads() < 2:
        pytest.skip("needs 2 Numba threads")
    real = numba.set_num_threads

    def shared_libgomp(n):
        real(n)
        torch.set_num_threads(n)

    monkeypatch.setattr(numba, "set_num_threads", shared_libgomp)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _numba_step()
        during = torch.get_num_threads()
    finally:
        torch.set_num_threads(n)
    assert during == 1


_FRESH_PROCESS_STEP = """
import torch, fastrl
torch.set_num_threads(1)
assert torch.get_num_threads() == 1  # torch's OpenMP is initialised before Numba's pool starts
from fastrl.masking import mae_loss, patchify_and_mask
imgs = torch.randn(2, 3, 8, 8)
_, mask, _ = patchify_and_mask(imgs, 4, 0.5)
mae_loss(torch.randn(2, 4, 48, requires_grad=True), imgs, mask, 4).backward()
print(torch.get_num_threads())
"""


def test_numba_pool_launch_keeps_torch_thread_count():
    """In a fresh process, launching Numba's OpenMP pool (the first Numba call) resets torch's
    intra-op count to Numba's (measured here: 1 -> 2 before the fix); the MAE ops put it back."""
    import os
    import subprocess
    import sys
    pytest.importorskip("numba")
    env = dict(os.environ, NUMBA_NUM_THREADS="2", OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", _FRESH_PROCESS_STEP], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "1", out.stdout
