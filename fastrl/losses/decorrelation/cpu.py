"""CPU path: chunked torch ops (also runs on CUDA tensors when forced).

Two algebraic forms of the same quantities, chosen per call by the caller
(:func:`fastrl.losses.decorrelation.core.pick_form`):

* ``cross``: C = scale * A^T B computed in column blocks C[:, j0:j1]
  (D x c, c <= D), so at most one D x D-sized buffer exists at a time.
* ``gram``: ||A^T B||_F^2 = <A A^T, B B^T>_F, with the N x N Grams built in
  row blocks of at most N/2 rows (two blocks together <= one N x N buffer).

A ``B=None`` argument means the symmetric case B = A (VICReg covariance).
"""
from __future__ import annotations

import torch

from .core import diag_grad, diag_value

# Largest block of C kept alive (elements); 2**24 fp32 = 64 MiB.
_MAX_BLOCK_ELEMS = 2 ** 24


def column_stats(x: torch.Tensor):
    """Column means and sums of squared deviations (M2) of ``x`` [N, D]."""
    var, mean = torch.var_mean(x, dim=0, correction=0)
    return mean, var * x.shape[0]


def _col_block(d: int) -> int:
    return max(1, min(d, _MAX_BLOCK_ELEMS // max(d, 1)))


def _row_block(n: int) -> int:
    return max(1, (n + 1) // 2)


def _sumsq_(x: torch.Tensor) -> torch.Tensor:
    # squares in place, then torch's cascade sum: no temporary, and accurate where an
    # fp32 dot (1e-6) or vector_norm (1e-3 on some CPU builds) drift over 1e6 terms
    return x.square_().sum()


# ---------------------------------------------------------------- gram form
def gram_fro(A: torch.Tensor, B: torch.Tensor | None):
    """(<A A^T, B B^T>_F (= ||A^T B||_F^2), None) in row blocks; A, B [N, D].
    Nothing is kept: :func:`gram_apply` rebuilds the blocks."""
    n = A.shape[0]
    step = _row_block(n)
    total = A.new_zeros(())
    for r0 in range(0, n, step):
        ga = A[r0:r0 + step] @ A.T
        total = total + (_sumsq_(ga) if B is None else ga.mul_(B[r0:r0 + step] @ B.T).sum())
    return total, None


def gram_apply(A: torch.Tensor, B: torch.Tensor | None, kept=None):
    """P = (B B^T) A and Q = (A A^T) B in row blocks (Q is None when B is None);
    ``kept`` is always None here."""
    n = A.shape[0]
    step = _row_block(n)
    Bx = A if B is None else B
    P = torch.empty_like(A)
    Q = None if B is None else torch.empty_like(B)
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        torch.mm(Bx[r0:r1] @ Bx.T, A, out=P[r0:r1])
        if Q is not None:
            torch.mm(A[r0:r1] @ A.T, B, out=Q[r0:r1])
    return P, Q


# --------------------------------------------------------------- cross form
def _cross_blocks(A, B, scale, kept=None):
    """Yield (j0, j1, C[:, j0:j1]) with C = scale * A^T B, block by block
    (or the kept whole C from the forward pass)."""
    d = A.shape[1]
    if kept is not None:
        yield 0, d, kept
        return
    step = _col_block(d)
    Bx = A if B is None else B
    for j0 in range(0, d, step):
        j1 = min(d, j0 + step)
        cj = A.T @ Bx[:, j0:j1]
        cj.mul_(scale)
        yield j0, j1, cj


def _sumsq(x: torch.Tensor) -> torch.Tensor:
    # non-destructive, in row chunks (small temporaries), cascade-summed
    step = max(1, _MAX_BLOCK_ELEMS // 16 // max(x.shape[1], 1))
    return sum(x[r:r + step].square().sum() for r in range(0, x.shape[0], step))


def cross_parts(A, B, scale, w_off, kind, w_diag, eps):
    """[w_off * sum_{i!=j} C_ij^2, w_diag * sum_i f(C_ii)] with C = scale * A^T B.

    Returns (parts, kept): when the whole C fits in one block (<= 64 MiB) it is
    kept for the backward pass (the one D x D buffer), else kept is None and the
    backward recomputes the blocks.
    """
    off = A.new_zeros(())
    dg = A.new_zeros(())
    kept = None
    for j0, j1, cj in _cross_blocks(A, B, scale):
        diag = cj.diagonal(offset=-j0)
        dvals = diag.clone()
        diag.zero_()  # exact off-diagonal sum, no cancellation against the diagonal
        dg = dg + diag_value(dvals, kind, eps).sum()
        if j0 == 0 and j1 == A.shape[1]:
            off = off + _sumsq(cj)
            diag.copy_(dvals)
            kept = cj
        else:
            off = off + _sumsq_(cj)
    return torch.stack([off * w_off, dg * w_diag]), kept


def cross_grads(A, B, scale, w_off, kind, w_diag, eps, grad, kept=None):
    """Gradients of ``grad . cross_parts(...)`` w.r.t. A and B (C recomputed unless kept;
    a kept C is overwritten by G).

    G = dL/dC: 2 w_off g_off C_ij off the diagonal, w_diag g_diag f'(C_ii) on it;
    dA = scale * B G^T, dB = scale * A G. For B=None returns (dA + dB, None).
    """
    g_off, g_diag = grad[0], grad[1]
    d = A.shape[1]
    Bx = A if B is None else B
    gB = torch.empty_like(Bx)
    gA = None if B is None else torch.zeros_like(A)
    for j0, j1, cj in _cross_blocks(A, B, scale, kept):
        diag = cj.diagonal(offset=-j0)
        dvals = diag.clone()
        cj.mul_(2.0 * w_off * g_off)
        diag.copy_(diag_grad(dvals, kind, eps) * (w_diag * g_diag))
        if j1 - j0 == d:
            torch.mm(A, cj, out=gB)
            gB.mul_(scale)
        else:
            gB[:, j0:j1] = torch.mm(A, cj).mul_(scale)
        if gA is not None:
            gA.addmm_(B[:, j0:j1], cj.T, alpha=scale)
    if gA is None:  # symmetric: C and G symmetric, dA == dB
        return gB.mul_(2.0), None
    return gA, gB
