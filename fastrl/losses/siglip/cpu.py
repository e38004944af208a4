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

# elements of one [rows, N] fp32 block (16 MiB); forward and backward hold
# at most two such blocks at a time.
CHUNK_ELEMENTS = 1 << 22


def _rows_per_chunk(n_rows: int, n_cols: int) -> int:
    return max(16, min(n_rows, CHUNK_ELEMENTS // max(n_cols, 1)))


def _margins(x, y, r0, r1, scale: float, bias: float, pos_offset):
    """``t = -z * L`` for rows r0:r1 (softplus(t) is the loss of each pair)."""
    t = torch.mm(x[r0:r1], y.T).mul_(scale).add_(bias)
    if pos_offset is not None:
        rows = torch.arange(r0, r1, device=x.device)
        cols = rows + pos_offset
        ok = (cols >= 0) & (cols < y.shape[0])
        r, c = (rows - r0)[ok], cols[ok]
        t[r, c] = -t[r, c]
    return t


def siglip_forward(x, y, scale: float, bias: float, pos_offset):
    """Row sums [M] of ``softplus(-z L)`` in the compute dtype of x."""
    m = x.shape[0]
    out = torch.empty(m, dtype=x.dtype, device=x.device)
    step = _rows_per_chunk(m, y.shape[0])
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        t = _margins(x, y, r0, r1, scale, bias, pos_offset)
        torch.sum(F.softplus(t, threshold=30.0), dim=1, out=out[r0:r1])
        del t
    return out


def siglip_backward(x, y, scale: float, bias: float, pos_offset, g, need_dy: bool):
    """Unscaled ``G Y`` [M, D], ``G^T X`` [N, D] (or None) and ``sum G`` (0-d)."""
    m = x.shape[0]
    gy = torch.empty_like(x)
    gx = torch.zeros_like(y) if need_dy else None
    gsum = x.new_zeros(())
    step = _rows_per_chunk(m, y.shape[0])
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        t = _margins(x, y, r0, r1, scale, bias, pos_offset)
        # dsoftplus(t)/dL = sigmoid(t) * dt/dL = sigmoid(t) * (-z)
        p = t.sigmoid_().mul_(g[r0:r1, None])
        if pos_offset is not None:
            rows = torch.arange(r0, r1, device=x.device)
            cols = rows + pos_offset
            ok = (cols >= 0) & (cols < y.shape[0])
            r, c = (rows - r0)[ok], cols[ok]
            p[r, c] = -p[r, c]
        gsum += p.sum()
        torch.mm(p, y, out=gy[r0:r1])
        if gx is not None:
            gx.addmm_(p.T, x[r0:r1])
        del t, p
    return gy, gx, gsum
