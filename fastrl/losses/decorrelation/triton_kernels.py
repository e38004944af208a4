"""Triton path: fused column statistics and cross-correlation kernels; cuBLAS Grams.

Same interface as :mod:`.cpu` (``column_stats``, ``gram_fro``, ``gram_apply``,
``cross_parts``, ``cross_grads``); B=None means B = A. Inputs are the fp32
standardised views (half-precision inputs are upcast by the stats pass).
Import this module only when the Triton path is chosen.

* cross form (N >= D): tiles of C = scale A^T B reduced in place, never stored
  (custom kernels below; fp32 ``tl.dot`` at :func:`fastrl._dispatch.fp32_precision`).
* gram form (N < D): the N x N Grams A A^T, B B^T are small (16 MiB each at
  N = 2048), so they come from ``torch.mm`` (cuBLAS on CUDA) and are kept for
  the backward (P = (B B^T) A, Q = (A A^T) B: two more GEMMs, no recompute).
  Above ``GRAM_KEEP_BYTES`` the blocked torch form of :mod:`.cpu` runs instead.

Offsets are 64-bit (``rows * stride`` passes 2^31 at N * D >= 2^31).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastrl._dispatch import fp32_precision, interpreting

from . import cpu

_KIND = {"barlow": 0, "hinge": 1}
# both N x N fp32 Grams kept when they take at most this much (2 x 1 GiB: N <= 16384)
GRAM_KEEP_BYTES = 2 << 30
# tile sizes; None = the default for the machine (tests set small tiles to run every loop)
TILES = {"block_i": None, "block_j": None, "block_n": None, "stats_n": None, "stats_d": None}


def _blocks():
    # the interpreter runs tiles as numpy: small tiles keep odd shapes cheap
    bi, bn = (16, 64) if interpreting() else (64, 32)
    return TILES["block_i"] or bi, TILES["block_n"] or bn


# Column statistics in one pass (Chan et al. merge of per-block mean and M2):
#   delta = mean_b - mean;  mean += delta * n_b / n;  M2 += M2_b + delta^2 * n_a n_b / n
@triton.jit
def _col_stats_kernel(X, MEAN, M2, N, D, stride_n, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    cols = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < D
    mean = tl.zeros([BLOCK_D], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_D], dtype=tl.float32)
    count = tl.zeros([BLOCK_D], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        rows = n0 + tl.arange(0, BLOCK_N)
        mask = (rows < N)[:, None] & cmask[None, :]
        x = tl.load(X + rows.to(tl.int64)[:, None] * stride_n + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        nb = tl.sum(mask.to(tl.float32), axis=0)
        bmean = tl.sum(x, axis=0) / tl.maximum(nb, 1.0)
        dev = tl.where(mask, x - bmean[None, :], 0.0)
        bm2 = tl.sum(dev * dev, axis=0)
        total = count + nb
        delta = bmean - mean
        mean = mean + delta * (nb / tl.maximum(total, 1.0))
        m2 = m2 + bm2 + delta * delta * (count * nb / tl.maximum(total, 1.0))
        count = total
    tl.store(MEAN + cols, mean, mask=cmask)
    tl.store(M2 + cols, m2, mask=cmask)


@triton.jit
def _diag_f(c, KIND: tl.constexpr, eps):
    # Barlow: (1 - c)^2 ; VICReg: relu(1 - sqrt(c + eps)) with c the variance
    if KIND == 0:
        v = (1.0 - c) * (1.0 - c)
    else:
        v = tl.maximum(1.0 - tl.sqrt(tl.maximum(c + eps, 0.0)), 0.0)
    return v


@triton.jit
def _diag_df(c, KIND: tl.constexpr, eps):
    if KIND == 0:
        g = -2.0 * (1.0 - c)
    else:
        s = tl.sqrt(tl.maximum(c + eps, 1e-30))
        g = tl.where(s < 1.0, -0.5 / s, 0.0)
    return g


@triton.jit
def _c_tile(A, B, ci, cj, N, D, stride_a, stride_b, scale, PREC: tl.constexpr, BLOCK_I: tl.constexpr,
            BLOCK_J: tl.constexpr, BLOCK_N: tl.constexpr):
    # C[ci, cj] = scale * sum_n A[n, ci] B[n, cj]
    acc = tl.zeros([BLOCK_I, BLOCK_J], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        rows = n0 + tl.arange(0, BLOCK_N)
        rmask = rows < N
        r64 = rows.to(tl.int64)[:, None]
        a = tl.load(A + r64 * stride_a + ci[None, :], mask=rmask[:, None] & (ci < D)[None, :], other=0.0)
        b = tl.load(B + r64 * stride_b + cj[None, :], mask=rmask[:, None] & (cj < D)[None, :], other=0.0)
        acc += tl.dot(tl.trans(a), b, input_precision=PREC)
    return acc * scale


# Cross form, forward: one program per (i, j) tile of C; the Barlow / VICReg
# epilogue (w_off * C_ij^2 off the diagonal, w_diag * f(C_ii) on it) is reduced
# in the kernel and only two partial sums per tile are written.
@triton.jit
def _cross_fwd_kernel(A, B, OUT, N, D, stride_a, stride_b, scale, w_off, w_diag, eps, KIND: tl.constexpr,
                      PREC: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_i = tl.program_id(0)
    pid_j = tl.program_id(1)
    ci = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    cj = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    c = _c_tile(A, B, ci, cj, N, D, stride_a, stride_b, scale, PREC, BLOCK_I, BLOCK_J, BLOCK_N)
    valid = (ci < D)[:, None] & (cj < D)[None, :]
    is_diag = ci[:, None] == cj[None, :]
    off = tl.sum(tl.sum(tl.where(valid & (~is_diag), c * c, 0.0), axis=1), axis=0)
    dg = tl.sum(tl.sum(tl.where(valid & is_diag, _diag_f(c, KIND, eps), 0.0), axis=1), axis=0)
    pid = pid_i * tl.num_programs(1) + pid_j
    tl.store(OUT + 2 * pid, off * w_off)
    tl.store(OUT + 2 * pid + 1, dg * w_diag)


# Cross form, backward: dA = scale * B G^T with G = dL/dC recomputed tile by tile
# (G_ij = 2 w_off g_off C_ij, G_ii = w_diag g_diag f'(C_ii)). One program owns the
# columns ci of dA, so the read-modify-write accumulation has no races.
@triton.jit
def _cross_bwd_kernel(A, B, GA, GRAD, N, D, stride_a, stride_b, stride_g, scale, w_off, w_diag, eps,
                      KIND: tl.constexpr, PREC: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr,
                      BLOCK_N: tl.constexpr):
    ci = tl.program_id(0) * BLOCK_I + tl.arange(0, BLOCK_I)
    g_off = tl.load(GRAD)
    g_diag = tl.load(GRAD + 1)
    for j0 in range(0, D, BLOCK_J):
        cj = j0 + tl.arange(0, BLOCK_J)
        c = _c_tile(A, B, ci, cj, N, D, stride_a, stride_b, scale, PREC, BLOCK_I, BLOCK_J, BLOCK_N)
        valid = (ci < D)[:, None] & (cj < D)[None, :]
        is_diag = ci[:, None] == cj[None, :]
        g = tl.where(is_diag, (w_diag * g_diag) * _diag_df(c, KIND, eps), (2.0 * w_off * g_off) * c)
        g = tl.where(valid, g, 0.0)
        for n0 in range(0, N, BLOCK_N):
            rows = n0 + tl.arange(0, BLOCK_N)
            rmask = rows < N
            r64 = rows.to(tl.int64)[:, None]
            b = tl.load(B + r64 * stride_b + cj[None, :], mask=rmask[:, None] & (cj < D)[None, :], other=0.0)
            upd = tl.dot(b, tl.trans(g), input_precision=PREC) * scale
            ptrs = GA + r64 * stride_g + ci[None, :]
            omask = rmask[:, None] & (ci < D)[None, :]
            tl.store(ptrs, tl.load(ptrs, mask=omask, other=0.0) + upd, mask=omask)


def _c(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_contiguous() else x.contiguous()


def column_stats(x: torch.Tensor):
    """Column means and M2 of ``x`` [N, D] in one pass (fp32)."""
    x = _c(x)
    n, d = x.shape
    mean = torch.empty(d, device=x.device, dtype=torch.float32)
    m2 = torch.empty_like(mean)
    bn, bd = (16, 16) if interpreting() else (64, 64)
    bn, bd = TILES["stats_n"] or bn, TILES["stats_d"] or bd
    _col_stats_kernel[(triton.cdiv(d, bd),)](x, mean, m2, n, d, x.stride(0), BLOCK_N=bn, BLOCK_D=bd)
    return mean, m2


def _gram_fits(A: torch.Tensor) -> bool:
    return 2 * A.shape[0] ** 2 * 4 <= GRAM_KEEP_BYTES


def gram_fro(A: torch.Tensor, B: torch.Tensor | None):
    """(<A A^T, B B^T>_F, kept): the Grams from torch.mm (cuBLAS), kept for
    :func:`gram_apply` when both fit ``GRAM_KEEP_BYTES`` (else blocked, kept None)."""
    if not _gram_fits(A):
        return cpu.gram_fro(A, B)  # (total, None)
    ga = torch.mm(A, A.T)
    if B is None:
        return torch.dot(ga.reshape(-1), ga.reshape(-1)), (ga, None)
    gb = torch.mm(B, B.T)
    return torch.dot(ga.reshape(-1), gb.reshape(-1)), (ga, gb)


def gram_apply(A: torch.Tensor, B: torch.Tensor | None, kept=None):
    """P = (B B^T) A and Q = (A A^T) B (Q None when B is None), from the kept Grams."""
    if kept is None:
        return cpu.gram_apply(A, B)
    ga, gb = kept
    if B is None:
        return torch.mm(ga, A), None
    return torch.mm(gb, A), torch.mm(ga, B)


def cross_parts(A, B, scale, w_off, kind, w_diag, eps):
    """([w_off * sum_{i!=j} C_ij^2, w_diag * sum_i f(C_ii)], None): C = scale * A^T B
    is reduced tile by tile and never stored (the backward recomputes it)."""
    A = _c(A)
    Bx = A if B is None else _c(B)
    n, d = A.shape
    bi, bn = _blocks()
    grid = (triton.cdiv(d, bi), triton.cdiv(d, bi))
    out = torch.empty(grid[0] * grid[1], 2, device=A.device, dtype=torch.float32)
    _cross_fwd_kernel[grid](A, Bx, out, n, d, A.stride(0), Bx.stride(0), float(scale), float(w_off), float(w_diag),
                            float(eps), KIND=_KIND[kind], PREC=fp32_precision(), BLOCK_I=bi, BLOCK_J=bi, BLOCK_N=bn)
    return out.sum(dim=0), None


def _cross_grad(A, B, scale, w_off, kind, w_diag, eps, grad):
    n, d = A.shape
    bi, bn = _blocks()
    bj = TILES["block_j"] or bi  # the backward's C tiles may be wider than its dA column block
    if A.is_cuda and TILES["block_i"] is None:
        # one program per BLOCK_I columns of dA: narrower column blocks until the grid
        # covers every SM twice (D = 2048 gives 32 programs of 64 columns)
        sms = torch.cuda.get_device_properties(A.device).multi_processor_count
        while bi > 16 and triton.cdiv(d, bi) < 2 * sms:
            bi //= 2
    gA = torch.zeros_like(A)
    _cross_bwd_kernel[(triton.cdiv(d, bi),)](A, B, gA, grad, n, d, A.stride(0), B.stride(0), gA.stride(0),
                                             float(scale), float(w_off), float(w_diag), float(eps),
                                             KIND=_KIND[kind], PREC=fp32_precision(), BLOCK_I=bi, BLOCK_J=bj,
                                             BLOCK_N=bn)
    return gA


def cross_grads(A, B, scale, w_off, kind, w_diag, eps, grad, kept=None):
    """(dA, dB) of ``grad . cross_parts``; dB = the same kernel on (B, A) since C(B, A) = C^T.
    ``kept`` is always None here (the tiles are recomputed)."""
    A = _c(A)
    grad = _c(grad.to(torch.float32))
    if B is None:
        return _cross_grad(A, A, scale, w_off, kind, w_diag, eps, grad).mul_(2.0), None
    B = _c(B)
    return (_cross_grad(A, B, scale, w_off, kind, w_diag, eps, grad),
            _cross_grad(B, A, scale, w_off, kind, w_diag, eps, grad))
