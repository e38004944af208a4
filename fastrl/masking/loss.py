"""Fused MAE reconstruction loss (forward + backward in one pass).

``mae_loss`` = mean over removed patches of the per-patch MSE between ``pred``
and the patchified image, optionally with per-patch normalised targets
(mean, unbiased variance, ``(var + 1e-6) ** 0.5``), as MAE's ``forward_loss``.
The kernels read each removed patch straight from the image, normalise it in
registers and write the gradient of ``pred`` in the same pass; neither the
patchified nor the normalised targets exist as tensors.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fastrl._dispatch import use_triton
from fastrl._validation import check_real, check_tensor
from fastrl.masking import ops
from fastrl.masking.mae import check_images

_NUMBA_DTYPES = (torch.float32, torch.float64)


def _check(pred, imgs, mask, patch_size, norm_pix_loss):
    B, C, h, w, p = check_images(imgs, patch_size)
    check_tensor(check_real(pred, "pred"), "pred", ndim=3, finite=False)
    L, D = h * w, p * p * C
    if tuple(pred.shape) != (B, L, D):
        raise ValueError(f"pred must have shape (B, L, p*p*C) = {(B, L, D)} for imgs of shape "
                         f"{tuple(imgs.shape)} and patch_size {p}, got {tuple(pred.shape)}")
    check_tensor(check_real(mask, "mask"), "mask", ndim=2, dtypes=None, finite=False)
    if tuple(mask.shape) != (B, L):
        raise ValueError(f"mask must have shape (B, L) = {(B, L)}, got {tuple(mask.shape)}")
    # (the mask's values are checked by the loss op, fastrl::mae_loss_fwd: no host sync here)
    if pred.device != imgs.device or mask.device != imgs.device:
        raise ValueError(f"pred, imgs and mask must be on one device, got {pred.device}, {imgs.device}, {mask.device}")
    if norm_pix_loss and D < 2:
        raise ValueError("norm_pix_loss needs at least 2 values per patch (unbiased variance)")
    return p


def _check_mask_values(mask):
    """``mask`` weights must be finite and >= 0 (on the CPU with numpy: no torch
    thread pool woken just before the Numba kernel)."""
    if mask.dtype == torch.bool:
        return
    m = mask.detach()
    if m.device.type == "cpu":
        a = (m.float() if m.dtype == torch.bfloat16 else m).numpy()
        finite, low = bool(np.isfinite(a).all()), (a.min() if a.size else 0)
    else:
        finite = not m.is_floating_point() or bool(torch.isfinite(m).all())
        low = m.min().item() if m.numel() else 0
    if not finite:
        raise ValueError("mask contains NaN or inf")
    if low < 0:
        raise ValueError(f"mask must be >= 0 (1 = removed, 0 = kept; other values weight a patch), got {low}")


def _check_finite(pred, imgs):
    """Raise, naming the argument, if pred or imgs holds a NaN/inf (the Triton and torch paths)."""
    check_tensor(pred, "pred", dtypes=None)
    check_tensor(imgs, "imgs", dtypes=None)


def _cpu_fwd(pred, imgs, weight, p, norm, need_grad):
    from fastrl.masking import _numba_kernels as nk
    x = pred.detach() if pred.dtype in _NUMBA_DTYPES else pred.detach().float()
    im = imgs.detach() if imgs.dtype in _NUMBA_DTYPES else imgs.detach().float()
    grad = torch.empty(x.shape, dtype=x.dtype) if need_grad else torch.empty((0, 0, 0), dtype=x.dtype)
    rowloss = torch.empty(pred.shape[0], dtype=torch.float64)
    if nk.run(nk.mae_loss_fwd, x.numel(), im.numpy(), x.numpy(), weight.numpy(), p, bool(norm), bool(need_grad),
              grad.numpy(), rowloss.numpy()):
        # some patch summed to NaN/inf: name the input that holds it (numpy, no
        # torch thread pool); finite inputs whose loss overflows keep the inf result
        for arr, name in ((x, "pred"), (im, "imgs")):
            if not np.isfinite(arr.numpy()).all():
                raise ValueError(f"{name} contains NaN or inf")
    return rowloss, (grad.to(pred.dtype) if need_grad else None)


def _torch_fwd(pred, imgs, weight, p, norm, need_grad, chunk=64):
    """Chunked torch fallback (CUDA without triton): the same math, a batch chunk at a time."""
    from fastrl.masking.mae import patchify
    rows, grads = [], []
    for s in range(0, pred.shape[0], chunk):
        t = patchify(imgs[s: s + chunk].detach(), p).float()
        if norm:
            t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
        diff = pred[s: s + chunk].detach().float() - t
        wc = weight[s: s + chunk]
        rows.append((diff.square().mean(-1) * wc).sum(1))
        if need_grad:
            grads.append((diff * (2.0 / diff.shape[-1]) * wc[..., None]).to(pred.dtype))
    return torch.cat(rows), (torch.cat(grads) if need_grad else None)


def loss_path(pred, imgs, mask) -> str:
    """The path of :func:`mae_loss`: "triton", "cpu" (Numba) or "torch" (chunked, CUDA without triton)."""
    if use_triton(pred, imgs, mask):
        return "triton"
    return "cpu" if pred.device.type == "cpu" else "torch"


class _MAELoss(torch.autograd.Function):
    """The fused loss on ``path`` (see :func:`loss_path`); run by the op ``fastrl::mae_loss_fwd``
    (:mod:`fastrl.masking.ops`) through ``OpCtx``. Saves (grad or None, sum(mask))."""

    @staticmethod
    def forward(ctx, pred, imgs, mask, p, norm, path):
        need_grad = ctx.needs_input_grad[0]
        _check_mask_values(mask)
        if path == "triton":
            from fastrl.masking import triton_kernels as tk
            _check_finite(pred, imgs)
            weight = mask.detach().to(torch.float32).contiguous()
            rowloss, grad = tk.mae_loss_fwd(imgs.detach(), pred.detach(), weight, p, norm, need_grad)
        elif path == "cpu":
            # numpy, not torch, for the small [B, L] conversions: torch's OpenMP
            # threads would spin against the Numba kernel that follows
            m = mask.detach()
            m = m.float() if m.dtype == torch.bfloat16 else m
            weight = torch.from_numpy(np.ascontiguousarray(m.numpy(), dtype=np.float64))
            rowloss, grad = _cpu_fwd(pred, imgs, weight, p, norm, need_grad)
        else:
            _check_finite(pred, imgs)
            weight = mask.detach().to(torch.float32)
            rowloss, grad = _torch_fwd(pred, imgs, weight, p, norm, need_grad)
        wsum = weight.sum()
        ctx.save_for_backward(grad if need_grad else None, wsum)
        out_dtype = torch.promote_types(pred.dtype, imgs.dtype)
        return (rowloss.sum() / wsum).to(out_dtype)

    @staticmethod
    def backward(ctx, grad_output):
        grad, wsum = ctx.saved_tensors
        if grad is None:
            return None, None, None, None, None, None
        # 1 / sum(mask) in float64 for float64 gradients (float32 would cost them 1e-8)
        cdt = torch.float64 if grad.dtype == torch.float64 else torch.float32
        scale = (grad_output.to(cdt) / wsum.to(cdt)).to(grad.dtype)
        return grad * scale, None, None, None, None, None


def mae_loss(pred: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor, patch_size: int = 16,
             norm_pix_loss: bool = True) -> torch.Tensor:
    """MAE reconstruction loss, fused forward and backward.

    ``loss = sum_{b,l} mask[b,l] * mean_d (pred[b,l,d] - t[b,l,d])^2 / sum(mask)``
    with ``t = patchify(imgs)``, normalised per patch when ``norm_pix_loss``
    (``(t - mean) / (var + 1e-6) ** 0.5``, unbiased ``var``), as MAE's
    ``forward_loss``. ``imgs`` is the constant target: no gradient flows to it.
    As in MAE, an all-zero ``mask`` gives NaN.

    Parameters
    ----------
    pred : torch.Tensor
        [B, L, p*p*C] decoder predictions (fp32/fp16/bf16/fp64), finite.
    imgs : torch.Tensor
        [B, C, H, W] images (fp32/fp16/bf16/fp64, finite), H and W divisible by
        ``patch_size``; L = HW/p^2.
    mask : torch.Tensor
        [B, L], 1 = removed (float, int or bool; other finite values >= 0 act as weights).
    patch_size : int
        Patch side p.
    norm_pix_loss : bool
        Normalise each target patch by its mean and standard deviation.

    Returns
    -------
    torch.Tensor
        Scalar loss (dtype of ``pred`` promoted with ``imgs``).

    Raises
    ------
    TypeError
        Complex ``pred``, ``imgs`` or ``mask``.
    ValueError
        Wrong shapes or dtypes, NaN/inf in any input, a negative ``mask``.
    """
    p = _check(pred, imgs, mask, patch_size, norm_pix_loss)
    return ops.mae_loss(pred, imgs, mask, p, bool(norm_pix_loss), loss_path(pred, imgs, mask))


class MAELoss(nn.Module):
    """Module form of :func:`mae_loss`: ``forward(pred, imgs, mask)``."""

    def __init__(self, patch_size: int = 16, norm_pix_loss: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.norm_pix_loss = norm_pix_loss

    def forward(self, pred, imgs, mask):
        return mae_loss(pred, imgs, mask, self.patch_size, self.norm_pix_loss)
