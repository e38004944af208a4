"""The MAE cores as registered custom ops (one opaque node each under torch.compile).

Dynamo cannot trace the Numba kernels (nor the host-side launch code of the Triton
ones), so every core that calls a kernel is a :func:`torch.library.custom_op` with a
fake kernel for its shapes; the differentiable ones register their backward, which is
the ``backward`` of the existing autograd.Function (plain torch, traced by AOTAutograd).
Eager and compiled calls run the same code: the ops' implementations call the
autograd.Functions' ``forward`` through :class:`fastrl.losses._compile.OpCtx`.

* ``fastrl::mae_rand_`` - fills a [B, L] buffer with torch's global uniform stream
  (``torch.rand``'s numbers), so masks drawn inside a compiled step equal eager ones;
  it mutates its argument, so two draws in one graph are never merged.
* ``fastrl::mae_shuffle`` - MAE's argsort of noise: (ids_keep, mask, ids_restore);
  NaN/inf noise raises ``ValueError`` when the op runs.
* ``fastrl::mae_gather_patches`` / ``fastrl::mae_gather_rows`` - the fused gathers of
  :func:`.patchify_and_mask` / :func:`.random_masking` (backward: scatter back).
* ``fastrl::mae_loss_fwd`` - the fused loss and its gradient (backward: one scale);
  the ``mask`` value checks run inside it.
"""
from __future__ import annotations

import torch

from fastrl.losses._compile import OpCtx, present

@torch.library.custom_op("fastrl::mae_rand_", mutates_args=("out",), tags=(torch.Tag.nondeterministic_seeded,))
def rand_(out: torch.Tensor) -> None:
    """Fill ``out`` with uniform [0, 1) numbers from torch's global generator (as ``torch.rand``)."""
    out.uniform_()


@rand_.register_fake
def _(out):
    return None


def uniform(B: int, L: int, device) -> torch.Tensor:
    """[B, L] float32 noise: the numbers ``torch.rand(B, L, device=device)`` draws, one op under compile."""
    out = torch.empty((B, L), device=device, dtype=torch.float32)
    rand_(out)
    return out


@torch.library.custom_op("fastrl::mae_shuffle", mutates_args=())
def shuffle(noise: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids_keep [B, keep] int64, mask [B, L] float32, ids_restore [B, L] int64) of ``noise`` [B, L]."""
    from fastrl.masking.mae import _shuffle_impl
    return _shuffle_impl(noise, keep)


@shuffle.register_fake
def _(noise, keep):
    B, L = noise.shape
    i64 = torch.int64
    return (noise.new_empty((B, keep), dtype=i64), noise.new_empty((B, L), dtype=torch.float32),
            noise.new_empty((B, L), dtype=i64))


@torch.library.custom_op("fastrl::mae_gather_patches", mutates_args=())
def gather_patches(imgs: torch.Tensor, ids: torch.Tensor, p: int, fused: str) -> torch.Tensor:
    """[B, K, p*p*C] patches ``ids`` [B, K] of ``imgs`` [B, C, H, W] (``fused``: "triton" or "numba")."""
    from fastrl.masking.mae import _GatherPatches
    return _GatherPatches.forward(OpCtx(), imgs, ids, p, fused)


@gather_patches.register_fake
def _(imgs, ids, p, fused):
    return imgs.new_empty((ids.shape[0], ids.shape[1], p * p * imgs.shape[1]))


def _gather_setup(ctx, inputs, output):
    imgs, ids, p = inputs[:3]
    ctx.save_for_backward(ids)
    ctx.shape, ctx.p = imgs.shape, p


def _gather_patches_backward(ctx, grad_out):
    from fastrl.masking.mae import _GatherPatches
    return _GatherPatches.backward(ctx, grad_out)


gather_patches.register_autograd(_gather_patches_backward, setup_context=_gather_setup)


@torch.library.custom_op("fastrl::mae_gather_rows", mutates_args=())
def gather_rows(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """[B, K, D] rows ``x[b, ids[b, k]]`` of ``x`` [B, L, D] by the Triton gather."""
    from fastrl.masking.mae import _GatherRows
    return _GatherRows.forward(OpCtx(), x, ids)


@gather_rows.register_fake
def _(x, ids):
    return x.new_empty((x.shape[0], ids.shape[1], x.shape[2]))


def _rows_setup(ctx, inputs, output):
    x, ids = inputs
    ctx.save_for_backward(ids)
    ctx.shape = x.shape


def _gather_rows_backward(ctx, grad_out):
    from fastrl.masking.mae import _GatherRows
    return _GatherRows.backward(ctx, grad_out)


gather_rows.register_autograd(_gather_rows_backward, setup_context=_rows_setup)


@torch.library.custom_op("fastrl::mae_loss_fwd", mutates_args=())
def mae_loss_fwd(pred: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor, p: int, norm: bool, need_grad: bool,
                 path: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss [], d loss / d pred * sum(mask) [B, L, D] or [0], sum(mask) []) on ``path``."""
    from fastrl.masking.loss import _MAELoss
    ctx = OpCtx(needs_input_grad=(need_grad,))
    loss = _MAELoss.forward(ctx, pred, imgs, mask, p, norm, path)
    grad, wsum = ctx.saved_tensors
    return loss, (grad.contiguous() if grad is not None else pred.new_empty(0)), wsum


@mae_loss_fwd.register_fake
def _(pred, imgs, mask, p, norm, need_grad, path):
    out_dtype = torch.promote_types(pred.dtype, imgs.dtype)
    return (pred.new_empty((), dtype=out_dtype), pred.new_empty(pred.shape) if need_grad else pred.new_empty(0),
            pred.new_empty((), dtype=torch.float64 if path == "cpu" else torch.float32))


def _loss_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1], output[2])
    # the gradient and sum(mask) are outputs only to reach the backward: without these two calls
    # autograd would hand it a [B, L, D] tensor of zeros as their gradient
    ctx.mark_non_differentiable(output[1], output[2])
    ctx.set_materialize_grads(False)


def _loss_backward(ctx, grad_loss, _grad_grad, _grad_wsum):
    from fastrl.masking.loss import _MAELoss
    grad, wsum = ctx.saved_tensors
    if grad_loss is None:
        return None, None, None, None, None, None, None
    dpred = _MAELoss.backward(OpCtx(saved_tensors=(present(grad), wsum)), grad_loss)[0]
    return dpred, None, None, None, None, None, None


mae_loss_fwd.register_autograd(_loss_backward, setup_context=_loss_setup)


def mae_loss(pred, imgs, mask, p: int, norm: bool, path: str) -> torch.Tensor:
    """Scalar MAE loss of :func:`fastrl.masking.mae_loss` on ``path`` ("cpu", "triton" or "torch")."""
    need_grad = pred.requires_grad and torch.is_grad_enabled()
    return mae_loss_fwd(pred, imgs, mask, p, bool(norm), bool(need_grad), path)[0]

