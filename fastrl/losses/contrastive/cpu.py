"""Chunked torch path of the contrastive LSE core (runs on any device).

The core computes, for ``S = scale * Q K^T`` (Q [M, D], K [N, D]),

* ``rlse[i] = log sum_j exp(S[i, j])`` over the unmasked columns, and
* optionally ``clse[j] = log sum_i exp(S[i, j])`` (the symmetric CLIP loss),

one block of query rows at a time, so no M x N matrix is ever held: the
forward keeps only the LSE vectors, the backward recomputes each block.
Masking removes the entries ``j == i + mask_offset`` (NT-Xent self-pairs).

Backward with upstream gradients ``gr`` (of rlse) and ``gc`` (of clse)::

    P[i, j]  = exp(S[i, j] - rlse[i]) gr[i] + exp(S[i, j] - clse[j]) gc[j]
    dQ       = scale * P K          dK = scale * P^T Q
    dscale   = sum_ij P[i, j] q_i.k_j = sum(Q * (P K))

``symmetric=True`` means K is Q (one tensor, S symmetric, no clse): then
P^T's block rows are ``exp(S - rlse[None, :]) gr[None, :]`` so the gradient
``dZ = scale (P + P^T) Z`` needs one matmul per block instead of two.
"""
from __future__ import annotations

import torch

# elements of one [rows, N] fp32 block (32 MiB); the forward and backward
# hold at most two such blocks at a time.
CHUNK_ELEMENTS = 1 << 23
# largest spread of row/column maxima for which one shared exp shift is exact
# to fp32 rounding (exp(-60) is far below fp32 epsilon)
SPREAD = 60.0


