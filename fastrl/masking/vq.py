"""Vector-quantizer lookup (BEiT / VQ-VAE tokenizer step): nearest codebook row.

``argmin_k ||z_n - c_k||^2 = argmin_k (||c_k||^2 - 2 z_n . c_k)``, computed a
tile of rows x a tile of codes at a time with an online argmin, so the
[N, K] distance matrix never exists. Ties go to the lowest index.
"""
from __future__ import annotations

import torch
from torch import nn

from fastrl._dispatch import use_triton
from fastrl._validation import check_int, check_real, check_same_dtype_device, check_tensor


def _cpu_nearest(z: torch.Tensor, codebook: torch.Tensor, cn: torch.Tensor, block_n: int | None, block_k: int):
    """Chunked matmul + running argmin: at most block_n x block_k scores at once."""
    N, K = z.shape[0], codebook.shape[0]
    block_k = min(block_k, K)
    if block_n is None:  # ~4M scores (16 MiB in float32) per chunk
        block_n = max(64, (1 << 22) // block_k)
    out = torch.empty(N, dtype=torch.int64, device=z.device)
    for s in range(0, N, block_n):
        zc = z[s: s + block_n]
        if block_k == K:  # one code chunk: argmin keeps the first minimum
            out[s: s + block_n] = torch.addmm(cn, zc, codebook.T, beta=1, alpha=-2).argmin(1)
            continue
        best = torch.full((zc.shape[0],), float("inf"), dtype=cn.dtype, device=z.device)
        best_idx = torch.zeros(zc.shape[0], dtype=torch.int64, device=z.device)
        for k0 in range(0, K, block_k):
            score = torch.addmm(cn[k0: k0 + block_k], zc, codebook[k0: k0 + block_k].T, beta=1, alpha=-2)
            v, i = score.min(dim=1)  # first minimum within the chunk
            better = v < best  # strict: an earlier chunk keeps ties
            best = torch.where(better, v, best)
            best_idx = torch.where(better, i + k0, best_idx)
        out[s: s + block_n] = best_idx
    return out


def vq_nearest(z: torch.Tensor, codebook: torch.Tensor, *, block_n: int | None = None, block_k: int = 4096
               ) -> torch.Tensor:
    """Index of the nearest codebook vector (squared L2) for each row of ``z``.

    Parameters
    ----------
    z : torch.Tensor
        [N, D] (or [..., D], flattened over the leading dims) encoder outputs; D >= 1.
    codebook : torch.Tensor
        [K, D] code vectors, same dtype and device as ``z``.
    block_n, block_k : int
        CPU-path tile sizes (default: 4096 codes, ~4M scores per tile; the
        Triton kernel uses its own tiles).

    Returns
    -------
    torch.Tensor
        int64 indices of shape ``z.shape[:-1]``; ties -> lowest index.
        Scores ``||c||^2 - 2 z.c`` are accumulated in float32 (float64 for
        float64 input on the CPU path); equal codes in different tiles may
        round differently, so exact ties are resolved up to that rounding.
    """
    check_real(z, "z")
    check_real(codebook, "codebook")
    check_tensor(z, "z", dtypes=None, finite=True, min_rows=0)
    if z.dim() < 1 or not z.is_floating_point():
        raise ValueError(f"z must be a floating tensor [..., D], got {z.dtype} of shape {tuple(z.shape)}")
    check_tensor(codebook, "codebook", ndim=2)
    check_same_dtype_device(z, codebook, "z", "codebook")
    if z.shape[-1] != codebook.shape[1]:
        raise ValueError(f"z has dimension {z.shape[-1]} but codebook rows have {codebook.shape[1]}")
    if codebook.shape[1] == 0:
        raise ValueError(f"z and codebook need a dimension D >= 1, got D = 0 (codebook shape {tuple(codebook.shape)})")
    block_k = check_int(block_k, "block_k", low=1)
    if block_n is not None:
        block_n = check_int(block_n, "block_n", low=1)
    lead = z.shape[:-1]
    z2 = z.detach().reshape(-1, z.shape[-1])
    cb = codebook.detach()
    if z2.shape[0] == 0:
        return torch.empty(lead, dtype=torch.int64, device=z.device)
    if use_triton(z2, cb):
        from fastrl.masking import triton_kernels as tk
        if z2.dtype == torch.float64:
            z2, cb = z2.float(), cb.float()
        cn = cb.float().square().sum(1)
        return tk.vq_nearest(z2, cb, cn).view(lead)
    acc = torch.float64 if z2.dtype == torch.float64 else torch.float32
    z2, cb = z2.to(acc), cb.to(acc)
    cn = cb.square().sum(1)
    return _cpu_nearest(z2, cb, cn, block_n, block_k).view(lead)


class VQNearest(nn.Module):
    """Module holding a codebook [K, D]: ``forward(z)`` -> nearest code indices."""

    def __init__(self, codebook: torch.Tensor):
        super().__init__()
        check_tensor(codebook, "codebook", ndim=2)
        self.register_buffer("codebook", codebook)

    def forward(self, z):
        return vq_nearest(z, self.codebook)
