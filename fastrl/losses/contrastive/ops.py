"""The contrastive LSE core as registered custom ops (one node under torch.compile).

``fastrl::lse_fwd`` / ``fastrl::lse_bwd`` run the forward and the recompute
backward of :class:`.cpu.ChunkedLSE` (``path="cpu"``), :class:`.triton_kernels.TritonLSE`
(``"triton"``) or :class:`.stored.StoredLSE` (``"stored"``) through
:class:`fastrl.losses._compile.OpCtx`, so eager and compiled calls run the same code.
The path is chosen by the caller (:func:`.functional.lse_core`, traced by dynamo
with guards on the backend settings). The stored path's logits travel from the
forward to the backward as a third output, consumed (overwritten) by the first backward.
"""
from __future__ import annotations

from typing import Optional

import torch

from fastrl.losses._compile import OpCtx, empty, present

PATHS = ("cpu", "triton", "stored")


def _function(path: str):
    if path == "cpu":
        from .cpu import ChunkedLSE
        return ChunkedLSE
    if path == "stored":
        from .stored import StoredLSE
        return StoredLSE
    from .triton_kernels import TritonLSE
    return TritonLSE


def _args(path, mask_offset, want_col, symmetric, precision):
    extra = () if path == "cpu" else (precision,)
    return (mask_offset, want_col, symmetric) + extra


@torch.library.custom_op("fastrl::lse_fwd", mutates_args=())
def lse_fwd(q: torch.Tensor, k: torch.Tensor, scale: torch.Tensor, mask_offset: Optional[int], want_col: bool,
            symmetric: bool, precision: str, path: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row LSE [M], column LSE [N] or [0], stored logits [M, N] or [0])."""
    ctx = OpCtx()
    rlse, clse = _function(path).forward(ctx, q, k, scale, *_args(path, mask_offset, want_col, symmetric, precision))
    s = getattr(ctx, "s", None)
    return rlse, clse, (s if s is not None else empty(rlse))


@lse_fwd.register_fake
def _(q, k, scale, mask_offset, want_col, symmetric, precision, path):
    cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
    m, n = q.shape[0], k.shape[0]
    return (q.new_empty(m, dtype=cdt), q.new_empty(n if want_col else 0, dtype=cdt),
            q.new_empty((m, n) if path == "stored" else (0,), dtype=cdt))


@torch.library.custom_op("fastrl::lse_bwd", mutates_args=("s",))
def lse_bwd(q: torch.Tensor, k: torch.Tensor, scale: torch.Tensor, rlse: torch.Tensor, clse: torch.Tensor,
            s: torch.Tensor, grad_rlse: torch.Tensor, grad_clse: torch.Tensor, mask_offset: Optional[int],
            want_col: bool, symmetric: bool, precision: str, path: str, need_dk: bool, need_dscale: bool
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk or [0], dscale or [0]); ``s`` (stored path) is overwritten by P."""
    ctx = OpCtx(needs_input_grad=(True, need_dk, need_dscale), saved_tensors=(q, k, scale, rlse, clse),
                mask_offset=mask_offset, want_col=want_col, symmetric=symmetric, precision=precision,
                cfg=(mask_offset, want_col, symmetric), s=present(s))
    if path == "triton":
        from .triton_kernels import _override
        ctx.tiles = _override()
    dq, dk, dscale = _function(path).backward(ctx, grad_rlse, grad_clse if want_col else None)[:3]
    return dq, (dk if dk is not None else empty(dq)), (dscale if dscale is not None else empty(dq))


@lse_bwd.register_fake
def _(q, k, scale, rlse, clse, s, grad_rlse, grad_clse, mask_offset, want_col, symmetric, precision, path,
      need_dk, need_dscale):
    return (torch.empty_like(q), torch.empty_like(k) if need_dk else q.new_empty(0),
            torch.empty_like(scale) if need_dscale else q.new_empty(0))


def _setup(ctx, inputs, output):
    q, k, scale, mask_offset, want_col, symmetric, precision, path = inputs
    ctx.save_for_backward(q, k, scale, output[0], output[1])
    ctx.cfg = (mask_offset, want_col, symmetric, precision, path)
    ctx.s = output[2]  # not a saved tensor: the first backward overwrites it in place
    if path == "triton":  # the backward may run on autograd's device thread: carry this thread's tile_config
        from .triton_kernels import _override
        ctx.tiles = _override()


def _backward(ctx, grad_rlse, grad_clse, _grad_s):
    q, k, scale, rlse, clse = ctx.saved_tensors
    mask_offset, want_col, symmetric, precision, path = ctx.cfg
    s, ctx.s = ctx.s, empty(rlse)  # a second backward rebuilds the logits
    need_dk = bool(ctx.needs_input_grad[1]) and not symmetric
    need_dscale = bool(ctx.needs_input_grad[2])
    args = (q, k, scale, rlse, clse, s, grad_rlse, grad_clse, mask_offset, want_col, symmetric, precision, path,
            need_dk, need_dscale)
    if path == "triton":
        from .triton_kernels import tile_config
        with tile_config(ctx.tiles.get("cfg"), ctx.tiles.get("groups")):
            dq, dk, dscale = lse_bwd(*args)
    else:
        dq, dk, dscale = lse_bwd(*args)
    return dq, present(dk) if need_dk else None, present(dscale) if need_dscale else None, None, None, None, None, None


lse_fwd.register_autograd(_backward, setup_context=_setup)


def lse(q, k, scale, mask_offset, want_col: bool, symmetric: bool, precision: str, path: str):
    """(row LSE, column LSE or [0]) of ``scale * q k^T`` on ``path`` (see :func:`.functional.lse_core`)."""
    rlse, clse, _ = lse_fwd(q, k, scale, mask_offset, bool(want_col), bool(symmetric), precision, path)
    return rlse, clse