def _rows_per_chunk(n_rows: int, n_cols: int, chunk_elements: int | None = None) -> int:
    budget = chunk_elements or CHUNK_ELEMENTS
    return max(16, min(n_rows, budget // max(n_cols, 1)))


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _logits_block(q: torch.Tensor, k: torch.Tensor, r0: int, r1: int, scale: float,
                  mask_offset: int | None) -> torch.Tensor:
    """S[r0:r1] = scale * q[r0:r1] k^T with the masked entries set to -inf."""
    s = torch.mm(q[r0:r1], k.T).mul_(scale)
    if mask_offset is not None:
        rows = torch.arange(r0, r1, device=q.device)
        cols = rows + mask_offset
        ok = (cols >= 0) & (cols < k.shape[0])
        s[(rows - r0)[ok], cols[ok]] = float("-inf")
    return s


def _safe(x: torch.Tensor) -> torch.Tensor:
    """Shift vector with -inf (fully masked rows/columns) replaced by 0."""
    return x.masked_fill(torch.isinf(x), 0.0)


def _one_shift(c, *vectors) -> bool:
    """True when one shared shift ``c`` keeps every row's/column's leading
    terms representable: ``exp(S - c)`` then loses only terms below
    ``exp(-SPREAD)`` relative to each row's (column's) largest one."""
    lo = min(float(v.min()) for v in vectors)
    return float(c) - lo < SPREAD


def lse_forward(q, k, scale: float, mask_offset, want_col: bool):
    """Row LSE [M] (and column LSE [N] when ``want_col``) of the masked logits."""
    m, n = q.shape[0], k.shape[0]
    rlse = torch.empty(m, dtype=q.dtype, device=q.device)
    clse = torch.full((n,), float("-inf"), dtype=q.dtype, device=q.device) if want_col else None
    step = _rows_per_chunk(m, n)
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        s = _logits_block(q, k, r0, r1, scale, mask_offset)
        rmax = s.amax(dim=1)
        if want_col:
            cmax = s.amax(dim=0)
            c = rmax.max()
            if _one_shift(c, rmax, cmax):
                # one exp pass serves the row and the column sums
                e = s.sub_(c).exp_()
                rlse[r0:r1] = torch.log(e.sum(dim=1)).add_(c)
                part = torch.log(e.sum(dim=0)).add_(c)
            else:
                part = torch.log((s - _safe(cmax)[None, :]).exp_().sum(dim=0)).add_(cmax)
                rlse[r0:r1] = torch.log(s.sub_(_safe(rmax)[:, None]).exp_().sum(dim=1)).add_(rmax)
            torch.logaddexp(clse, part, out=clse)
        else:
            rlse[r0:r1] = torch.log(s.sub_(_safe(rmax)[:, None]).exp_().sum(dim=1)).add_(rmax)
        del s
    return rlse, clse


def lse_backward(q, k, scale: float, mask_offset, rlse, gr, clse, gc, need_dk: bool):
    """Unscaled gradients ``P K`` [M, D] and ``P^T Q`` [N, D] (or None)."""
    m, n = q.shape[0], k.shape[0]
    dq = torch.empty_like(q)
    dk = torch.zeros_like(k) if need_dk else None
    fast = False
    if clse is not None:
        c = torch.maximum(rlse.max(), clse.max())
        fast = _one_shift(c, rlse, clse)
        if fast:
            # P = exp(S - c) (u_i + v_j): one exp pass for both terms
            u = torch.exp(c - rlse).mul_(gr)
            v = torch.exp(c - clse).mul_(gc)
    rlse = _safe(rlse)
    clse = _safe(clse) if clse is not None else None
    step = _rows_per_chunk(m, n)
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        s = _logits_block(q, k, r0, r1, scale, mask_offset)
        if fast:
            e = s.sub_(c).exp_()
            p = torch.mul(e, u[r0:r1, None]).addcmul_(e, v[None, :])
            del e
        else:
            if clse is not None:
                col_term = (s - clse[None, :]).exp_().mul_(gc[None, :])
            p = s.sub_(rlse[r0:r1, None]).exp_().mul_(gr[r0:r1, None])
            if clse is not None:
                p.add_(col_term)
                del col_term
        torch.mm(p, k, out=dq[r0:r1])
        if dk is not None:
            dk.addmm_(p.T, q[r0:r1])
        del s, p
    return dq, dk


class ChunkedLSE(torch.autograd.Function):
    """Autograd wrapper: ``(rlse, clse) = ChunkedLSE.apply(q, k, scale, mask_offset, want_col, symmetric)``.

    ``scale`` is a 0-d tensor (it receives a gradient); ``clse`` is an empty
    tensor when ``want_col`` is False. Inputs of any float dtype; fp16/bf16
    are computed in fp32.
    """

    @staticmethod
    def forward(ctx, q, k, scale, mask_offset, want_col, symmetric):
        cdt = _compute_dtype(q)
        q32 = q.to(cdt)
        k32 = q32 if symmetric else k.to(cdt)
        s = float(scale)
        rlse, clse = lse_forward(q32, k32, s, mask_offset, want_col)
        ctx.save_for_backward(q, k, scale, rlse, clse if want_col else rlse.new_empty(0))
        ctx.mask_offset, ctx.want_col, ctx.symmetric = mask_offset, want_col, symmetric
        return rlse, (clse if want_col else rlse.new_empty(0))

    @staticmethod
    def backward(ctx, grad_rlse, grad_clse):
        q, k, scale, rlse, clse = ctx.saved_tensors
        cdt = _compute_dtype(q)
        q32 = q.to(cdt)
        k32 = q32 if ctx.symmetric else k.to(cdt)
        s = float(scale)
        gr = grad_rlse.to(cdt) if grad_rlse is not None else torch.zeros_like(rlse)
        if ctx.symmetric:
            clse_b, gc = rlse, gr
        elif ctx.want_col:
            clse_b = clse
            gc = grad_clse.to(cdt) if grad_clse is not None else torch.zeros_like(clse)
        else:
            clse_b, gc = None, None
        need_dk = (not ctx.symmetric) and ctx.needs_input_grad[1]
        dq, dk = lse_backward(q32, k32, s, ctx.mask_offset, rlse, gr, clse_b, gc, need_dk)
        dscale = None
        if ctx.needs_input_grad[2]:
            total = torch.dot(q32.reshape(-1), dq.reshape(-1))
            dscale = (0.5 * total if ctx.symmetric else total).to(scale.dtype).reshape(scale.shape)
        dq = dq.mul_(s).to(q.dtype)
        dk = dk.mul_(s).to(k.dtype) if dk is not None else None
        return dq, dk, dscale, None, None, None
