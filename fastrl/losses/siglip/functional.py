"""SigLIP (sigmoid) loss: ``-1/N sum_ij log sigmoid(z_ij (s x_i.y_j + b))``.

The pairwise logits are streamed in tiles (Triton kernel on CUDA, chunked
torch otherwise) and never stored: forward keeps the row sums, backward
recomputes the tiles. Distributed training follows open_clip's neighbour
exchange: each rank's text features travel around the ring (``bidir``: both
ways at once) and every rank adds its images against each received chunk as
negatives only.
"""
from __future__ import annotations

import torch

from fastrl import distributed as fdist
from fastrl._dispatch import use_triton_no_fp64
from fastrl._validation import check_choice
from fastrl.losses._compile import DeferredChecks
from fastrl.losses.contrastive.functional import as_scalar, check_logit_range, check_pair

DIST_IMPLS = ("bidir", "shift", "reduce", "gather")


def _impl(x: torch.Tensor):
    if use_triton_no_fp64("siglip loss", x):
        from . import triton_kernels
        return triton_kernels
    from . import cpu
    return cpu


class SigLipSum(torch.autograd.Function):
    """``loss = SigLipSum.apply(x, y, scale, bias, pos_offset, fuse_grad)``: the 0-d sum over
    all pairs of ``softplus(-z (s x y^T + b))`` (compute dtype: fp64 for fp64
    inputs, else fp32). ``scale`` and ``bias`` are 0-d tensors and receive gradients.

    The output is a scalar, so its gradient is the gradient of the sum times the
    upstream scalar. The chunked CPU path therefore computes the gradients in the
    forward pass when any input needs them (one logit matmul per block, not two;
    O(N D) stored), and the backward only scales them. The Triton path
    recomputes the tiles in its backward kernels.
    """

    @staticmethod
    def forward(ctx, x, y, scale, bias, pos_offset, fuse_grad):
        impl = _impl(x)
        triton = impl.__name__.endswith("triton_kernels")
        cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
        xs, ys = (x, y) if triton else (x.to(cdt), y.to(cdt))
        s, b = float(scale), float(bias)
        ctx.pos_offset, ctx.impl, ctx.cdt, ctx.triton = pos_offset, impl, cdt, triton
        ctx.save_for_backward(x, y, scale, bias)
        if triton or not fuse_grad:
            ctx.grads = None
            return impl.siglip_forward(xs, ys, s, b, pos_offset).sum().to(cdt)
        ones = xs.new_ones(xs.shape[0])
        gy, gx, gsum, total = impl.siglip_backward(xs, ys, s, b, pos_offset, ones, ctx.needs_input_grad[1],
                                                   want_loss=True)
        ctx.grads = (gy, gx, gsum)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        x, y, scale, bias = ctx.saved_tensors
        s = float(scale)
        if ctx.grads is not None:
            gy, gx, gsum = ctx.grads
            ctx.grads = None
            g = grad_total.to(ctx.cdt)
            gy, gx, gsum = gy * g, (gx * g if gx is not None else None), gsum * g
        else:
            g = grad_total.to(ctx.cdt).expand(x.shape[0]).contiguous()
            xs, ys = (x, y) if ctx.triton else (x.to(ctx.cdt), y.to(ctx.cdt))
            gy, gx, gsum = ctx.impl.siglip_backward(xs, ys, s, float(bias), ctx.pos_offset, g,
                                                    ctx.needs_input_grad[1])
        dscale = dbias = None
        if ctx.needs_input_grad[2]:
            dscale = torch.dot(x.to(gy.dtype).reshape(-1), gy.reshape(-1)).to(scale.dtype).reshape(scale.shape)
        if ctx.needs_input_grad[3]:
            dbias = gsum.to(bias.dtype).reshape(bias.shape)
        dx = (gy * s).to(x.dtype) if ctx.needs_input_grad[0] else None
        dy = (gx * s).to(y.dtype) if gx is not None and ctx.needs_input_grad[1] else None
        return dx, dy, dscale, dbias, None, None


def _prepare(image_features, text_features, logit_scale, logit_bias, checks=None):
    check_pair(image_features, text_features, "image_features", "text_features", checks)
    scale = as_scalar(logit_scale, "logit_scale", image_features, positive=True, checks=checks)
    bias = as_scalar(0.0 if logit_bias is None else logit_bias, "logit_bias", image_features, positive=False,
                     checks=checks)
    return scale, bias


