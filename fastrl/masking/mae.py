"""MAE ops: patchify / unpatchify, random masking, fused patchify + mask.

Element order and masking algorithm follow MAE's ``models_mae.py``: a patch
row is laid out as (p, q, c); ``random_masking`` keeps the ``L_keep`` patches
with the smallest noise, in increasing-noise order.
"""
from __future__ import annotations

import numbers

import torch
from torch import nn

from fastrl._dispatch import use_triton
from fastrl._validation import check_int, check_real, check_tensor
from fastrl.masking import ops

_NUMBA_DTYPES = (torch.float32, torch.float64)


def check_ratio(mask_ratio) -> float:
    """``mask_ratio`` must be a real number in [0, 1)."""
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, numbers.Real):
        raise TypeError(f"mask_ratio must be a number, got {type(mask_ratio).__name__}")
    r = float(mask_ratio)
    if not (0.0 <= r < 1.0):
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    return r


def check_images(imgs, patch_size, name: str = "imgs") -> tuple[int, int, int, int, int]:
    """Validate real [B, C, H, W] images and a patch size dividing H and W; returns (B, C, h, w, p)."""
    check_tensor(check_real(imgs, name), name, ndim=4, finite=False)
    p = check_int(patch_size, "patch_size", low=1)
    B, C, H, W = imgs.shape
    if C == 0:
        raise ValueError(f"{name} has no channels: shape {tuple(imgs.shape)}")
    for side, n in (("height", H), ("width", W)):
        if n == 0 or n % p:
            raise ValueError(f"{name} {side} {n} is not divisible by patch_size {p}")
    return B, C, H // p, W // p, p


