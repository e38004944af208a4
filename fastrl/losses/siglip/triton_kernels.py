"""Triton kernels of the SigLIP core (see ``cpu.py`` for the math).

* ``_siglip_fwd_kernel``: one program per block of rows of A; streams the
  rows of B in tiles, forms ``t = -z (s a.b + b0)`` in fp32 and accumulates
  ``softplus(t)`` per row. Only the row sums are written.
* ``_siglip_bwd_kernel``: one program per block of rows of A; recomputes the
  tiles and accumulates ``sum_j G_ij b_j`` with ``G = -z sigmoid(t) g`` in
  registers (and the row sums of G, for the bias gradient). dX is one launch
  (A = X, B = Y, g on rows) and dY another (A = Y, B = X, g on columns), so
  each program owns its output rows: no atomics, no N x N in memory.

fp16/bf16 operands accumulate in fp32 through ``tl.dot``; fp32 operands use
``fastrl._dispatch.fp32_precision()`` (TF32x3 by default, ``FASTRL_FP32_PRECISION``). Under the interpreter bf16 dots are upcast (``upcast_bf16_dot``).
Tile sizes: fixed ``BLOCK_M``/``BLOCK_N`` (module defaults, or the ``block_m``
/``block_n`` arguments) under the interpreter or with ``FASTRL_AUTOTUNE=0``;
otherwise autotuned over at most 6 configurations keyed on D and bucketed N.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastrl._dispatch import autotune_enabled, fp32_precision, interpreting, upcast_bf16_dot
from fastrl.losses.contrastive.triton_kernels import n_bucket

# tiles used without autotuning (interpreter, FASTRL_AUTOTUNE=0); tests shrink them
BLOCK_M = 64
BLOCK_N = 64
BLOCK_D_MAX = None  # D slice cap (None: 128); tests set 16 so the D loops run several times


@triton.jit
def _dot_tile(A, B, rows, cols, M, N, D, stride_a, stride_b,
              UPCAST: tl.constexpr, PREC: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    # acc[i, j] = <a_i, b_j> in fp32, looping over D in BLOCK_D slices (64-bit offsets)
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    ra = rows.to(tl.int64)[:, None] * stride_a
    rb = cols.to(tl.int64)[:, None] * stride_b
    for d0 in range(0, D, BLOCK_D):
        dims = d0 + tl.arange(0, BLOCK_D)
        a = tl.load(A + ra + dims[None, :], mask=(rows[:, None] < M) & (dims[None, :] < D), other=0.0)
        b = tl.load(B + rb + dims[None, :], mask=(cols[:, None] < N) & (dims[None, :] < D), other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc += tl.dot(a, tl.trans(b), input_precision=PREC)
    return acc


# t = -z (s <a_i, b_j> + bias), z = +1 where j == i + pos_off (HAS_POS), else -1
@triton.jit
def _margin_tile(A, B, rows, n0, M, N, D, stride_a, stride_b, scale, bias, pos_off,
                 HAS_POS: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    cols = n0 + tl.arange(0, BLOCK_N)
    logit = _dot_tile(A, B, rows, cols, M, N, D, stride_a, stride_b, UPCAST, PREC,
                      BLOCK_M, BLOCK_N, BLOCK_D) * scale + bias
    sign = tl.full([BLOCK_M, BLOCK_N], 1.0, tl.float32)
    if HAS_POS:
        sign = tl.where(cols[None, :] == rows[:, None] + pos_off, -1.0, 1.0)
    valid = (rows[:, None] < M) & (cols[None, :] < N)
    return logit * sign, sign, cols, valid


# softplus(t) = max(t, 0) + log1p(exp(-|t|)); log1p(e) = log(u) e / (u - 1), u = 1 + e
# (exact to rounding even when e is below fp32 epsilon)
@triton.jit
def _softplus(t):
    e = tl.exp(-tl.abs(t))
    u = 1.0 + e
    l1p = tl.where(u == 1.0, e, tl.log(u) * (e / tl.where(u == 1.0, 1.0, u - 1.0)))
    return tl.maximum(t, 0.0) + l1p


@triton.jit
def _siglip_fwd_kernel(A, B, OUT, M, N, D, stride_a, stride_b, scale, bias, pos_off, N_BUCKET,
                       HAS_POS: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    acc = tl.zeros([BLOCK_M], tl.float32)
    for n0 in range(0, N, BLOCK_N):
        t, sign, cols, valid = _margin_tile(A, B, rows, n0, M, N, D, stride_a, stride_b, scale, bias, pos_off,
                                            HAS_POS, UPCAST, PREC, BLOCK_M, BLOCK_N, BLOCK_D)
        acc += tl.sum(tl.where(valid, _softplus(t), 0.0), 1)
    tl.store(OUT + rows, acc, mask=rows < M)


# OUT[i] = sum_j G_ij b_j, GSUM[i] = sum_j G_ij with G_ij = -z_ij sigmoid(t_ij) g
# (g = G_VEC[i] when G_ON_ROWS, else G_VEC[j])
@triton.jit
def _siglip_bwd_kernel(A, B, G_VEC, OUT, GSUM, M, N, D, stride_a, stride_b, stride_o, scale, bias, pos_off,
                       N_BUCKET,
                       HAS_POS: tl.constexpr, G_ON_ROWS: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < M
    if G_ON_ROWS:
        g_r = tl.load(G_VEC + rows, mask=rmask, other=0.0)
    gs = tl.zeros([BLOCK_M], tl.float32)
    ro = rows.to(tl.int64)[:, None] * stride_o
    # the D loop is outermost here so the accumulator is one [BLOCK_M, BLOCK_D] slice;
    # G is recomputed per slice (cheap when D fits one slice, the usual case)
    for d0 in range(0, D, BLOCK_D):
        dims = d0 + tl.arange(0, BLOCK_D)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        for n0 in range(0, N, BLOCK_N):
            t, sign, cols, valid = _margin_tile(A, B, rows, n0, M, N, D, stride_a, stride_b, scale, bias, pos_off,
                                                HAS_POS, UPCAST, PREC, BLOCK_M, BLOCK_N, BLOCK_D)
            p = tl.sigmoid(t) * sign
            if G_ON_ROWS:
                p = p * g_r[:, None]
            else:
                g_c = tl.load(G_VEC + cols, mask=cols < N, other=0.0)
                p = p * g_c[None, :]
            p = tl.where(valid, p, 0.0)
            gs += tl.where(d0 == 0, tl.sum(p, 1), 0.0)
            b = tl.load(B + cols.to(tl.int64)[:, None] * stride_b + dims[None, :],
                        mask=(cols[:, None] < N) & (dims[None, :] < D), other=0.0)
            if UPCAST:
                b = b.to(tl.float32)
            acc += tl.dot(p.to(b.dtype), b, input_precision=PREC)
        tl.store(OUT + ro + dims[None, :], acc, mask=rmask[:, None] & (dims[None, :] < D))
    tl.store(GSUM + rows, gs, mask=rmask)


def _configs():
    # <= 6 configurations
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bm, bn, w, s in ((64, 64, 4, 3), (128, 64, 8, 3), (64, 128, 4, 3),
                                 (128, 128, 8, 2), (32, 64, 4, 4), (64, 32, 4, 4))]


_KEY = ["D", "N_BUCKET", "HAS_POS"]
_fwd_tuned = triton.autotune(_configs(), key=_KEY)(_siglip_fwd_kernel)
_bwd_tuned = triton.autotune(_configs(), key=_KEY + ["G_ON_ROWS"])(_siglip_bwd_kernel)


def _block_d(d: int) -> int:
    bd = max(16, triton.next_power_of_2(d))
    # 128: one slice for the usual D <= 128; (64 + 64) x 128 fp32 operands x 2 stages fit shared memory
    return min(bd, max(16, BLOCK_D_MAX or 128))


def _launch(kernel, tuned, m: int, args, flags, block_m, block_n) -> None:
    fixed = interpreting() or not autotune_enabled() or block_m is not None or block_n is not None
    if fixed:
        bm, bn = block_m or BLOCK_M, block_n or BLOCK_N
        kernel[(triton.cdiv(m, bm),)](*args, **flags, BLOCK_M=bm, BLOCK_N=bn, num_warps=4, num_stages=2)
    else:
        tuned[lambda meta: (triton.cdiv(m, meta["BLOCK_M"]),)](*args, **flags)


def _flags(a: torch.Tensor, pos_offset) -> dict:
    return dict(HAS_POS=pos_offset is not None, UPCAST=upcast_bf16_dot(a.dtype),
                PREC=fp32_precision() if a.dtype == torch.float32 else "tf32", BLOCK_D=_block_d(a.shape[1]))


def siglip_forward(x, y, scale: float, bias: float, pos_offset, block_m=None, block_n=None):
    """Row sums [M] (fp32) of ``softplus(-z L)``."""
    x, y = x.contiguous(), y.contiguous()
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    out = torch.empty(m, dtype=torch.float32, device=x.device)
    args = (x, y, out, m, n, d, x.stride(0), y.stride(0), float(scale), float(bias),
            0 if pos_offset is None else int(pos_offset), n_bucket(n))
    _launch(_siglip_fwd_kernel, _fwd_tuned, m, args, _flags(x, pos_offset), block_m, block_n)
    return out


def _grad_rows(a, b, g, scale, bias, pos_offset, g_on_rows, block_m, block_n):
    m, n, d = a.shape[0], b.shape[0], a.shape[1]
    out = torch.empty((m, d), dtype=torch.float32, device=a.device)
    gsum = torch.empty(m, dtype=torch.float32, device=a.device)
    args = (a, b, g, out, gsum, m, n, d, a.stride(0), b.stride(0), out.stride(0), float(scale), float(bias),
            0 if pos_offset is None else int(pos_offset), n_bucket(n))
    flags = _flags(a, pos_offset)
    flags["G_ON_ROWS"] = g_on_rows
    _launch(_siglip_bwd_kernel, _bwd_tuned, m, args, flags, block_m, block_n)
    return out, gsum


def siglip_backward(x, y, scale: float, bias: float, pos_offset, g, need_dy: bool, block_m=None, block_n=None):
    """Unscaled ``G Y`` [M, D], ``G^T X`` [N, D] (or None), both fp32, and ``sum G``."""
    x, y = x.contiguous(), y.contiguous()
    g = g.float().contiguous()
    gy, gsum = _grad_rows(x, y, g, scale, bias, pos_offset, True, block_m, block_n)
    gx = None
    if need_dy:
        # rows of Y against columns of X: positive where i == j - pos_offset
        gx, _ = _grad_rows(y, x, g, scale, bias, None if pos_offset is None else -int(pos_offset), False,
                           block_m, block_n)
    return gy, gx, gsum.sum()
