"""Chunked torch path of the SigLIP core (runs on any device).

For ``L = s X Y^T + b`` (X [M, D], Y [N, D]) and labels ``z_ij = +1`` on the
positives ``j == i + pos_offset`` and -1 elsewhere, the core returns the
row sums ``r_i = sum_j softplus(-z_ij L_ij)`` (= ``-sum_j log sigmoid(z L)``),
one block of rows at a time, so no M x N matrix is ever held; the backward
recomputes each block. With upstream gradients ``g`` of ``r``::

    G_ij = -z_ij sigmoid(-z_ij L_ij) g_i
    dX = s G Y        dY = s G^T X        ds = sum_i x_i.(G Y)_i      db = sum G
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastrl.losses.contrastive.cpu import _rows_per_chunk

# elements of one [rows, N] fp32 block (32 MiB: large blocks keep the BLAS calls efficient);
# the loops hold at most two such blocks at a time.
CHUNK_ELEMENTS = 1 << 23


def _flip_positives(t, r0: int, r1: int, n_cols: int, pos_offset) -> None:
    """Negate the entries ``j == i + pos_offset`` of the row block r0:r1 (in place)."""
    if pos_offset is None:
        return
    rows = torch.arange(r0, r1, device=t.device)
    cols = rows + pos_offset
    ok = (cols >= 0) & (cols < n_cols)
    r, c = (rows - r0)[ok], cols[ok]
    t[r, c] = -t[r, c]


def _margins(xs, y, r0, r1, bias: torch.Tensor, pos_offset):
    """``t = -z * L`` for rows r0:r1 of ``L = xs y^T + b`` (``xs`` = s x, already
    scaled: one pass over the block for the bias; softplus(t) is each pair's loss)."""
    t = torch.addmm(bias, xs[r0:r1], y.T)
    _flip_positives(t, r0, r1, y.shape[0], pos_offset)
    return t


def siglip_forward(x, y, scale: float, bias: float, pos_offset):
    """Row sums [M] of ``softplus(-z L)`` in the compute dtype of x."""
    m = x.shape[0]
    out = torch.empty(m, dtype=x.dtype, device=x.device)
    xs, b = x * scale, x.new_full((), bias)
    step = _rows_per_chunk(m, y.shape[0], CHUNK_ELEMENTS)
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        t = _margins(xs, y, r0, r1, b, pos_offset)
        torch.sum(F.softplus(t, threshold=30.0), dim=1, out=out[r0:r1])
        del t
    return out


def siglip_backward(x, y, scale: float, bias: float, pos_offset, g, need_dy: bool, *, want_loss: bool = False):
    """Unscaled ``G Y`` [M, D], ``G^T X`` [N, D] (or None) and ``sum G`` (0-d) for
    the upstream gradients ``g`` [M] of the row sums; with ``want_loss`` also the
    total loss ``sum_i g_i r_i`` (0-d) from the same logit blocks (the fused
    forward + backward of a scalar loss: one logit matmul per block instead of two)."""
    m, d = x.shape
    # a ones column on Y: the matmul G [Y, 1] also yields the row sums of G (bias gradient)
    y1 = torch.cat([y, y.new_ones(y.shape[0], 1)], dim=1)
    gy1 = torch.empty(m, d + 1, dtype=x.dtype, device=x.device)
    gx = torch.zeros_like(y) if need_dy else None
    xs, b = x * scale, x.new_full((), bias)
    uniform = bool(g.numel()) and bool((g == g[0]).all())  # the usual upstream of .sum()/.mean()
    total = x.new_zeros(())
    step = _rows_per_chunk(m, y.shape[0], CHUNK_ELEMENTS)
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        t = _margins(xs, y, r0, r1, b, pos_offset)
        if want_loss:
            rows = F.softplus(t, threshold=30.0).sum(dim=1)
            total += rows.sum() if uniform else torch.dot(rows, g[r0:r1])
        # dsoftplus(t)/dL = sigmoid(t) * dt/dL = sigmoid(t) * (-z)
        p = t.sigmoid_()
        _flip_positives(p, r0, r1, y.shape[0], pos_offset)
        if not uniform:
            p.mul_(g[r0:r1, None])
        torch.mm(p, y1, out=gy1[r0:r1])
        if gx is not None:
            gx.addmm_(p.T, x[r0:r1])
        del t, p
    if uniform:
        gy1.mul_(g[0])
        if gx is not None:
            gx.mul_(g[0])
        total *= g[0]
    out = (gy1[:, :d], gx, gy1[:, d].sum())
    return out + (total,) if want_loss else out