def len_keep(L: int, mask_ratio: float) -> int:
    """Number of visible patches, as MAE computes it: ``int(L * (1 - mask_ratio))``."""
    return int(L * (1 - mask_ratio))


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Split images into flattened patches (MAE order).

    Parameters
    ----------
    imgs : torch.Tensor
        [B, C, H, W]; H and W divisible by ``patch_size``.
    patch_size : int
        Patch side p.

    Returns
    -------
    torch.Tensor
        [B, L = (H/p)(W/p), p*p*C]; element ``(i*p + j)*C + c`` of patch
        ``hi*(W/p) + wi`` is pixel ``imgs[b, c, hi*p + i, wi*p + j]``.
    """
    B, C, h, w, p = check_images(imgs, patch_size)
    # one permuting copy, already a single pass on every device
    x = imgs.reshape(B, C, h, p, w, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, h * w, p * p * C)


def unpatchify(x: torch.Tensor, patch_size: int, channels: int = 3, grid: tuple[int, int] | None = None
               ) -> torch.Tensor:
    """Inverse of :func:`patchify`.

    Parameters
    ----------
    x : torch.Tensor
        [B, L, p*p*channels].
    patch_size : int
        Patch side p.
    channels : int
        Number of image channels C (default 3).
    grid : (int, int), optional
        Patch grid (h, w); default square, ``h = w = sqrt(L)``.

    Returns
    -------
    torch.Tensor
        [B, C, h*p, w*p].
    """
    check_tensor(x, "x", ndim=3, finite=False)
    p = check_int(patch_size, "patch_size", low=1)
    C = check_int(channels, "channels", low=1)
    B, L, D = x.shape
    if D != p * p * C:
        raise ValueError(f"x has patch dimension {D}, expected patch_size**2 * channels = {p * p * C}")
    if grid is None:
        h = int(round(L ** 0.5))
        if h * h != L:
            raise ValueError(f"x has L={L} patches, not a square grid; pass grid=(h, w)")
        h = w = h
    else:
        h, w = (check_int(g, "grid", low=1) for g in grid)
        if h * w != L:
            raise ValueError(f"grid {tuple(grid)} has {h * w} patches, x has L={L}")
    y = x.reshape(B, h, w, p, p, C).permute(0, 5, 1, 3, 2, 4)
    return y.reshape(B, C, h * p, w * p)


def _noise(noise, generator, B, L, device):
    """The [B, L] noise to sort: ``noise`` checked (values: in the shuffle op), else drawn."""
    if noise is None:
        if generator is None:  # torch.rand's numbers, drawn by one op (no graph break under compile)
            return ops.uniform(B, L, device)
        return _generator_noise(B, L, device, generator)
    check_tensor(check_real(noise, "noise"), "noise", ndim=2, dtypes=None, finite=False)
    if tuple(noise.shape) != (B, L):
        raise ValueError(f"noise must have shape {(B, L)}, got {tuple(noise.shape)}")
    return noise.detach().to(device)


@torch.compiler.disable
def _generator_noise(B, L, device, generator):
    # a torch.Generator cannot enter a compiled graph (nor a custom op): this draw is the
    # one graph break of a compiled step that passes ``generator=``
    return torch.rand(B, L, device=device, generator=generator)


def _shuffle(noise: torch.Tensor, keep: int):
    """MAE's argsort of noise (ties -> lower index): ids_keep [B, keep], mask [B, L] float32, ids_restore.

    One op (``fastrl::mae_shuffle``); NaN/inf noise raises ``ValueError`` when it runs."""
    return ops.shuffle(noise, keep)


def _shuffle_impl(noise: torch.Tensor, keep: int):
    """The body of ``fastrl::mae_shuffle``: the Numba kernel on the CPU, torch elsewhere."""
    if noise.device.type == "cpu":
        # (CPU noise is checked for NaN/inf inside the kernel: a torch op here
        #  would leave OpenMP threads spinning against the Numba kernel that follows)
        from fastrl.masking import _numba_kernels as nk
        B, L = noise.shape
        ids_keep = torch.empty((B, keep), dtype=torch.int64)
        mask = torch.empty((B, L), dtype=torch.float32)
        ids_restore = torch.empty((B, L), dtype=torch.int64)
        nz = noise if noise.dtype in _NUMBA_DTYPES else noise.double()
        if nk.run(nk.shuffle_rows, B * L * 16, nz.contiguous().numpy(), keep, ids_keep.numpy(), mask.numpy(),
                  ids_restore.numpy()):
            raise ValueError("noise contains NaN or inf")
        return ids_keep, mask, ids_restore
    if noise.is_floating_point() and not bool(torch.isfinite(noise).all()):
        raise ValueError("noise contains NaN or inf")
    ids_shuffle = torch.argsort(noise, dim=1, stable=True)
    ids_restore = torch.empty_like(ids_shuffle)
    ar = torch.arange(noise.shape[1], device=noise.device).expand_as(ids_shuffle)
    ids_restore.scatter_(1, ids_shuffle, ar)  # inverse permutation without a second sort
    mask = (ids_restore >= keep).to(torch.float32)
    return ids_shuffle[:, :keep].contiguous(), mask, ids_restore


def random_masking(x: torch.Tensor, mask_ratio: float = 0.75, *, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None):
    """MAE per-sample random masking.

    Keeps the ``int(L * (1 - mask_ratio))`` tokens with the smallest noise
    (ties broken by the lower index), in increasing-noise order, exactly as
    MAE's argsort-of-noise. Without ``noise``, uniform noise is drawn from
    ``generator``: every subset of kept tokens is equally likely.

    Parameters
    ----------
    x : torch.Tensor
        [B, L, D] tokens, any real dtype (float, int or bool; complex raises TypeError).
    mask_ratio : float
        Fraction removed, in [0, 1).
    noise : torch.Tensor, optional
        [B, L] real, finite noise to sort.
    generator : torch.Generator, optional
        Source of the noise when ``noise`` is None.

    Returns
    -------
    x_visible : torch.Tensor
        [B, L_keep, D].
    mask : torch.Tensor
        [B, L] float32, 1 = removed, 0 = kept.
    ids_restore : torch.Tensor
        [B, L] int64; position of each token in the shuffled order.
    """
    check_tensor(check_real(x, "x"), "x", ndim=3, dtypes=None, finite=False)
    r = check_ratio(mask_ratio)
    B, L, D = x.shape
    keep = len_keep(L, r)
    ids_keep, mask, ids_restore = _shuffle(_noise(noise, generator, B, L, x.device), keep)
    if use_triton(x) and B * keep * D:
        out = ops.gather_rows(x, ids_keep)
    else:
        out = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(B, keep, D))
    return out, mask, ids_restore


class _GatherRows(torch.autograd.Function):
    """out[b, k] = x[b, ids[b, k]] by the Triton gather; backward scatters the rows back."""

    @staticmethod
    def forward(ctx, x, ids):
        from fastrl.masking import triton_kernels as tk
        ctx.save_for_backward(ids)
        ctx.shape = x.shape
        out = torch.empty((x.shape[0], ids.shape[1], x.shape[2]), device=x.device, dtype=x.dtype)
        return tk.gather_rows(x, ids, out)

    @staticmethod
    def backward(ctx, grad_out):
        (ids,) = ctx.saved_tensors
        grad = grad_out.new_zeros(ctx.shape)
        grad.scatter_(1, ids.unsqueeze(-1).expand_as(grad_out), grad_out)
        return grad, None


def patchify_and_mask(imgs: torch.Tensor, patch_size: int = 16, mask_ratio: float = 0.75, *,
                      noise: torch.Tensor | None = None, generator: torch.Generator | None = None):
    """Fused ``random_masking(patchify(imgs, p), mask_ratio)``.

    The kept patch ids are chosen first (from the [B, L] noise only); then each
    visible patch is read straight from the image and written once. The full
    [B, L, p*p*C] patch tensor is never built.

    Parameters
    ----------
    imgs : torch.Tensor
        [B, C, H, W] images, H and W divisible by ``patch_size``.
    patch_size : int
        Patch side p.
    mask_ratio : float
        Fraction of patches removed, in [0, 1).
    noise : torch.Tensor, optional
        [B, L] noise (L = HW/p^2); same result as MAE given the same noise.
    generator : torch.Generator, optional
        Source of the noise when ``noise`` is None.

    Returns
    -------
    x_visible : torch.Tensor
        [B, L_keep, p*p*C], same dtype as ``imgs``; differentiable with respect to
        ``imgs`` on every path (the fused gathers scatter the gradient back).
    mask : torch.Tensor
        [B, L] float32, 1 = removed.
    ids_restore : torch.Tensor
        [B, L] int64.
    """
    B, C, h, w, p = check_images(imgs, patch_size)
    r = check_ratio(mask_ratio)
    L, D = h * w, p * p * C
    keep = len_keep(L, r)
    ids_keep, mask, ids_restore = _shuffle(_noise(noise, generator, B, L, imgs.device), keep)
    if B * keep * D == 0:
        return torch.empty((B, keep, D), device=imgs.device, dtype=imgs.dtype), mask, ids_restore
    if use_triton(imgs):
        fused = "triton"
    elif imgs.device.type == "cpu" and imgs.dtype in _NUMBA_DTYPES:
        fused = "numba"
    else:  # other dtypes: gather visible patches from the strided 6-D view (autograd through indexing)
        return _patch_view(imgs, p)[_patch_index(ids_keep, w)].reshape(B, keep, D), mask, ids_restore
    # the fused gathers are differentiable: the backward scatters the patch gradients back
    return ops.gather_patches(imgs, ids_keep, p, fused), mask, ids_restore


def _patch_view(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """[B, h, w, p, p, C] strided view of [B, C, H, W] images (no copy)."""
    B, C, H, W = imgs.shape
    return imgs.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)


def _patch_index(ids: torch.Tensor, w: int):
    """(batch-row, patch-row, patch-column) indices of patch ids [B, K] on a grid w wide."""
    return torch.arange(ids.shape[0], device=ids.device)[:, None], ids // w, ids % w


class _GatherPatches(torch.autograd.Function):
    """Fused patch gather (``fused``: "triton" or "numba") of the patches ``ids`` [B, K] into
    [B, K, p*p*C]; backward writes each kept patch's gradient back into its image position."""

    @staticmethod
    def forward(ctx, imgs, ids, p, fused):
        out = imgs.new_empty((ids.shape[0], ids.shape[1], p * p * imgs.shape[1]))
        if fused == "triton":
            from fastrl.masking import triton_kernels as tk
            tk.gather_rows(imgs, ids, out, patch=p)
        else:
            from fastrl.masking import _numba_kernels as nk
            nk.run(nk.gather_patches, out.numel(), imgs.detach().numpy(), ids.numpy(), p, out.numpy())
        ctx.save_for_backward(ids)
        ctx.shape, ctx.p = imgs.shape, p
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (ids,) = ctx.saved_tensors
        p, (_, C, _, W) = ctx.p, ctx.shape
        grad = grad_out.new_zeros(ctx.shape)
        # kept ids are distinct per image, so a plain indexed write scatters every row once
        _patch_view(grad, p)[_patch_index(ids, W // p)] = grad_out.reshape(*ids.shape, p, p, C)
        return grad, None, None, None


class RandomMasking(nn.Module):
    """Module form of :func:`random_masking`: ``forward(x, noise=None)``."""

    def __init__(self, mask_ratio: float = 0.75):
        super().__init__()
        self.mask_ratio = check_ratio(mask_ratio)

    def forward(self, x, noise=None, generator=None):
        return random_masking(x, self.mask_ratio, noise=noise, generator=generator)


class PatchifyAndMask(nn.Module):
    """Module form of :func:`patchify_and_mask`: ``forward(imgs, noise=None)``."""

    def __init__(self, patch_size: int = 16, mask_ratio: float = 0.75):
        super().__init__()
        self.patch_size = check_int(patch_size, "patch_size", low=1)
        self.mask_ratio = check_ratio(mask_ratio)

    def forward(self, imgs, noise=None, generator=None):
        return patchify_and_mask(imgs, self.patch_size, self.mask_ratio, noise=noise, generator=generator)
