"""Every Triton kernel through at least two tiles in each dimension, forward and backward.

The tile sizes are test parameters (module-level hooks of each kernel module), so
small tiles run the loops and grids several times at cheap shapes (e.g. D = 33
with 16-wide tiles, N = 130 with 64-wide column blocks). Each case compares with an
independent float64 oracle. Under the interpreter (CPU) this is the default run; on
a CUDA machine the same tests compile and run each tile configuration natively.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fastrl._dispatch import use_backend

from conftest import triton_device, triton_runnable

pytestmark = pytest.mark.skipif(not triton_runnable(), reason="triton path not runnable here")


def _leaf(x, dtype=None):
    return x.detach().to(triton_device(), dtype or x.dtype).clone().requires_grad_()


def _close(out, ref, rtol):
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    err = float((out - ref).abs().max())
    assert err <= rtol * max(float(ref.abs().max()), 1e-12), (err, float(ref.abs().max()))


# ------------------------------------------------------------------ contrastive
def _lse_oracle(q, k, scale, mask_offset, want_col):
    s = scale * q.double() @ k.double().T
    if mask_offset is not None:
        s.diagonal(offset=mask_offset).fill_(float("-inf"))
    return torch.logsumexp(s, 1), (torch.logsumexp(s, 0) if want_col else None)


def _lse_case(q, k, *, want_col, symmetric, mask_offset, tiles, groups=None, dtype=torch.float32, rtol=2e-5):
    from fastrl.losses.contrastive import lse_core
    from fastrl.losses.contrastive import triton_kernels as tk
    qd = q.double().requires_grad_()
    kd = qd if symmetric else k.double().requires_grad_()
    scale = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    r_ref, c_ref = _lse_oracle(qd, kd, scale, mask_offset, want_col)
    wr = torch.linspace(-1.0, 2.0, q.shape[0], dtype=torch.float64)
    wc = torch.linspace(2.0, -0.5, k.shape[0], dtype=torch.float64)
    loss_ref = (r_ref * wr).sum() + ((c_ref * wc).sum() if want_col else 0.0)
    grads_ref = torch.autograd.grad(loss_ref, [qd, scale] + ([] if symmetric else [kd]))

    qt = _leaf(q, dtype)
    kt = qt if symmetric else _leaf(k, dtype)
    st = _leaf(torch.tensor(1.7))
    dev = triton_device()
    with use_backend("triton"), tk.tile_config(tiles, col_groups=groups):
        r, c = lse_core(qt, kt, st, mask_offset=mask_offset, want_col=want_col, symmetric=symmetric)
        loss = (r * wr.float().to(dev)).sum() + ((c * wc.float().to(dev)).sum() if want_col else 0.0)
        grads = torch.autograd.grad(loss, [qt, st] + ([] if symmetric else [kt]))
    _close(r, r_ref, rtol)
    if want_col:
        _close(c, c_ref, rtol)
    for g, gr in zip(grads, grads_ref):
        _close(g, gr, 10 * rtol)


def _contrastive_configs():
    from fastrl.losses.contrastive import triton_kernels as tk
    return [dict(BLOCK_M=c["BLOCK_M"], BLOCK_N=c["BLOCK_N"]) for c in tk.CONFIGS]


@pytest.mark.parametrize("tiles", _contrastive_configs(), ids=lambda t: f"{t['BLOCK_M']}x{t['BLOCK_N']}")
def test_contrastive_each_tuning_config(tiles):
    # CLIP mode (row + column LSE, fused forward; dQ + atomic dK backward) with a mask,
    # at least 2 row tiles and 2 column tiles, D = 33 padded to 64
    g = torch.Generator().manual_seed(0)
    m, n = 2 * tiles["BLOCK_M"] + 3, 2 * tiles["BLOCK_N"] + 5
    q, k = torch.randn(m, 33, generator=g) * 0.3, torch.randn(n, 33, generator=g) * 0.3
    _lse_case(q, k, want_col=True, symmetric=False, mask_offset=1, tiles=tiles)


@pytest.mark.parametrize("groups", [1, 2])
def test_contrastive_fused_column_lse_groups(groups):
    # fewer programs than row blocks: each program merges several row blocks into its partial row
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(70, 20, generator=g), torch.randn(45, 20, generator=g)
    _lse_case(q, k, want_col=True, symmetric=False, mask_offset=-3, tiles=dict(BLOCK_M=16, BLOCK_N=16),
              groups=groups)


@pytest.mark.parametrize("mask_offset", [None, 0])
def test_contrastive_symmetric_and_rows_only(mask_offset):
    g = torch.Generator().manual_seed(2)
    z = torch.randn(50, 17, generator=g)
    _lse_case(z, z, want_col=False, symmetric=True, mask_offset=mask_offset, tiles=dict(BLOCK_M=16, BLOCK_N=32))
    _lse_case(z[:37], z, want_col=False, symmetric=False, mask_offset=mask_offset,
              tiles=dict(BLOCK_M=16, BLOCK_N=16))


@pytest.mark.parametrize("dtype,rtol", [(torch.float16, 3e-3), (torch.bfloat16, 2e-2)])
def test_contrastive_half_precision_tiles(dtype, rtol):
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(40, 24, generator=g) * 0.3, torch.randn(36, 24, generator=g) * 0.3
    q, k = q.to(dtype).float(), k.to(dtype).float()  # the oracle sees the rounded inputs
    _lse_case(q, k, want_col=True, symmetric=False, mask_offset=None, tiles=dict(BLOCK_M=16, BLOCK_N=16),
              dtype=dtype, rtol=rtol)


# ------------------------------------------------------------------ decorrelation
@pytest.fixture
def decorr_tiles(monkeypatch):
    from fastrl.losses.decorrelation import triton_kernels as dk
    for key, v in dict(block_i=16, block_n=64, stats_n=16, stats_d=16).items():
        monkeypatch.setitem(dk.TILES, key, v)
    return dk


@pytest.mark.parametrize("loss,block_j", [("barlow", None), ("vicreg", None), ("barlow", 32)])
def test_decorrelation_cross_form_tiles(decorr_tiles, monkeypatch, loss, block_j):
    # D = 33 over 16-wide column tiles (3 x 3 tiles of C), N = 130 over 64-row blocks:
    # _cross_fwd_kernel, _cross_bwd_kernel (its j and n loops) and _col_stats_kernel
    from fastrl.losses.decorrelation import barlow_twins_loss, vicreg_loss
    from fastrl.losses.decorrelation.reference import barlow_twins_reference, vicreg_reference
    monkeypatch.setitem(decorr_tiles.TILES, "block_j", block_j)  # backward: 16-column dA blocks, 32-wide C tiles
    g = torch.Generator().manual_seed(4)
    z1 = torch.randn(130, 33, generator=g, dtype=torch.float64)
    z2 = 0.6 * z1 + torch.randn(130, 33, generator=g, dtype=torch.float64)
    fn, ref = ((barlow_twins_loss, barlow_twins_reference) if loss == "barlow"
               else (vicreg_loss, vicreg_reference))
    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    want = ref(a, b)
    ga, gb = torch.autograd.grad(want * 1.3, [a, b])
    x, y = _leaf(z1, torch.float32), _leaf(z2, torch.float32)
    with use_backend("triton"):
        out = fn(x, y, form="cross")
        gx, gy = torch.autograd.grad(out * 1.3, [x, y])
    _close(out, want, 1e-5)
    _close(gx, ga, 1e-4)
    _close(gy, gb, 1e-4)


def test_decorrelation_column_stats_tiles(decorr_tiles):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(130, 33, generator=g, dtype=torch.float64) * 3 + 10
    mean, m2 = decorr_tiles.column_stats(x.float().to(triton_device()))
    _close(mean, x.mean(0), 1e-6)
    _close(m2, ((x - x.mean(0)) ** 2).sum(0), 1e-5)


# ------------------------------------------------------------------ t-SNE
@pytest.mark.parametrize("d,dof", [(1, 1.0), (2, 1.0), (2, 0.7), (3, 1.0)])
def test_tsne_repulsive_kernel_tiles(d, dof):
    # N = 130 rows over 32-row programs and 64-column tiles: the column loop runs 3 times
    from fastrl.manifold.tsne.triton_kernels import repulsive_triton
    rng = np.random.default_rng(6)
    Y = rng.normal(size=(130, d)) * 3
    diff = Y[:, None, :] - Y[None, :, :]
    u = 1.0 / (1.0 + (diff ** 2).sum(-1) / dof)
    np.fill_diagonal(u, 0.0)
    w = u ** dof
    R_ref = ((w * u)[:, :, None] * diff).sum(1)
    R, z = repulsive_triton(torch.as_tensor(Y, dtype=torch.float32, device=triton_device()), dof=dof,
                            block_m=32, block_n=64)
    _close(z, torch.as_tensor(w.sum(1)), 1e-5)
    _close(R, torch.as_tensor(R_ref), 1e-5)


def test_tsne_attractive_kernel_tiles():
    # rows with more edges than BLOCK_E = 8: the edge loop runs several times
    import scipy.sparse as sp
    from fastrl.manifold.tsne.triton_kernels import attractive_triton
    n = 60
    P = sp.random(n, n, density=0.4, random_state=2, format="csr")
    Y = np.random.default_rng(7).normal(size=(n, 2))
    diff = Y[:, None, :] - Y[None, :, :]
    pu = P.toarray() / (1.0 + (diff ** 2).sum(-1))
    ref = 2.0 * (pu[:, :, None] * diff).sum(1)
    dev = triton_device()
    out = attractive_triton(torch.as_tensor(P.indptr, device=dev), torch.as_tensor(P.indices, device=dev),
                            torch.as_tensor(P.data, dtype=torch.float32, device=dev),
                            torch.as_tensor(Y, dtype=torch.float32, device=dev), exaggeration=2.0, block_e=8)
    _close(out, torch.as_tensor(ref), 1e-5)


# ------------------------------------------------------------------ masking
@pytest.fixture
def mask_tiles(monkeypatch):
    from fastrl.masking import triton_kernels as mk
    for key, v in dict(gather_d=16, bert=64, vq_n=16, vq_k=16, vq_d=16).items():
        monkeypatch.setitem(mk.TILES, key, v)
    return mk


def test_gather_rows_tiles_forward_backward(mask_tiles):
    # D = 40 over 16-wide blocks (the in-row loop runs 3 times), B * keep programs
    from fastrl.masking import random_masking
    from fastrl.masking.reference import random_masking as ref_masking
    g = torch.Generator().manual_seed(8)
    x = torch.randn(3, 11, 40, generator=g, dtype=torch.float64)
    noise = torch.rand(3, 11, generator=g)
    xr = x.clone().requires_grad_()
    want, _, _ = ref_masking(xr, 0.5, noise=noise)
    w = torch.randn(want.shape, generator=g, dtype=torch.float64)
    (gref,) = torch.autograd.grad((want * w).sum(), xr)
    xt = _leaf(x, torch.float32)
    with use_backend("triton"):
        out, _, _ = random_masking(xt, 0.5, noise=noise.to(triton_device()))
        (gx,) = torch.autograd.grad((out * w.float().to(triton_device())).sum(), xt)
    _close(out, want, 1e-7)
    _close(gx, gref, 1e-7)


def test_patchify_and_mask_tiles(mask_tiles):
    # patch rows of p*p*C = 4*4*3 = 48 pixels over 16-wide blocks
    from fastrl.masking import patchify_and_mask
    from fastrl.masking.reference import patchify, random_masking as ref_masking
    g = torch.Generator().manual_seed(9)
    imgs = torch.randn(2, 3, 16, 12, generator=g)
    noise = torch.rand(2, 12, generator=g)
    want, _, _ = ref_masking(patchify(imgs.double(), 4), 0.5, noise=noise)
    with use_backend("triton"):
        out = patchify_and_mask(imgs.to(triton_device()), 4, 0.5, noise=noise.to(triton_device()))[0]
    _close(out, want, 1e-7)


@pytest.mark.parametrize("norm", [True, False])
def test_mae_loss_tiles(norm):
    # one program per patch (B * L = 24), forward loss and the kernel's gradient
    from fastrl.masking import mae_loss
    from fastrl.masking.reference import mae_forward_loss
    g = torch.Generator().manual_seed(10)
    imgs = torch.randn(2, 3, 16, 12, generator=g, dtype=torch.float64)
    pred = torch.randn(2, 12, 48, generator=g, dtype=torch.float64)
    mask = (torch.rand(2, 12, generator=g) < 0.6).double()
    pr = pred.clone().requires_grad_()
    want = mae_forward_loss(imgs, pr, mask, 4, norm)
    (gref,) = torch.autograd.grad(want * 0.7, pr)
    pt = _leaf(pred, torch.float32)
    dev = triton_device()
    with use_backend("triton"):
        out = mae_loss(pt, imgs.float().to(dev), mask.float().to(dev), 4, norm)
        (gp,) = torch.autograd.grad(out * 0.7, pt)
    _close(out, want, 1e-5)
    _close(gp, gref, 1e-5)


def test_bert_mask_kernel_tiles(mask_tiles):
    # 5 x 61 = 305 tokens over 64-element programs; oracle: the counter hash in Python
    from fastrl.masking import bert_mask
    from fastrl.masking._rng import draw_keys, hash_u32, threshold24
    g = torch.Generator().manual_seed(12)
    ids = torch.randint(5, 500, (5, 61), generator=g)
    special = torch.zeros(5, 61, dtype=torch.bool)
    special[:, 0] = True
    with use_backend("triton"):
        out, labels = bert_mask(ids.to(triton_device()), 500, 3, 0.3, special_tokens_mask=special.to(triton_device()),
                                generator=torch.Generator().manual_seed(13))
    k0, k1 = draw_keys(2, torch.Generator().manual_seed(13))
    t_sel, t_mask, t_rand = threshold24(0.3), threshold24(0.8), threshold24(0.9)
    flat, sp = ids.reshape(-1).tolist(), special.reshape(-1).tolist()
    want_out, want_lab = [], []
    for e, x in enumerate(flat):
        sel = (hash_u32(3 * e, k0, k1) >> 8) < t_sel and not sp[e]
        u = hash_u32(3 * e + 1, k0, k1) >> 8
        new = 3 if u < t_mask else ((hash_u32(3 * e + 2, k0, k1) * 500) >> 32 if u < t_rand else x)
        want_out.append(new if sel else x)
        want_lab.append(x if sel else -100)
    assert out.cpu().reshape(-1).tolist() == want_out
    assert labels.cpu().reshape(-1).tolist() == want_lab


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_vq_nearest_kernel_tiles(mask_tiles, dtype):
    # N = 70 rows over 16-row programs, K = 50 codes over 16-code tiles, D = 40 over 16-wide chunks
    from fastrl.masking import vq_nearest
    g = torch.Generator().manual_seed(14)
    code = torch.randn(50, 40, generator=g).to(dtype)
    z = (code[torch.randint(0, 50, (70,), generator=g)].float() + 0.05 * torch.randn(70, 40, generator=g)).to(dtype)
    zd, cd = z.double(), code.double()
    want = ((zd[:, None, :] - cd[None, :, :]) ** 2).sum(-1).argmin(1)
    with use_backend("triton"):
        out = vq_nearest(z.to(triton_device()), code.to(triton_device()))
    assert torch.equal(out.cpu(), want)


@pytest.mark.slow
def test_every_kernel_compiles_for_sm90():
    # no GPU needed: Triton's compiler and the wheel's ptxas run on the CPU (about a minute);
    # catches compile errors, shared memory over 227 KiB (the interpreter models neither)
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, str(root / "benchmarks" / "aot_sm90.py"), "--quick"], cwd=root,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0 and "PASS" in res.stdout, res.stdout[-3000:] + res.stderr[-3000:]
