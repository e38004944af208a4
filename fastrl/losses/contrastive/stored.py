"""Stored-logits path of the contrastive LSE core (opt-in, for N x N that fits).

When the M x N fp32 logits fit a memory budget, keeping them turns the LSE core
into its matmul floor: one GEMM forward (``S = scale * Q K^T``, kept), and one
GEMM per input gradient backward (``dQ = scale * P K``, ``dK = scale * P^T Q``
with P built in place from S). Passes over N x N x D: CLIP and InfoNCE 3,
NT-Xent and MoCo 2 (see :mod:`.triton_kernels` for the recompute counts).

The budget is ``FASTRL_LOGITS_BUDGET_MB`` (default 0: off, always recompute)
or the ``store_logits`` argument of :func:`fastrl.losses.contrastive.lse_core`.
fp32 at N = 65,536 is 16 GiB, so large batches keep the recompute kernels.
"""
from __future__ import annotations

import os

import torch

_P_SCALE = 16384.0  # half-precision P is stored as P * 2^14 / max|g| (no fp16 underflow)


def logits_budget_bytes() -> int:
    """Bytes the stored logits may take (``FASTRL_LOGITS_BUDGET_MB``, default 0)."""
    raw = os.environ.get("FASTRL_LOGITS_BUDGET_MB", "0") or "0"
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"FASTRL_LOGITS_BUDGET_MB must be a number of MiB, got {raw!r}") from None
    return int(max(mb, 0.0) * (1 << 20))


def fits(m: int, n: int, dtype: torch.dtype, budget: int | None = None) -> bool:
    """True when the fp32 logits (plus a half-precision copy of P) fit the budget."""
    budget = logits_budget_bytes() if budget is None else budget
    per = 4 + (2 if dtype in (torch.float16, torch.bfloat16) else 0)
    return budget > 0 and m * n * per <= budget


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b accumulated and returned in fp32 (fp64 stays fp64)."""
    if a.dtype in (torch.float32, torch.float64):
        return a @ b
    if a.is_cuda:
        try:
            return torch.mm(a, b, out_dtype=torch.float32)
        except (TypeError, RuntimeError) as exc:
            from fastrl._dispatch import warn_fallback
            warn_fallback("contrastive.stored_mm_out_dtype",
                          f"fastrl: torch.mm(..., out_dtype=float32) failed for {a.dtype} on {a.device} "
                          f"({type(exc).__name__}: {exc}); the stored-logits path upcasts both operands to "
                          "float32 instead (an fp32 GEMM: slower, more memory)")
    return a.float() @ b.float()


def _p_product(p: torch.Tensor, x: torch.Tensor, gmax: torch.Tensor) -> torch.Tensor:
    """p @ x in fp32 for an fp32 P; half-precision x takes P scaled into its range."""
    if x.dtype in (torch.float32, torch.float64):
        return p @ x
    mul = torch.where(gmax > 0, _P_SCALE / gmax, torch.ones_like(gmax))
    return _mm((p * mul).to(x.dtype), x).div_(mul)


class StoredLSE(torch.autograd.Function):
    """Same contract as :class:`.triton_kernels.TritonLSE`, keeping ``S`` [M, N] fp32."""

    @staticmethod
    def forward(ctx, q, k, scale, mask_offset, want_col, symmetric, precision=None):
        s = _mm(q, k.T).mul_(scale.to(torch.float64 if q.dtype == torch.float64 else torch.float32))
        if mask_offset is not None:
            s.diagonal(offset=int(mask_offset)).fill_(float("-inf"))
        rlse = torch.logsumexp(s, dim=1)
        clse = torch.logsumexp(s, dim=0) if want_col else rlse.new_empty(0)
        ctx.save_for_backward(q, k, scale, rlse, clse)
        ctx.s = s
        ctx.cfg = (mask_offset, want_col, symmetric)
        return rlse, clse

    @staticmethod
    def backward(ctx, grad_rlse, grad_clse):
        q, k, scale, rlse, clse = ctx.saved_tensors
        mask_offset, want_col, symmetric = ctx.cfg
        p, ctx.s = ctx.s, None
        if p is None:  # a second backward: rebuild S (the first one consumed it)
            p = _mm(q, k.T).mul_(scale.to(rlse.dtype))
            if mask_offset is not None:
                p.diagonal(offset=int(mask_offset)).fill_(float("-inf"))
        gr = grad_rlse if grad_rlse is not None else torch.zeros_like(rlse)
        if symmetric:
            lc, gc = rlse, gr
        elif want_col:
            lc, gc = clse, (grad_clse if grad_clse is not None else torch.zeros_like(clse))
        else:
            lc = gc = None
        # P = exp(S - lse_r) g_r + exp(S - lse_c) g_c, in place, in row chunks
        safe_r = rlse.masked_fill(torch.isinf(rlse), 0.0)
        safe_c = lc.masked_fill(torch.isinf(lc), 0.0) if lc is not None else None
        step = max(1, (1 << 22) // max(p.shape[1], 1))
        for r0 in range(0, p.shape[0], step):
            blk = p[r0:r0 + step]
            extra = torch.exp(blk - safe_c).mul_(gc) if lc is not None else None
            blk.sub_(safe_r[r0:r0 + step, None]).exp_().mul_(gr[r0:r0 + step, None])
            if extra is not None:
                blk.add_(extra)
        gmax = gr.abs().amax() if gr.numel() else gr.new_zeros(())
        if gc is not None and gc.numel():
            gmax = torch.maximum(gmax, gc.abs().amax())
        dq = _p_product(p, k, gmax)
        dk = _p_product(p.T, q, gmax) if ctx.needs_input_grad[1] and not symmetric else None
        sc = float(scale)
        dscale = None
        if ctx.needs_input_grad[2]:
            total = torch.dot(q.to(dq.dtype).reshape(-1), dq.reshape(-1))
            dscale = (0.5 * total if symmetric else total).to(scale.dtype).reshape(scale.shape)
        dq = dq.mul_(sc).to(q.dtype)
        dk = dk.mul_(sc).to(k.dtype) if dk is not None else None
        return dq, dk, dscale, None, None, None, None
