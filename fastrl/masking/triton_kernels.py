"""Triton kernels of the masked-modelling ops (CUDA, or CPU under TRITON_INTERPRET=1).

Imported lazily by the public functions, only when the Triton path runs.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastrl._dispatch import upcast_bf16_dot

# tile sizes; None = the default (tests set small tiles so that every loop and grid runs several tiles)
TILES = {"gather_d": None, "bert": None, "vq_n": None, "vq_k": None, "vq_d": None}


# ---------------------------------------------------------------- gather
# One program per output row (b, k): out[b, k, :] = src row ids[b, k] of sample b.
# PATCH: the source row is a p x p x C patch read straight from the image
#        out[b, k, (i*p + j)*C + c] = img[b, c, hi*p + i, wi*p + j], (hi, wi) = divmod(id, w)
# else:  the source row is x[b, id, :] of a [B, L, D] tensor.
@triton.jit
def _gather_rows_kernel(src_ptr, ids_ptr, out_ptr, K, D, s_b, s_c, s_h, s_w, s_l, s_d,
                        P: tl.constexpr, C: tl.constexpr, GRID_W: tl.constexpr, PATCH: tl.constexpr,
                        BLOCK_D: tl.constexpr):
    row = tl.program_id(0)
    b = row // K
    idx = tl.load(ids_ptr + row).to(tl.int64)
    base = b.to(tl.int64) * s_b
    out_row = out_ptr + row.to(tl.int64) * D
    for d0 in range(0, D, BLOCK_D):
        offs = d0 + tl.arange(0, BLOCK_D)
        m = offs < D
        if PATCH:
            hi = idx // GRID_W
            wi = idx - hi * GRID_W
            c = offs % C
            j = (offs // C) % P
            i = offs // (C * P)
            src = base + c * s_c + (hi * P + i) * s_h + (wi * P + j) * s_w
        else:
            src = base + idx * s_l + offs * s_d
        v = tl.load(src_ptr + src, mask=m)
        tl.store(out_row + offs, v, mask=m)


def gather_rows(src: torch.Tensor, ids: torch.Tensor, out: torch.Tensor, patch: int = 0) -> torch.Tensor:
    """Launch :func:`_gather_rows_kernel`; ``patch`` > 0 means ``src`` is [B, C, H, W] images."""
    B, K = ids.shape
    D = out.shape[2]
    ids = ids.contiguous()
    if patch:
        sb, sc, sh, sw = src.stride()
        sl = sd = 0
        C, gw = src.shape[1], src.shape[3] // patch
    else:
        sb, sl, sd = src.stride()
        sc = sh = sw = 0
        C, gw = 1, 1
    block = TILES["gather_d"] or min(1024, triton.next_power_of_2(D))
    _gather_rows_kernel[(B * K,)](src, ids, out, K, D, sb, sc, sh, sw, sl, sd,
                                  P=max(patch, 1), C=C, GRID_W=gw, PATCH=bool(patch), BLOCK_D=block)
    return out


# ---------------------------------------------------------------- MAE loss
# One program per patch r = (b, l) with weight m = mask[b, l]; rows with m == 0
# skip their loads and write zero gradient.
#   t_d = patch pixels (MAE order), norm: t = (t - mean) / sqrt(sum (t - mean)^2 / (D - 1) + 1e-6)
#   rowloss_r = m * mean_d (pred_d - t_d)^2,   grad_d = 2 m (pred_d - t_d) / D
# The whole patch fits one block (D <= 16384), so the statistics need one read.
@triton.jit
def _mae_loss_kernel(img_ptr, pred_ptr, w_ptr, grad_ptr, rowloss_ptr, L, D,
                     s_b, s_c, s_h, s_w, p_b, p_l, p_d,
                     P: tl.constexpr, C: tl.constexpr, GRID_W: tl.constexpr,
                     NORM: tl.constexpr, NEED_GRAD: tl.constexpr, BLOCK_D: tl.constexpr):
    r = tl.program_id(0)
    b = r // L
    l = r - b * L
    m = tl.load(w_ptr + r).to(tl.float32)
    offs = tl.arange(0, BLOCK_D)
    dm = (offs < D) & ((tl.zeros([BLOCK_D], tl.float32) + m) != 0.0)
    hi = l // GRID_W
    wi = l - hi * GRID_W
    c = offs % C
    j = (offs // C) % P
    i = offs // (C * P)
    src = b.to(tl.int64) * s_b + c * s_c + (hi * P + i) * s_h + (wi * P + j) * s_w
    t = tl.load(img_ptr + src, mask=dm, other=0.0).to(tl.float32)
    x = tl.load(pred_ptr + b.to(tl.int64) * p_b + l * p_l + offs * p_d, mask=dm, other=0.0).to(tl.float32)
    if NORM:
        mean = tl.sum(t, axis=0) / D
        dv = tl.where(dm, t - mean, 0.0)
        var = tl.sum(dv * dv, axis=0) / (D - 1)
        t = dv / tl.sqrt(var + 1e-6)
    diff = tl.where(dm, x - t, 0.0)
    tl.store(rowloss_ptr + r, m * tl.sum(diff * diff, axis=0) / D)
    if NEED_GRAD:
        g = diff * (2.0 * m / D)
        tl.store(grad_ptr + r.to(tl.int64) * D + offs, g.to(grad_ptr.dtype.element_ty), mask=offs < D)


def mae_loss_fwd(imgs, pred, weight, p, norm, need_grad):
    """Per-patch weighted losses [B*L] (float32) and, if asked, the unscaled gradient."""
    B, C, H, W = imgs.shape
    L, D = pred.shape[1], pred.shape[2]
    rowloss = torch.empty(B * L, device=pred.device, dtype=torch.float32)
    grad = torch.empty((B, L, D), device=pred.device, dtype=pred.dtype) if need_grad else rowloss
    _mae_loss_kernel[(B * L,)](imgs, pred, weight.contiguous(), grad, rowloss, L, D,
                               *imgs.stride(), *pred.stride(), P=p, C=C, GRID_W=W // p,
                               NORM=bool(norm), NEED_GRAD=bool(need_grad),
                               BLOCK_D=triton.next_power_of_2(D))
    return rowloss, (grad if need_grad else None)


# ---------------------------------------------------------------- BERT
@triton.jit
def _lowbias32(x):
    # same mixer as fastrl.masking._rng.lowbias32, on int64 values < 2**32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x = x ^ (x >> 16)
    return x


@triton.jit
def _hash(counter, k0, k1):
    return _lowbias32(_lowbias32((counter ^ k0) & 0xFFFFFFFF) ^ k1)


# Element e: select iff h(3e)>>8 < T_SEL and not special; then u = h(3e+1)>>8:
# u < T_MASK -> mask_id, u < T_RAND -> (h(3e+2) * V) >> 32, else unchanged.
# labels = original id where selected, -100 elsewhere. One read, two writes.
@triton.jit
def _bert_mask_kernel(ids_ptr, special_ptr, out_ptr, labels_ptr, n, vocab, mask_id, t_sel, t_mask, t_rand,
                      k0, k1, HAS_SPECIAL: tl.constexpr, BLOCK: tl.constexpr):
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = e < n
    x = tl.load(ids_ptr + e, mask=m, other=0)
    k0 = k0.to(tl.int64)
    k1 = k1.to(tl.int64)
    sel = (_hash(3 * e, k0, k1) >> 8) < t_sel
    if HAS_SPECIAL:
        sp = tl.load(special_ptr + e, mask=m, other=1)
        sel = sel & (sp == 0)
    u = _hash(3 * e + 1, k0, k1) >> 8
    rnd = (_hash(3 * e + 2, k0, k1) * vocab) >> 32
    new = tl.where(u < t_mask, mask_id, tl.where(u < t_rand, rnd, x.to(tl.int64)))
    tl.store(out_ptr + e, tl.where(sel, new, x.to(tl.int64)).to(x.dtype), mask=m)
    tl.store(labels_ptr + e, tl.where(sel, x.to(tl.int64), -100).to(x.dtype), mask=m)


def bert_mask(ids, special, vocab, mask_id, t_sel, t_mask, t_rand, k0, k1):
    flat = ids.reshape(-1)
    out = torch.empty_like(flat)
    labels = torch.empty_like(flat)
    n = flat.numel()
    sp = special.reshape(-1).to(torch.uint8) if special is not None else flat
    block = TILES["bert"] or 1024
    _bert_mask_kernel[(triton.cdiv(n, block),)](flat, sp, out, labels, n, vocab, mask_id, t_sel, t_mask,
                                                t_rand, k0, k1, HAS_SPECIAL=special is not None, BLOCK=block)
    return out.view(ids.shape), labels.view(ids.shape)


# ---------------------------------------------------------------- VQ lookup
# For a tile of BLOCK_N rows z: score_k = ||c_k||^2 - 2 z.c_k (= ||z - c_k||^2 - ||z||^2)
# over codebook tiles of BLOCK_K, D in chunks of BLOCK_D; an online argmin keeps
# (best score, best index) per row; a strict '<' keeps the lowest index on ties.
# Only a BLOCK_N x BLOCK_K tile of scores ever exists.
@triton.jit
def _vq_nearest_kernel(z_ptr, c_ptr, cn_ptr, out_ptr, N, K, D, s_zn, s_zd, s_ck, s_cd,
                       UPCAST: tl.constexpr, IEEE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                       BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    best = tl.full((BLOCK_N,), float("inf"), tl.float32)
    best_idx = tl.zeros((BLOCK_N,), tl.int32)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        cmask = cols < K
        acc = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + tl.arange(0, BLOCK_D)
            dmask = dd < D
            zt = tl.load(z_ptr + rows[:, None].to(tl.int64) * s_zn + dd[None, :] * s_zd,
                         mask=rmask[:, None] & dmask[None, :], other=0.0)
            ct = tl.load(c_ptr + cols[None, :].to(tl.int64) * s_ck + dd[:, None] * s_cd,
                         mask=cmask[None, :] & dmask[:, None], other=0.0)
            if UPCAST:
                zt = zt.to(tl.float32)
                ct = ct.to(tl.float32)
            if IEEE:  # exact fp32 products (no TF32) so the argmin matches brute force
                acc += tl.dot(zt, ct, input_precision="ieee")
            else:
                acc += tl.dot(zt, ct)
        cn = tl.load(cn_ptr + cols, mask=cmask, other=float("inf"))
        score = cn[None, :] - 2.0 * acc
        score = tl.where(cmask[None, :], score, float("inf"))
        tile_min = tl.min(score, axis=1)
        # lowest column reaching the tile minimum
        cand = tl.where(score == tile_min[:, None], cols[None, :], 2147483647)
        tile_idx = tl.min(cand, axis=1)
        better = tile_min < best
        best_idx = tl.where(better, tile_idx, best_idx)
        best = tl.where(better, tile_min, best)
    tl.store(out_ptr + rows, best_idx.to(tl.int64), mask=rmask)


def vq_nearest(z, codebook, cn):
    N, D = z.shape
    K = codebook.shape[0]
    out = torch.empty(N, device=z.device, dtype=torch.int64)
    BLOCK_N, BLOCK_K = TILES["vq_n"] or 32, TILES["vq_k"] or 64
    BLOCK_D = TILES["vq_d"] or max(16, min(64, triton.next_power_of_2(D)))
    _vq_nearest_kernel[(triton.cdiv(N, BLOCK_N),)](z, codebook, cn, out, N, K, D, *z.stride(), *codebook.stride(),
                                                   UPCAST=upcast_bf16_dot(z.dtype),
                                                   IEEE=z.dtype in (torch.float32, torch.float64)
                                                   or upcast_bf16_dot(z.dtype), BLOCK_N=BLOCK_N,
                                                   BLOCK_K=BLOCK_K, BLOCK_D=BLOCK_D)
    return out
