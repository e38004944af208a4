"""MNIST tensors and batched torch augmentations for benchmarks/train_ssl.py.

Every augmentation works on a whole batch [B, 1, H, W] at once (one affine
grid, one ``grid_sample``), so two views of 512 digits cost a few ms on CPU.
No torchvision.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fastrl.datasets import load_mnist

N_TRAIN = 60_000


def mnist_tensors(limit: int | None = None, path=None):
    """``(X_train, y_train, X_test, y_test)``: float32 [N, 1, 28, 28] in [0, 1]
    and int64 labels; ``limit`` keeps the first ``limit`` training images."""
    if path is None and not os.environ.get("FASTRL_MNIST"):
        # ../shared/data/mnist.npz from the repository root, or from a parent (git worktrees)
        root = Path(__file__).resolve().parent.parent
        found = [d / "shared" / "data" / "mnist.npz" for d in (root.parent, *root.parent.parents)]
        path = next((f for f in found if f.is_file()), None)
    X, y = load_mnist(path)
    X = torch.from_numpy(X.astype(np.float32) / 255.0).view(-1, 1, 28, 28)
    y = torch.from_numpy(y.astype(np.int64))
    Xtr, ytr, Xte, yte = X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]
    if limit is not None:
        if limit < 2:
            raise ValueError(f"limit must be >= 2, got {limit}")
        Xtr, ytr = Xtr[:limit], ytr[:limit]
    return Xtr.contiguous(), ytr, Xte.contiguous(), yte


def _uniform(b: int, lo: float, hi: float, g, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(b, generator=g, device=device)


def random_affine_crop(x: torch.Tensor, *, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), degrees: float = 15.0,
                       shear: float = 0.15, translate: float = 0.1, generator=None) -> torch.Tensor:
    """Random resized crop composed with a small rotation, shear and
    translation, one ``grid_sample`` for the batch.

    The crop keeps ``scale`` of the area with aspect ``ratio`` (as
    torchvision's RandomResizedCrop) and is resized back to H x W.

    Parameters
    ----------
    x : torch.Tensor [B, C, H, W]

    Returns
    -------
    torch.Tensor [B, C, H, W]
    """
    b, dev = x.shape[0], x.device
    area = _uniform(b, *scale, generator, dev)
    logr = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), generator, dev)
    ar = torch.exp(logr)
    sw = torch.sqrt(area * ar).clamp(max=1.0)       # crop width / image width
    sh = torch.sqrt(area / ar).clamp(max=1.0)
    cx = (1 - sw) * (2 * torch.rand(b, generator=generator, device=dev) - 1)   # crop centre in [-1, 1]
    cy = (1 - sh) * (2 * torch.rand(b, generator=generator, device=dev) - 1)
    cx = cx + _uniform(b, -translate, translate, generator, dev)
    cy = cy + _uniform(b, -translate, translate, generator, dev)
    th = torch.deg2rad(_uniform(b, -degrees, degrees, generator, dev))
    sx = _uniform(b, -shear, shear, generator, dev)
    cos, sin = torch.cos(th), torch.sin(th)
    # output grid (u, v) in [-1, 1]^2 -> input (R (S u) * crop + centre)
    theta = torch.stack([
        torch.stack([cos * sw, (cos * sx - sin) * sh, cx], 1),
        torch.stack([sin * sw, (sin * sx + cos) * sh, cy], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_erase(x: torch.Tensor, *, p: float = 0.5, scale=(0.02, 0.15), generator=None) -> torch.Tensor:
    """Zero one random rectangle of ``scale`` of the area in a fraction ``p``
    of the images (torchvision RandomErasing with value 0), batched as a mask."""
    b, _, h, w = x.shape
    dev = x.device
    area = _uniform(b, *scale, generator, dev) * h * w
    ar = torch.exp(_uniform(b, math.log(0.3), math.log(3.3), generator, dev))
    eh = torch.sqrt(area * ar).clamp(1, h)
    ew = torch.sqrt(area / ar).clamp(1, w)
    y0 = torch.rand(b, generator=generator, device=dev) * (h - eh)
    x0 = torch.rand(b, generator=generator, device=dev) * (w - ew)
    rows = torch.arange(h, device=dev, dtype=x.dtype).view(1, h, 1)
    cols = torch.arange(w, device=dev, dtype=x.dtype).view(1, 1, w)
    inside = ((rows >= y0.view(b, 1, 1)) & (rows < (y0 + eh).view(b, 1, 1))
              & (cols >= x0.view(b, 1, 1)) & (cols < (x0 + ew).view(b, 1, 1)))
    on = torch.rand(b, generator=generator, device=dev) < p
    return x.masked_fill((inside & on.view(b, 1, 1)).unsqueeze(1), 0.0)


def augment(x: torch.Tensor, *, strength: str = "strong", generator=None) -> torch.Tensor:
    """One random view of each image: crop + affine, brightness/contrast,
    Gaussian noise and erasing (``"strong"``), or crop + affine only
    (``"light"``, for MAE)."""
    v = random_affine_crop(x, scale=(0.4, 1.0) if strength == "strong" else (0.7, 1.0), generator=generator)
    if strength == "light":
        return v
    b, dev = x.shape[0], x.device
    contrast = _uniform(b, 0.6, 1.4, generator, dev).view(b, 1, 1, 1)
    bright = _uniform(b, -0.2, 0.2, generator, dev).view(b, 1, 1, 1)
    v = v * contrast + bright
    v = v + 0.1 * torch.randn(v.shape, generator=generator, device=dev, dtype=v.dtype)
    return random_erase(v.clamp(0, 1), generator=generator)


def edge_map(x: torch.Tensor, size: int = 14) -> torch.Tensor:
    """Second "modality" for CLIP: the Sobel gradient magnitude of the image
    at ``size`` x ``size`` resolution, scaled to [0, 1] per image."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device, dtype=x.dtype)
    k = torch.stack([kx, kx.t()]).unsqueeze(1)
    g = F.conv2d(x, k, padding=1)
    mag = g.pow(2).sum(1, keepdim=True).sqrt()
    mag = F.adaptive_avg_pool2d(mag, size)
    return mag / mag.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