def _total(x, y, scale, bias, pos_offset):
    # gradients in the forward pass only when a backward can follow (not under no_grad / eval)
    fuse = torch.is_grad_enabled() and any(t.requires_grad for t in (x, y, scale, bias))
    from .ops import siglip_sum  # SigLipSum as one registered op (a single node under torch.compile)
    return siglip_sum(x, y, scale, bias, pos_offset, fuse)


def siglip_loss(image_features, text_features, logit_scale, logit_bias=None, *, negative_only=False):
    """SigLIP loss of one process (open_clip ``SigLipLoss`` with ``world_size=1``).

    Parameters
    ----------
    image_features, text_features : torch.Tensor [N, D]
        Used as given (open_clip normalises in the model); fp32/fp16/bf16
        (accumulated in fp32) or fp64.
    logit_scale : float or 0-d torch.Tensor
        The multiplier s (already exponentiated), > 0; receives a gradient.
    logit_bias : float or 0-d torch.Tensor, optional
        The bias b (SigLIP initialises it at -10); receives a gradient.
    negative_only : bool
        Every pair is a negative (z = -1): the chunks of other ranks.

    Returns
    -------
    torch.Tensor, 0-d
        ``-1/N sum_ij log sigmoid(z_ij (s x_i.y_j + b))``, ``z = 2 I - 1``;
        fp32 (fp64 for fp64 inputs). Memory O(N D): the N x N logits are never stored.
    """
    checks = DeferredChecks()
    scale, bias = _prepare(image_features, text_features, logit_scale, logit_bias, checks)
    check_logit_range(scale, image_features, text_features, "logit_scale", bias=bias, checks=checks)
    total = _total(image_features, text_features, scale, bias, None if negative_only else 0)
    return checks.apply(total / image_features.shape[0])


def siglip_loss_distributed(image_features, text_features, logit_scale, logit_bias=None, *, dist_impl="bidir"):
    """One rank's SigLIP loss in a torch.distributed job (open_clip semantics).

    This rank's images against its own texts (positives on the diagonal) plus,
    as negatives only, against the texts of every other rank. ``"bidir"``
    passes the text features around the ring both ways (ceil((W-1)/2)
    exchanges), ``"shift"`` one way (W - 1 exchanges); ``"reduce"`` and
    ``"gather"`` all-gather them. All four give the same loss, and the
    gradients flow back to the rank that owns each text row, so summing the
    ranks' gradients (DDP) gives the gradient of the whole-batch loss times W.

    Parameters
    ----------
    image_features, text_features : torch.Tensor [n, D]
        This rank's rows (the same n on every rank).
    logit_scale, logit_bias : as in :func:`siglip_loss`
    dist_impl : {"bidir", "shift", "reduce", "gather"}

    Returns
    -------
    torch.Tensor, 0-d
        ``-1/n sum_{i local, j global} log sigmoid(z_ij L_ij)``.
    """
    check_choice(dist_impl, "dist_impl", DIST_IMPLS)
    scale, bias = _prepare(image_features, text_features, logit_scale, logit_bias)
    check_logit_range(scale, image_features, text_features, "logit_scale", bias=bias)
    n = image_features.shape[0]
    total = _total(image_features, text_features, scale, bias, 0)
    ws, rank = fdist.world_size(), fdist.rank()
    if ws == 1:
        return total / n
    for chunk in _other_text_chunks(text_features, ws, rank, dist_impl):
        if chunk.shape != text_features.shape:
            raise ValueError("siglip_loss_distributed needs the same text_features shape on every rank, "
                             f"got {tuple(chunk.shape)} and {tuple(text_features.shape)}")
        total = total + _total(image_features, chunk, scale, bias, None)
    return total / n


def _other_text_chunks(text, ws: int, rank: int, dist_impl: str):
    """The text features of the other ranks, with gradients back to their owners."""
    right, left = (rank + 1) % ws, (rank - 1 + ws) % ws
    if dist_impl == "bidir":
        to_left = to_right = text
        n_bidir, remainder = divmod(ws - 1, 2)
        for _ in range(n_bidir):
            from_right, from_left = fdist.neighbour_exchange_bidir(left, right, to_left, to_right)
            yield from_right
            yield from_left
            to_left, to_right = from_right, from_left
        if remainder:
            yield fdist.neighbour_exchange(left, right, to_right)
    elif dist_impl == "shift":
        to_right = text
        for _ in range(ws - 1):
            to_right = fdist.neighbour_exchange(left, right, to_right)
            yield to_right
    else:
        sizes = [text.shape[0]] * ws
        allt = fdist.gather(text)
        yield from (c for i, c in enumerate(torch.split(allt, sizes)) if i != rank)
