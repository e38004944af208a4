"""Triton kernels for the t-SNE gradient on CUDA tensors (imported lazily:
fastrl works without triton).

With ``u_ij = (1 + d_ij^2 / dof)^-1`` and ``w_ij = u_ij^dof``:

* attractive: ``A_i = exaggeration * sum_{j in row i of P} p_ij u_ij (y_i - y_j)``,
  one program per CSR row, the row's edges in chunks of BLOCK_E;
* repulsive (tiled exact, O(N^2) work, O(N d) memory):
  ``R_i = sum_{j != i} w_ij u_ij (y_i - y_j)`` and ``Z_i = sum_{j != i} w_ij``,
  one program per BLOCK_M rows streaming BLOCK_N-column tiles of Y; the
  pairwise differences are formed coordinate by coordinate (embeddings have
  1-3 columns, too few for ``tl.dot``) and reused for the force, and the sums
  stay in [BLOCK_M, BLOCK_N] accumulators until one reduction after the loop.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _attractive_kernel(indptr_ptr, indices_ptr, data_ptr, y_ptr, yref_ptr, out_ptr, exaggeration, inv_dof,
                       D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_E: tl.constexpr):
    row = tl.program_id(0)
    start = tl.load(indptr_ptr + row)
    end = tl.load(indptr_ptr + row + 1)
    dcols = tl.arange(0, BLOCK_D)
    dmask = dcols < D
    yi = tl.load(y_ptr + row.to(tl.int64) * D + dcols, mask=dmask, other=0.0).to(tl.float32)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for e0 in range(start, end, BLOCK_E):
        offs = e0 + tl.arange(0, BLOCK_E)
        emask = offs < end
        j = tl.load(indices_ptr + offs, mask=emask, other=0).to(tl.int64)
        p = tl.load(data_ptr + offs, mask=emask, other=0.0).to(tl.float32)
        yj = tl.load(yref_ptr + j[:, None] * D + dcols[None, :], mask=emask[:, None] & dmask[None, :],
                     other=0.0).to(tl.float32)
        diff = yi[None, :] - yj
        d2 = tl.sum(diff * diff, axis=1)
        pu = p / (1.0 + d2 * inv_dof)
        acc += tl.sum(pu[:, None] * diff, axis=0)
    tl.store(out_ptr + row.to(tl.int64) * D + dcols, acc * exaggeration, mask=dmask)


@triton.jit
def _coord(y_ptr, idx, mask, c: tl.constexpr, D: tl.constexpr):
    # column c of Y at rows idx (64-bit offsets), zero past D
    if c < D:
        v = tl.load(y_ptr + idx.to(tl.int64) * D + c, mask=mask, other=0.0).to(tl.float32)
    else:
        v = tl.zeros(idx.shape, tl.float32)
    return v


# Per tile: diff_c = y_i,c - y_j,c (computed once, reused for d^2 and the force),
# u = 1 / (1 + d^2 / dof), w = u^dof; the [BLOCK_M, BLOCK_N] accumulators of w and
# w u diff_c are reduced across the tile's columns once, after the loop.
@triton.jit
def _repulsive_kernel(y_ptr, out_ptr, z_ptr, N, dof, inv_dof, D: tl.constexpr, CAUCHY: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < N
    yi0 = _coord(y_ptr, rows, rmask, 0, D)
    yi1 = _coord(y_ptr, rows, rmask, 1, D)
    yi2 = _coord(y_ptr, rows, rmask, 2, D)
    z = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    f0 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    f1 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    f2 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        cmask = cols < N
        d0 = yi0[:, None] - _coord(y_ptr, cols, cmask, 0, D)[None, :]
        d1 = yi1[:, None] - _coord(y_ptr, cols, cmask, 1, D)[None, :]
        d2 = yi2[:, None] - _coord(y_ptr, cols, cmask, 2, D)[None, :]
        u = 1.0 / (1.0 + (d0 * d0 + d1 * d1 + d2 * d2) * inv_dof)
        if CAUCHY:
            w = u
        else:
            w = tl.exp2(dof * tl.log2(u))
        keep = rmask[:, None] & cmask[None, :] & (rows[:, None] != cols[None, :])
        w = tl.where(keep, w, 0.0)
        z += w
        wu = w * u
        f0 += wu * d0
        if D > 1:
            f1 += wu * d1
        if D > 2:
            f2 += wu * d2
    r64 = rows.to(tl.int64) * D
    tl.store(z_ptr + rows, tl.sum(z, axis=1), mask=rmask)
    tl.store(out_ptr + r64, tl.sum(f0, axis=1), mask=rmask)
    if D > 1:
        tl.store(out_ptr + r64 + 1, tl.sum(f1, axis=1), mask=rmask)
    if D > 2:
        tl.store(out_ptr + r64 + 2, tl.sum(f2, axis=1), mask=rmask)


def attractive_triton(indptr: torch.Tensor, indices: torch.Tensor, data: torch.Tensor, Y: torch.Tensor,
                      Y_ref: torch.Tensor | None = None, *, dof: float = 1.0, exaggeration: float = 1.0,
                      block_e: int = 64) -> torch.Tensor:
    """Attractive forces over a CSR P (launcher).

    Parameters
    ----------
    indptr : int64 tensor, shape (N + 1,)
    indices : int32/int64 tensor, shape (nnz,)
    data : float tensor, shape (nnz,)
    Y : float tensor, shape (N, d)
    Y_ref : float tensor, shape (N_ref, d), optional (default ``Y``)

    Returns
    -------
    float32 tensor, shape (N, d)
    """
    Y = Y.contiguous()
    Yr = Y if Y_ref is None else Y_ref.contiguous()
    n, d = Y.shape
    out = torch.empty((n, d), device=Y.device, dtype=torch.float32)
    if n == 0:
        return out
    _attractive_kernel[(n,)](indptr.contiguous(), indices.contiguous(), data.contiguous(), Y, Yr, out,
                             float(exaggeration), 1.0 / float(dof), D=d, BLOCK_D=triton.next_power_of_2(d),
                             BLOCK_E=block_e)
    return out


def repulsive_triton(Y: torch.Tensor, *, dof: float = 1.0, block_m: int = 32, block_n: int = 64):
    """Exact tiled repulsion (launcher); ``d <= 3``.

    Returns
    -------
    R : float32 tensor, shape (N, d)
    z : float32 tensor, shape (N,)
        Per-row normalisers; ``Z = z.sum()``.
    """
    Y = Y.contiguous()
    n, d = Y.shape
    if d > 3:
        raise ValueError(f"the Triton repulsion supports n_components <= 3, got {d}")
    out = torch.empty((n, d), device=Y.device, dtype=torch.float32)
    z = torch.empty(n, device=Y.device, dtype=torch.float32)
    grid = (triton.cdiv(n, block_m),)
    _repulsive_kernel[grid](Y, out, z, n, float(dof), 1.0 / float(dof), D=d, CAUCHY=float(dof) == 1.0,
                            BLOCK_M=block_m, BLOCK_N=block_n)
    return out, z
