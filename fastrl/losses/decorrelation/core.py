"""Autograd wrappers shared by both paths.

The decorrelation losses reduce to one core quantity of two standardised views
A, B [N, D] (for VICReg, B = A = the centred view)::

    C = scale * A^T B                                   (D x D, never stored)
    parts = [w_off * sum_{i != j} C_ij^2,  w_diag * sum_i f(C_ii)]

with f(c) = (1 - c)^2 (Barlow Twins invariance) or relu(1 - sqrt(c + eps))
(VICReg variance hinge: C_ii is the unbiased variance). Either form computes it:

* cross: tiles of C with the epilogue reduced in place (cost D^2 N);
* gram:  ||C||_F^2 = scale^2 <A A^T, B B^T>_F, diag(C) = scale * sum_n A*B (cost N^2 D).

``pick_form`` takes the cheaper one (gram when N < D).

The losses call these through the registered ops of :mod:`.ops` (``fastrl::decorr_fwd`` /
``fastrl::decorr_bwd``), which run the ``forward`` / ``backward`` below unchanged.
"""
from __future__ import annotations

import torch

KINDS = ("barlow", "hinge")


def diag_value(c: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """f(C_ii) elementwise."""
    if kind == "barlow":
        return (1.0 - c) ** 2
    return torch.relu(1.0 - torch.sqrt(c + eps))


def diag_grad(c: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """f'(C_ii) elementwise (relu'(0) = 0 as in torch)."""
    if kind == "barlow":
        return -2.0 * (1.0 - c)
    s = torch.sqrt(c + eps)
    return torch.where(s < 1.0, -0.5 / s, torch.zeros_like(s))


def pick_form(n: int, d: int, form: str = "auto") -> str:
    """'gram' (N x N, cost N^2 D) when N < D, else 'cross' (D x D tiles, cost D^2 N)."""
    if form != "auto":
        return form
    return "gram" if n < d else "cross"


class Standardize(torch.autograd.Function):
    """Per-column standardisation of z [N, D] (computed in >= fp32).

    mode "bn": (z - mean) / sqrt(var_biased + eps)  (BatchNorm1d, no affine);
    mode "center": z - mean. Backward (bn): dz = rstd * (g - mean(g) - A * mean(g * A)).
    NaN/inf in z make its column statistics non-finite: checked here on D values
    instead of a separate full pass over z.
    """

    @staticmethod
    def forward(ctx, z, mode, eps, impl, name):
        zf = z if z.dtype == torch.float64 else z.float()
        mean, m2 = impl.column_stats(zf)
        if not bool(torch.isfinite(mean.sum() + m2.sum())):
            raise ValueError(f"{name} contains NaN or inf (or values too large for float32 statistics)")
        out = zf - mean
        ctx.mode = mode
        ctx.in_dtype = z.dtype
        if mode == "bn":
            rstd = torch.rsqrt(m2 / z.shape[0] + eps)
            out.mul_(rstd)
            ctx.save_for_backward(out, rstd)
        return out

    @staticmethod
    def backward(ctx, g):
        # g comes only from DecorrCore's backward (the standardised view is internal),
        # so it is updated in place: one N x D temporary at most
        if ctx.mode == "bn":
            out, rstd = ctx.saved_tensors
            t = torch.mul(g, out)
            torch.mul(out, t.mean(dim=0), out=t)
            g.sub_(g.mean(dim=0)).sub_(t).mul_(rstd)
        else:
            g.sub_(g.mean(dim=0))
        return g.to(ctx.in_dtype), None, None, None, None


class DecorrCore(torch.autograd.Function):
    """parts = [off-diagonal sum, diagonal sum] of C = scale * A^T B (see module doc).

    Forward keeps A, B and diag(C) (gram form, plus the N x N Grams on the Triton
    path) or, on the CPU path, C itself when it fits in one block; otherwise the
    backward recomputes the Gram or C tiles.
    ``B=None`` is the symmetric case B = A.
    """

    @staticmethod
    def forward(ctx, A, B, scale, w_off, kind, w_diag, eps, form, impl):
        # autocast off: C, the Grams and the saved statistics keep the inputs' dtype,
        # so a backward never mixes a bf16 C with fp32 standardised views
        with torch.autocast(device_type=A.device.type, enabled=False):
            return DecorrCore._forward(ctx, A, B, scale, w_off, kind, w_diag, eps, form, impl)

    @staticmethod
    def _forward(ctx, A, B, scale, w_off, kind, w_diag, eps, form, impl):
        ctx.cfg = (scale, w_off, kind, w_diag, eps, form, impl)
        if form == "gram":
            Bx = A if B is None else B
            diag = (A * Bx).sum(dim=0).mul_(scale)
            # kept: the two N x N Grams when the impl keeps them (cuBLAS on the Triton path)
            fro, ctx.kept = impl.gram_fro(A, B)
            off = (fro * (scale * scale) - torch.dot(diag, diag)) * w_off
            parts = torch.stack([off, diag_value(diag, kind, eps).sum() * w_diag])
            ctx.save_for_backward(A, B, diag)
        else:
            # kept: the whole C when it fits the CPU path's one-block budget (used once
            # by the first backward, which overwrites it; a second backward recomputes)
            parts, ctx.kept = impl.cross_parts(A, B, scale, w_off, kind, w_diag, eps)
            ctx.save_for_backward(A, B)
        return parts

    @staticmethod
    def backward(ctx, grad):
        with torch.autocast(device_type=grad.device.type, enabled=False):
            return DecorrCore._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad):
        scale, w_off, kind, w_diag, eps, form, impl = ctx.cfg
        grad = grad.to(torch.float64 if ctx.saved_tensors[0].dtype == torch.float64 else torch.float32)
        if form == "gram":
            A, B, diag = ctx.saved_tensors
            # G = 2 w_off g0 C + diag(h): dA = scale * (2 w_off g0 scale (B B^T) A + B * h)
            h = diag_grad(diag, kind, eps) * (w_diag * grad[1]) - (2.0 * w_off) * grad[0] * diag
            coef = (2.0 * w_off * scale) * grad[0]
            P, Q = impl.gram_apply(A, B, ctx.kept)  # kept Grams stay: a second backward reuses them
            Bx = A if B is None else B
            gA = P.mul_(coef).addcmul_(Bx, h).mul_(scale)
            if B is None:
                return gA.mul_(2.0), None, None, None, None, None, None, None, None
            gB = Q.mul_(coef).addcmul_(A, h).mul_(scale)
        else:
            A, B = ctx.saved_tensors
            kept, ctx.kept = ctx.kept, None
            gA, gB = impl.cross_grads(A, B, scale, w_off, kind, w_diag, eps, grad, kept)
        return gA, gB, None, None, None, None, None, None, None
