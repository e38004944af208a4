"""BEiT block-wise masking, compiled (Numba) over the batch.

Per sample, BEiT's ``MaskingGenerator``: repeatedly pick a rectangle of
random area in ``[min_num_patches, budget]`` and log-uniform aspect ratio in
``[min_aspect, max_aspect]`` at a random position, and mask it when it adds
between 1 and ``budget`` new patches (10 attempts per block); stop at
``num_masking_patches`` or after a block that found no room. Draws come from
the counter-based stream of :class:`fastrl.masking._rng.HashStream`, so the
pure-Python reference fed with that stream gives identical masks.

The generator runs where BEiT runs it, in the data loader: the mask is a
[B, H, W] bit grid built on the CPU (``device=`` moves the result).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from fastrl._validation import check_device, check_int
from fastrl.masking._rng import draw_keys


def _pair(input_size):
    """BEiT's ``input_size``: an int or a pair of ints (H, W), each >= 1. Floats are
    refused (even 14.0), as BEiT's generator fails on them too."""
    if isinstance(input_size, (numbers.Integral, np.integer)) and not isinstance(input_size, bool):
        input_size = (input_size, input_size)
    if not isinstance(input_size, (tuple, list)):
        raise TypeError(f"input_size must be an int or a pair of ints (H, W), got {type(input_size).__name__} "
                        f"{input_size!r}")
    if len(input_size) != 2:
        raise ValueError(f"input_size must be an int or a pair (H, W), got {input_size!r}")
    return tuple(check_int(v, "input_size", low=1) for v in input_size)


def _aspect(min_aspect, max_aspect):
    for name, v in (("min_aspect", min_aspect), ("max_aspect", max_aspect)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < float(v) < math.inf):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    lo = float(min_aspect)
    hi = float(max_aspect) if max_aspect else 1.0 / lo
    if lo > hi:
        raise ValueError(f"min_aspect {lo} must be <= max_aspect {hi}")
    return math.log(lo), math.log(hi)


def block_mask(batch_size: int, input_size=(14, 14), num_masking_patches: int = 75, min_num_patches: int = 16,
               max_num_patches: int | None = None, min_aspect: float = 0.3, max_aspect: float | None = None, *,
               generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """BEiT block-wise masks for a batch.

    Parameters
    ----------
    batch_size : int
        Number of masks B.
    input_size : int or (int, int)
        Patch grid (H, W); a float (even 14.0) raises TypeError.
    num_masking_patches : int
        Target number of masked patches per sample (at most H*W).
    min_num_patches : int
        Smallest block area drawn (BEiT's ``min_mask_patches_per_block``).
    max_num_patches : int, optional
        Largest number of patches one block may add (default ``num_masking_patches``).
    min_aspect, max_aspect : float
        Aspect ratio h/w is log-uniform in ``[min_aspect, max_aspect]``
        (default ``max_aspect = 1 / min_aspect``).
    generator : torch.Generator, optional
        Seeds the per-sample random streams.
    device : torch.device, optional
        Device of the returned tensor (default CPU).

    Returns
    -------
    torch.Tensor
        [B, H, W] bool, True = masked. Each mask has at most
        ``num_masking_patches`` True entries (exactly that many unless BEiT's
        generator would also stop early).
    """
    B = check_int(batch_size, "batch_size", low=0)
    device = check_device(device)
    H, W = _pair(input_size)
    n = check_int(num_masking_patches, "num_masking_patches", low=0, high=H * W)
    lo = check_int(min_num_patches, "min_num_patches", low=0)
    hi = n if max_num_patches is None else check_int(max_num_patches, "max_num_patches", low=1)
    la0, la1 = _aspect(min_aspect, max_aspect)
    k0, k1 = draw_keys(2, generator)
    from fastrl.masking import _numba_kernels as nk
    # numpy buffers: a torch fill would wake torch's thread pool for a tiny array
    grid = np.zeros((B, H, W), dtype=np.uint8)
    if B and n:
        nk.run(nk.block_mask, B * H * W * 64, grid, n, lo, hi, la0, la1, k0, k1)
    out = torch.from_numpy(grid.view(np.bool_))
    return out if device is None else out.to(device)


class MaskingGenerator:
    """BEiT-style callable: ``MaskingGenerator((14, 14), 75)(batch_size)`` -> [B, H, W] bool."""

    def __init__(self, input_size=(14, 14), num_masking_patches: int = 75, min_num_patches: int = 16,
                 max_num_patches: int | None = None, min_aspect: float = 0.3, max_aspect: float | None = None):
        self.kwargs = dict(input_size=_pair(input_size), num_masking_patches=num_masking_patches,
                           min_num_patches=min_num_patches, max_num_patches=max_num_patches,
                           min_aspect=min_aspect, max_aspect=max_aspect)
        block_mask(0, **self.kwargs)  # validate now

    def __call__(self, batch_size: int = 1, generator: torch.Generator | None = None, device=None):
        return block_mask(batch_size, **self.kwargs, generator=generator, device=device)
