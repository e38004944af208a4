"""Triton kernels of the contrastive LSE core (see ``cpu.py`` for the math).

Two kernels serve every softmax-cross-entropy loss in this package:

* ``_lse_fwd_kernel``: one program per block of rows of A; streams the rows
  of B in tiles and keeps a running (max, sum) per row (flash-attention
  style online log-sum-exp). Only the LSE vector is written. The column LSE
  of the symmetric CLIP loss is the same kernel with A and B swapped.
* ``_lse_bwd_kernel``: one program per block of rows of A; recomputes the
  logit tiles and accumulates ``dA = sum_j P[i, j] b_j`` in registers, where
  ``P = exp(S - lse_row) g_row + exp(S - lse_col) g_col``. dQ is one launch
  (A = Q, B = K) and dK another (A = K, B = Q, row/col roles swapped), so
  each program owns its output rows: no atomics on the N x N.

Logits are fp32 (fp16/bf16 operands accumulate in fp32 through ``tl.dot``;
fp32 operands use IEEE precision, not TF32). D is padded to a power of two.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastrl._dispatch import interpreting, upcast_bf16_dot

_NEG_INF = float("-inf")


# a block of rows [BLOCK_M, BLOCK_D] of X (zero padded), upcast for the interpreter's bf16 dot
@triton.jit
def _load_rows(X, rows, dims, n_rows, D, stride, UPCAST: tl.constexpr):
    # 64-bit offsets: rows * stride passes 2^31 at N = 2M, D = 1024
    x = tl.load(X + rows.to(tl.int64)[:, None] * stride + dims[None, :],
                mask=(rows[:, None] < n_rows) & (dims[None, :] < D), other=0.0)
    if UPCAST:
        x = x.to(tl.float32)
    return x


# one logit tile S = scale * a b^T of the columns n0.. (b returned for the dQ product);
# invalid (padded or masked j == i + mask_off) entries are -inf
@triton.jit
def _logit_tile(a, B, n0, rows, dims, M, N, D, stride_b, scale, mask_off,
                HAS_MASK: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr, BLOCK_N: tl.constexpr):
    cols = n0 + tl.arange(0, BLOCK_N)
    b = _load_rows(B, cols, dims, N, D, stride_b, UPCAST)
    s = tl.dot(a, tl.trans(b), input_precision=PREC) * scale
    valid = (cols[None, :] < N) & (rows[:, None] < M)
    if HAS_MASK:
        valid = valid & (cols[None, :] != rows[:, None] + mask_off)
    return tl.where(valid, s, _NEG_INF), b, cols, valid


# S[i, j] = scale * <a_i, b_j>, masked where j == i + mask_off;
# lse[i] = m_i + log(l_i) with m the running max and l the rescaled sum.
@triton.jit
def _lse_fwd_kernel(A, B, OUT, M, N, D, stride_a, stride_b, scale, mask_off,
                    HAS_MASK: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    rmask = rows < M
    a = _load_rows(A, rows, dims, M, D, stride_a, UPCAST)
    m_i = tl.full([BLOCK_M], _NEG_INF, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    for n0 in range(0, N, BLOCK_N):
        s, b, cols, valid = _logit_tile(a, B, n0, rows, dims, M, N, D, stride_b, scale, mask_off,
                                        HAS_MASK, UPCAST, PREC, BLOCK_N)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == _NEG_INF, 0.0, m_new)
        l_i = l_i * tl.exp(m_i - m_safe) + tl.sum(tl.exp(s - m_safe[:, None]), 1)
        m_i = m_new
    tl.store(OUT + rows, m_i + tl.log(tl.where(l_i > 0, l_i, 1.0)), mask=rmask)


# dA[i] = sum_j P[i, j] b_j with
# P[i, j] = exp(S[i, j] - lse_r[i]) g_r[i] + exp(S[i, j] - lse_c[j]) g_c[j]
@triton.jit
def _lse_bwd_kernel(A, B, OUT, LSE_R, G_R, LSE_C, G_C, M, N, D, stride_a, stride_b, stride_o,
                    scale, mask_off,
                    HAS_ROW: tl.constexpr, HAS_COL: tl.constexpr, HAS_MASK: tl.constexpr,
                    UPCAST: tl.constexpr, PREC: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    rmask = rows < M
    a = _load_rows(A, rows, dims, M, D, stride_a, UPCAST)
    if HAS_ROW:
        lr = tl.load(LSE_R + rows, mask=rmask, other=0.0)
        lr = tl.where(lr == _NEG_INF, 0.0, lr)
        gr = tl.load(G_R + rows, mask=rmask, other=0.0)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for n0 in range(0, N, BLOCK_N):
        s, b, cols, valid = _logit_tile(a, B, n0, rows, dims, M, N, D, stride_b, scale, mask_off,
                                        HAS_MASK, UPCAST, PREC, BLOCK_N)
        cmask = cols < N
        p = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        if HAS_ROW:
            p += tl.exp(s - lr[:, None]) * gr[:, None]
        if HAS_COL:
            lc = tl.load(LSE_C + cols, mask=cmask, other=0.0)
            lc = tl.where(lc == _NEG_INF, 0.0, lc)
            gc = tl.load(G_C + cols, mask=cmask, other=0.0)
            p += tl.exp(s - lc[None, :]) * gc[None, :]
        p = tl.where(valid, p, 0.0)
        acc += tl.dot(p.to(b.dtype), b, input_precision=PREC)
    tl.store(OUT + rows.to(tl.int64)[:, None] * stride_o + dims[None, :], acc,
             mask=rmask[:, None] & (dims[None, :] < D))


def _configs():
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bm in (16, 32, 64, 128) for bn in (32, 64, 128) for w in (4, 8) for s in (2, 3)]


def _prune(configs, named_args, **kwargs):
    # keep the A block and the accumulator within a register/shared budget
    bd = kwargs.get("BLOCK_D", named_args.get("BLOCK_D", 64))
    kept = [c for c in configs if c.kwargs["BLOCK_M"] * bd <= 16384 and c.kwargs["BLOCK_N"] * bd <= 16384]
    return kept or [c for c in configs if c.kwargs["BLOCK_M"] == 16 and c.kwargs["BLOCK_N"] == 32]


_KEY = ["D", "HAS_MASK"]
_fwd_tuned = triton.autotune(_configs(), key=_KEY, prune_configs_by={"early_config_prune": _prune})(_lse_fwd_kernel)
_bwd_tuned = triton.autotune(_configs(), key=_KEY + ["HAS_ROW", "HAS_COL"],
                             prune_configs_by={"early_config_prune": _prune})(_lse_bwd_kernel)

# fixed tiles under the interpreter (autotuning there would only cost time)
_INTERP_BLOCK = 32


def _launch(kernel, tuned, m: int, args, flags) -> None:
    """One program per BLOCK_M rows: fixed tiles under the interpreter, autotuned on GPU."""
    if interpreting():
        kernel[(triton.cdiv(m, _INTERP_BLOCK),)](*args, **flags, BLOCK_M=_INTERP_BLOCK, BLOCK_N=_INTERP_BLOCK)
    else:
        tuned[lambda meta: (triton.cdiv(m, meta["BLOCK_M"]),)](*args, **flags)


def _common(a: torch.Tensor):
    d = a.shape[1]
    block_d = max(16, triton.next_power_of_2(d))
    prec = "ieee" if a.dtype == torch.float32 else "tf32"
    return d, block_d, upcast_bf16_dot(a.dtype), prec


def lse_rows(a: torch.Tensor, b: torch.Tensor, scale: float, mask_offset) -> torch.Tensor:
    """Row LSE [M] of ``scale * a b^T`` (fp32), masked where j == i + mask_offset."""
    a, b = a.contiguous(), b.contiguous()
    m, n = a.shape[0], b.shape[0]
    d, block_d, upcast, prec = _common(a)
    out = torch.empty(m, dtype=torch.float32, device=a.device)
    args = (a, b, out, m, n, d, a.stride(0), b.stride(0), scale,
            0 if mask_offset is None else int(mask_offset))
    flags = dict(HAS_MASK=mask_offset is not None, UPCAST=upcast, PREC=prec, BLOCK_D=block_d)
    _launch(_lse_fwd_kernel, _fwd_tuned, m, args, flags)
    return out


def grad_rows(a, b, scale: float, mask_offset, lse_r, g_r, lse_c, g_c) -> torch.Tensor:
    """Unscaled gradient rows ``P b`` [M, D] (fp32); ``lse_r``/``lse_c`` may be None."""
    a, b = a.contiguous(), b.contiguous()
    m, n = a.shape[0], b.shape[0]
    d, block_d, upcast, prec = _common(a)
    out = torch.empty((m, d), dtype=torch.float32, device=a.device)
    dummy = out.new_zeros(1)
    has_row, has_col = lse_r is not None, lse_c is not None
    args = (a, b, out,
            lse_r.float().contiguous() if has_row else dummy, g_r.float().contiguous() if has_row else dummy,
            lse_c.float().contiguous() if has_col else dummy, g_c.float().contiguous() if has_col else dummy,
            m, n, d, a.stride(0), b.stride(0), out.stride(0), scale,
            0 if mask_offset is None else int(mask_offset))
    flags = dict(HAS_ROW=has_row, HAS_COL=has_col, HAS_MASK=mask_offset is not None,
                 UPCAST=upcast, PREC=prec, BLOCK_D=block_d)
    _launch(_lse_bwd_kernel, _bwd_tuned, m, args, flags)
    return out


class TritonLSE(torch.autograd.Function):
    """Same contract as :class:`fastrl.losses.contrastive.cpu.ChunkedLSE`,
    computed by the Triton kernels (fp16/bf16/fp32 inputs, fp32 LSE)."""

    @staticmethod
    def forward(ctx, q, k, scale, mask_offset, want_col, symmetric):
        s = float(scale)
        rlse = lse_rows(q, k, s, mask_offset)
        clse = lse_rows(k, q, s, None) if want_col else rlse.new_empty(0)
        ctx.save_for_backward(q, k, scale, rlse, clse)
        ctx.mask_offset, ctx.want_col, ctx.symmetric = mask_offset, want_col, symmetric
        return rlse, clse

    @staticmethod
    def backward(ctx, grad_rlse, grad_clse):
        q, k, scale, rlse, clse = ctx.saved_tensors
        s = float(scale)
        off = ctx.mask_offset
        gr = grad_rlse if grad_rlse is not None else torch.zeros_like(rlse)
        gc = None
        if ctx.want_col:
            gc = grad_clse if grad_clse is not None else torch.zeros_like(clse)
        if ctx.symmetric:
            # K is Q: dZ = (P + P^T) Z in one launch, P^T's rows use the row LSE of the columns
            dq = grad_rows(q, q, s, off, rlse, gr, rlse, gr)
        else:
            dq = grad_rows(q, k, s, off, rlse, gr, clse if ctx.want_col else None, gc)
        dk = None
        if ctx.needs_input_grad[1] and not ctx.symmetric:
            # rows of K against columns of Q: the roles of the two LSE vectors swap
            dk = grad_rows(k, q, s, None if off is None else -off,
                           clse if ctx.want_col else None, gc, rlse, gr)
        dscale = None
        if ctx.needs_input_grad[2]:
            total = torch.dot(q.float().reshape(-1), dq.reshape(-1))
            dscale = (0.5 * total if ctx.symmetric else total).to(scale.dtype).reshape(scale.shape)
        dq = dq.mul_(s).to(q.dtype)
        dk = dk.mul_(s).to(k.dtype) if dk is not None else None
        return dq, dk, dscale, None, None, None
