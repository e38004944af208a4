"""Naive reference implementations of the masked-modelling ops.

Written from the published algorithms, in plain torch / Python, so that the
fused kernels can be checked against them:

* MAE (He et al., 2022, ``models_mae.py``): ``patchify``, ``unpatchify``,
  ``random_masking`` (argsort of per-sample noise) and ``forward_loss``.
* BERT masking with the semantics of HuggingFace
  ``DataCollatorForLanguageModeling.torch_mask_tokens`` (80/10/10 rule), and
  the same rule fed by fastrl's counter-based stream (``bert_mask_hashed``).
* BEiT (Bao et al., 2022) ``MaskingGenerator``: block-wise masking by repeated
  random rectangles.
* Vector-quantizer lookup: brute-force squared-L2 distance matrix + argmin.

These functions favour clarity over speed and are used by the tests and the
benchmark as the baseline.
"""
from __future__ import annotations

import math
import random as _random

import numpy as np
import torch


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, h*w, p*p*C] in MAE's (h, w, p, q, c) element order."""
    B, C, H, W = imgs.shape
    h, w = H // p, W // p
    x = imgs.reshape(B, C, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(B, h * w, p * p * C)


def unpatchify(x: torch.Tensor, p: int, channels: int = 3, grid=None) -> torch.Tensor:
    """[B, h*w, p*p*C] -> [B, C, h*p, w*p] (square grid unless ``grid=(h, w)``)."""
    B, L, _ = x.shape
    h, w = grid if grid is not None else (int(round(L ** 0.5)),) * 2
    x = x.reshape(B, h, w, p, p, channels)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(B, channels, h * p, w * p)


def random_masking(x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None):
    """MAE per-sample random masking by argsort of noise.

    Ties in ``noise`` are broken by the lower index (stable sort).
    Returns ``(x_masked [B, L_keep, D], mask [B, L] float 1=removed, ids_restore [B, L])``.
    """
    N, L, D = x.shape
    len_keep = int(L * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(N, L, device=x.device)
    ids_shuffle = torch.argsort(noise, dim=1, stable=True)  # ascend: small is keep, large is remove
    ids_restore = torch.argsort(ids_shuffle, dim=1, stable=True)
    ids_keep = ids_shuffle[:, :len_keep]
    x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, D))
    mask = torch.ones([N, L], device=x.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, dim=1, index=ids_restore)
    return x_masked, mask, ids_restore


def mae_forward_loss(imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, p: int,
                     norm_pix_loss: bool = True) -> torch.Tensor:
    """MAE loss: per-patch MSE (optionally on normalised pixels) averaged over removed patches."""
    target = patchify(imgs, p)
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = (pred - target) ** 2
    loss = loss.mean(dim=-1)  # [N, L], mean loss per patch
    return (loss * mask).sum() / mask.sum()


def bert_mask(input_ids: torch.Tensor, vocab_size: int, mask_token_id: int, mlm_probability: float = 0.15,
              special_tokens_mask: torch.Tensor | None = None, generator: torch.Generator | None = None):
    """HF ``DataCollatorForLanguageModeling`` masking: select with ``mlm_probability``
    (never special tokens); of the selected 80% -> ``mask_token_id``, 10% -> a random
    token, 10% unchanged. Returns ``(inputs, labels)`` with labels -100 where not selected."""
    labels = input_ids.clone()
    inputs = input_ids.clone()
    prob = torch.full(labels.shape, mlm_probability)
    if special_tokens_mask is not None:
        prob.masked_fill_(special_tokens_mask.bool().cpu(), value=0.0)
    masked = torch.bernoulli(prob, generator=generator).bool()
    labels[~masked] = -100
    replaced = torch.bernoulli(torch.full(labels.shape, 0.8), generator=generator).bool() & masked
    inputs[replaced] = mask_token_id
    rand = torch.bernoulli(torch.full(labels.shape, 0.5), generator=generator).bool() & masked & ~replaced
    words = torch.randint(vocab_size, labels.shape, dtype=inputs.dtype, generator=generator)
    inputs[rand] = words[rand]
    return inputs, labels


def _lowbias32_np(x: np.ndarray) -> np.ndarray:
    """Wellons' lowbias32 mixer, elementwise on uint64 values < 2**32 (products stay < 2**63)."""
    m = np.uint64(0xFFFFFFFF)
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x7FEB352D)) & m
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x846CA68B)) & m
    return x ^ (x >> np.uint64(16))


