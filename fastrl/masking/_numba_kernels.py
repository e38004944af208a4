"""Numba kernels of the CPU path (compiled on first use, cached on disk).

Each kernel makes one parallel pass (``prange`` over samples) and touches
only the data its op needs.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange

_OPTS = dict(cache=True, nogil=True)


@njit(inline="always", **_OPTS)
def _lowbias32(x):
    # same mixer as fastrl.masking._rng.lowbias32, on int64 values < 2**32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


@njit(inline="always", **_OPTS)
def _hash(counter, key0, key1):
    return _lowbias32(_lowbias32((counter ^ key0) & 0xFFFFFFFF) ^ key1)


# ---------------------------------------------------------------- patches
# out[b, k, (i*p + j)*C + c] = img[b, c, hi*p + i, wi*p + j]  with
# (hi, wi) = divmod(ids[b, k], w): MAE's patch order, visible patches only.
# Writes are contiguous; reads walk C image rows of p pixels per patch row.
@njit(parallel=True, **_OPTS)
def gather_patches(imgs, ids, p, out):
    B, C, _, W = imgs.shape
    w = W // p
    K = ids.shape[1]
    for b in prange(B):
        for k in range(K):
            hi = ids[b, k] // w
            wi = ids[b, k] - hi * w
            o = out[b, k]
            for i in range(p):
                row = hi * p + i
                for j in range(p):
                    col = wi * p + j
                    for c in range(C):
                        o[(i * p + j) * C + c] = imgs[b, c, row, col]


# MAE's shuffle per row: ids_shuffle = stable argsort(noise); ids_restore is its
# inverse; the first `keep` of ids_shuffle are kept; mask = 1 where removed.
# Returns the number of non-finite noise values (the caller raises).
@njit(parallel=True, **_OPTS)
def shuffle_rows(noise, keep, ids_keep, mask, ids_restore):
    B, L = noise.shape
    bad = 0
    for b in prange(B):
        for r in range(L):
            if not np.isfinite(noise[b, r]):
                bad += 1
        order = np.argsort(noise[b], kind="mergesort")
        for r in range(L):
            ids_restore[b, order[r]] = r
            mask[b, order[r]] = 1.0 if r >= keep else 0.0
        for r in range(keep):
            ids_keep[b, r] = order[r]
    return bad


# ---------------------------------------------------------------- MAE loss
# For every patch r with weight m_r != 0 (the removed patches):
#   t = patch of imgs (MAE order); if norm: t = (t - mean) / sqrt(var_unbiased + 1e-6)
#   rowloss_r = m_r * mean_d (pred_rd - t_d)^2 ;  grad_rd = 2 m_r (pred_rd - t_d) / D
# Targets live in a per-thread buffer of D floats, never in a [B, L, D] tensor.
# Every patch of imgs and every row of pred is summed on the way (visible ones
# too): a NaN/inf anywhere makes a sum non-finite. Returns the number of such
# patches; the caller then finds the culprit (a finite overflow is also counted).
@njit(parallel=True, **_OPTS)
def mae_loss_fwd(imgs, pred, weight, p, norm, need_grad, grad, rowloss):
    B, C, _, W = imgs.shape
    w = W // p
    L, D = pred.shape[1], pred.shape[2]
    bad = 0
    for b in prange(B):
        t = np.empty(D, dtype=np.float64)
        acc_b = 0.0
        for r in range(L):
            m = weight[b, r]
            hi = r // w
            wi = r - hi * w
            s = 0.0
            for c in range(C):
                for i in range(p):
                    row = hi * p + i
                    base = i * p * C + c
                    for j in range(p):
                        v = imgs[b, c, row, wi * p + j]
                        t[base + j * C] = v
                        s += v
            if m == 0.0:
                ps = 0.0
                for d in range(D):
                    ps += pred[b, r, d]
                    if need_grad:
                        grad[b, r, d] = 0.0
                if not math.isfinite(s + ps):
                    bad += 1
                continue
            mean = 0.0
            inv = 1.0
            if norm:
                mean = s / D
                ss = 0.0
                for d in range(D):
                    dv = t[d] - mean
                    ss += dv * dv
                inv = 1.0 / math.sqrt(ss / (D - 1) + 1e-6)
            acc = 0.0
            g = 2.0 * m / D
            for d in range(D):
                diff = pred[b, r, d] - (t[d] - mean) * inv
                acc += diff * diff
                if need_grad:
                    grad[b, r, d] = g * diff
            if not math.isfinite(s + acc):
                bad += 1
            acc_b += m * acc / D
        rowloss[b] = acc_b
    return bad


# ---------------------------------------------------------------- BERT
# u1 = h(3n) selects with prob p (never special tokens); of selected, u2 = h(3n+1)
# < 0.8 -> [MASK], < 0.9 -> random token floor(h(3n+2) * V / 2**32), else unchanged.
@njit(parallel=True, **_OPTS)
def bert_mask(ids, special, has_special, vocab, mask_id, t_sel, t_mask, t_rand, k0, k1, out, labels):
    n = ids.shape[0]
    for e in prange(n):
        x = ids[e]
        sel = False
        if not (has_special and special[e] != 0):
            sel = (_hash(3 * e, k0, k1) >> 8) < t_sel
        if sel:
            labels[e] = x
            u = _hash(3 * e + 1, k0, k1) >> 8
            if u < t_mask:
                x = mask_id
            elif u < t_rand:
                x = (_hash(3 * e + 2, k0, k1) * vocab) >> 32
        else:
            labels[e] = -100
        out[e] = x


# ---------------------------------------------------------------- BEiT blocks
# BEiT's MaskingGenerator per sample, fed by the counter-based stream of
# fastrl.masking._rng.HashStream(k0, k1, b) (identical draws, identical masks).
@njit(parallel=True, **_OPTS)
def block_mask(out, num_mask, min_patches, max_patches, log_a0, log_a1, k0, k1):
    B, H, W = out.shape
    for b in prange(B):
        key0 = _lowbias32((b ^ k0) & 0xFFFFFFFF)
        ctr = 0
        count = 0
        while count < num_mask:
            budget = min(num_mask - count, max_patches)
            delta = 0
            for _attempt in range(10):
                u = _hash(ctr, key0, k1) * 2.0 ** -32
                ctr += 1
                area = min_patches + (budget - min_patches) * u
                u = _hash(ctr, key0, k1) * 2.0 ** -32
                ctr += 1
                aspect = math.exp(log_a0 + (log_a1 - log_a0) * u)
                h = int(round(math.sqrt(area * aspect)))
                w = int(round(math.sqrt(area / aspect)))
                if w < W and h < H:
                    top = (_hash(ctr, key0, k1) * (H - h + 1)) >> 32
                    ctr += 1
                    left = (_hash(ctr, key0, k1) * (W - w + 1)) >> 32
                    ctr += 1
                    covered = 0
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            covered += out[b, i, j]
                    new = h * w - covered
                    if 0 < new <= budget:
                        for i in range(top, top + h):
                            for j in range(left, left + w):
                                out[b, i, j] = 1
                        delta += new
                    if delta > 0:
                        break
            if delta == 0:
                break
            count += delta


# Below this many elements a kernel runs on the calling thread: waking the
# worker threads costs more than the work (and a scheduler tick on a busy machine).
PARALLEL_MIN_WORK = 1 << 22


def run(kernel, work: int, *args):
    """Call ``kernel(*args)`` with all Numba threads for large ``work``, one thread otherwise.

    ``torch.get_num_threads()`` is the same afterwards. Numba's OpenMP layer and torch
    both use libgomp: launching Numba's thread pool (the first Numba call that needs it,
    ``numba.get_num_threads`` included) can reset torch's intra-op count to Numba's, so a
    changed count is put back; Numba's count is only touched when it is not 1 already.
    """
    torch_threads = torch.get_num_threads()  # before any Numba call
    try:
        if work >= PARALLEL_MIN_WORK:
            return kernel(*args)
        previous = numba.get_num_threads()
        if previous == 1:
            return kernel(*args)
        numba.set_num_threads(1)
        try:
            return kernel(*args)
        finally:
            numba.set_num_threads(previous)
    finally:
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
