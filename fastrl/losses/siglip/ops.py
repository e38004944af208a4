"""The SigLIP sum as registered custom ops (one node under torch.compile).

``fastrl::siglip_fwd`` / ``fastrl::siglip_bwd`` run :class:`.functional.SigLipSum`'s
``forward`` and ``backward`` through :class:`fastrl.losses._compile.OpCtx`. The
gradients that the chunked CPU path computes in the forward (``fuse_grad``) travel
to the backward as extra outputs (0-element tensors when not computed).
"""
from __future__ import annotations

from typing import Optional

import torch

from fastrl.losses._compile import OpCtx, empty, present


def _cdt(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _fused(x: torch.Tensor, fuse_grad: bool) -> bool:
    from .functional import _impl
    return fuse_grad and not _impl(x).__name__.endswith("triton_kernels")


@torch.library.custom_op("fastrl::siglip_fwd", mutates_args=())
def siglip_fwd(x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, pos_offset: Optional[int],
               fuse_grad: bool, need_dy: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total 0-d, and the fused gradients gy [M, D], gx [N, D], gsum 0-d, or [0] each)."""
    from .functional import SigLipSum
    ctx = OpCtx(needs_input_grad=(True, need_dy, True, True, False, False))
    total = SigLipSum.forward(ctx, x, y, scale, bias, pos_offset, fuse_grad)
    if ctx.grads is None:
        return total, empty(total), empty(total), empty(total)
    gy, gx, gsum = ctx.grads
    # gy is a column slice of the [M, D + 1] product: returned contiguous, as the fake says
    return total, gy.contiguous(), (gx if gx is not None else empty(total)), gsum


@siglip_fwd.register_fake
def _(x, y, scale, bias, pos_offset, fuse_grad, need_dy):
    cdt = _cdt(x)
    total = x.new_empty((), dtype=cdt)
    if not _fused(x, fuse_grad):
        return total, x.new_empty(0, dtype=cdt), x.new_empty(0, dtype=cdt), x.new_empty(0, dtype=cdt)
    return (total, x.new_empty(x.shape, dtype=cdt), x.new_empty(y.shape if need_dy else (0,), dtype=cdt),
            x.new_empty((), dtype=cdt))


@torch.library.custom_op("fastrl::siglip_bwd", mutates_args=())
def siglip_bwd(x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, grad_total: torch.Tensor,
               gy: torch.Tensor, gx: torch.Tensor, gsum: torch.Tensor, pos_offset: Optional[int],
               needs: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dy, dscale, dbias), each [0] when not needed (``needs``, one flag per input)."""
    from .functional import SigLipSum, _impl
    impl = _impl(x)
    triton = impl.__name__.endswith("triton_kernels")
    fused = present(gy) is not None
    ctx = OpCtx(needs_input_grad=tuple(needs) + (False, False), saved_tensors=(x, y, scale, bias),
                pos_offset=pos_offset, impl=impl, cdt=_cdt(x), triton=triton,
                grads=(gy, present(gx), gsum) if fused else None)
    grads = SigLipSum.backward(ctx, grad_total)[:4]
    return tuple(g if g is not None else empty(grad_total) for g in grads)


@siglip_bwd.register_fake
def _(x, y, scale, bias, grad_total, gy, gx, gsum, pos_offset, needs):
    return tuple(torch.empty_like(t) if need else x.new_empty(0) for t, need in zip((x, y, scale, bias), needs))


def _setup(ctx, inputs, output):
    x, y, scale, bias, pos_offset, _fuse, _need_dy = inputs
    ctx.save_for_backward(x, y, scale, bias)
    ctx.pos_offset = pos_offset
    ctx.grads = output[1:]  # consumed by the first backward (a second one recomputes)


def _backward(ctx, grad_total, *_unused):
    x, y, scale, bias = ctx.saved_tensors
    gy, gx, gsum = ctx.grads
    ctx.grads = (empty(gy),) * 3
    needs = [bool(n) for n in ctx.needs_input_grad[:4]]
    grads = siglip_bwd(x, y, scale, bias, grad_total, gy, gx, gsum, ctx.pos_offset, needs)
    return tuple(present(g) if n else None for g, n in zip(grads, needs)) + (None, None, None)


siglip_fwd.register_autograd(_backward, setup_context=_setup)


def siglip_sum(x, y, scale, bias, pos_offset, fuse_grad: bool):
    """The 0-d sum of ``softplus(-z (s x y^T + b))`` over all pairs (see :class:`.functional.SigLipSum`)."""
    return siglip_fwd(x, y, scale, bias, pos_offset, bool(fuse_grad), bool(y.requires_grad))[0]