def bert_mask_hashed(input_ids: torch.Tensor, vocab_size: int, mask_token_id: int, mlm_probability: float,
                     special_tokens_mask: torch.Tensor | None, key0: int, key1: int):
    """The 80/10/10 rule driven by fastrl's counter-based stream, vectorised in numpy.

    Element e (flat index) draws ``u_j = h(3e + j) / 2**32`` with
    ``h(c) = lowbias32(lowbias32(c ^ key0) ^ key1)``: selected iff not special and
    ``floor(u_0 2**24) / 2**24 < mlm_probability``; then with
    ``v = floor(u_1 2**24) / 2**24``: ``v < 0.8`` -> ``mask_token_id``, ``v < 0.9`` ->
    ``floor(u_2 * vocab_size)``, else unchanged. Returns ``(inputs, labels)``
    like :func:`bert_mask`; :func:`fastrl.masking.bert_mask` with the keys drawn
    from the same generator must return exactly this.
    """
    ids = input_ids.detach().cpu().reshape(-1).numpy().astype(np.int64)
    e = np.arange(ids.size, dtype=np.uint64)
    m = np.uint64(0xFFFFFFFF)

    def h(c):
        return _lowbias32_np(_lowbias32_np((c ^ np.uint64(key0)) & m) ^ np.uint64(key1))

    def u24(c):  # the top 24 bits as a fraction: exact in float64
        return (h(c) >> np.uint64(8)).astype(np.float64) / 2.0 ** 24

    sel = u24(3 * e) < mlm_probability
    if special_tokens_mask is not None:
        sel &= ~special_tokens_mask.detach().cpu().reshape(-1).bool().numpy()
    v = u24(3 * e + np.uint64(1))
    rnd = ((h(3 * e + np.uint64(2)) * np.uint64(vocab_size)) >> np.uint64(32)).astype(np.int64)
    out = np.where(sel & (v < 0.8), mask_token_id, np.where(sel & (v < 0.9), rnd, ids))
    labels = np.where(sel, ids, -100)
    as_t = lambda a: torch.from_numpy(a).to(input_ids.dtype).view(input_ids.shape)  # noqa: E731
    return as_t(out), as_t(labels)


class MaskingGenerator:
    """BEiT block-wise masking generator (one mask per call).

    ``rng`` supplies ``random()`` (uniform [0, 1)) and ``randint(a, b)`` (inclusive);
    the default is Python's :mod:`random`. Passing the same stream to the
    compiled generator reproduces its masks exactly.
    """

    def __init__(self, input_size=(14, 14), num_masking_patches=75, min_num_patches=16, max_num_patches=None,
                 min_aspect=0.3, max_aspect=None, rng=None):
        if not isinstance(input_size, tuple):
            input_size = (input_size,) * 2
        self.height, self.width = input_size
        self.num_masking_patches = num_masking_patches
        self.min_num_patches = min_num_patches
        self.max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
        max_aspect = max_aspect or 1 / min_aspect
        self.log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))
        self.rng = rng if rng is not None else _random

    def _uniform(self, a, b):
        return a + (b - a) * self.rng.random()

    def _mask(self, mask, max_mask_patches):
        delta = 0
        for _attempt in range(10):
            target_area = self._uniform(self.min_num_patches, max_mask_patches)
            aspect_ratio = math.exp(self._uniform(*self.log_aspect_ratio))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < self.width and h < self.height:
                top = self.rng.randint(0, self.height - h)
                left = self.rng.randint(0, self.width - w)
                num_masked = int(mask[top: top + h, left: left + w].sum())
                if 0 < h * w - num_masked <= max_mask_patches:  # new patches fit the budget
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            if mask[i, j] == 0:
                                mask[i, j] = 1
                                delta += 1
                if delta > 0:
                    break
        return delta

    def __call__(self) -> torch.Tensor:
        mask = torch.zeros(self.height, self.width, dtype=torch.int64)
        count = 0
        while count < self.num_masking_patches:
            budget = min(self.num_masking_patches - count, self.max_num_patches)
            delta = self._mask(mask, budget)
            if delta == 0:
                break
            count += delta
        return mask


def vq_nearest(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Brute force: full [N, K] squared distances in float64, argmin (ties -> lowest index)."""
    d = ((z.double()[:, None, :] - codebook.double()[None, :, :]) ** 2).sum(-1)
    return torch.argmin(d, dim=1)
