"""Encoders and the seven self-supervised methods of benchmarks/train_ssl.py.

Each method is an ``nn.Module`` with

* ``encoder`` - the network whose output is probed (its ``out_dim`` features);
* ``views(x, g)`` - the inputs of one step (augmented views) from a raw batch;
* ``loss(views)`` - the fastrl loss of one step;
* ``after_step()`` - EMA / queue / clamp updates after ``optimizer.step()``.

The structure follows each method's reference implementation, scaled down
to 28 x 28 digits and two CPU cores.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from _ssl_data import augment, edge_map
from fastrl.losses import (barlow_twins_loss, clip_loss, moco_loss, momentum_update, MoCoQueue, nt_xent,
                           simsiam_loss, vicreg_loss)
from fastrl.masking import mae_loss, patchify, patchify_and_mask

METHODS = ("simclr", "moco", "clip", "barlow", "vicreg", "simsiam", "mae")


def fused(fn, *args, **kwargs):
    """Call a fastrl loss with autocast switched off: its inputs keep the
    dtype the network produced (bf16 under ``--device cuda``) and the fused
    kernels choose their own accumulation (fastrl's losses also work inside an
    autocast region: tests/test_losses_decorrelation.py checks the backward).
    """
    device = next(a for a in args if isinstance(a, torch.Tensor)).device.type
    with torch.autocast(device, enabled=False):
        return fn(*args, **kwargs)


def _block(cin: int, cout: int, k: int = 3, stride: int = 1) -> list:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ConvEncoder(nn.Module):
    """Three strided conv-BN-ReLU stages (28 -> 14 -> 7 -> 4), global average pool.

    Strided convolutions instead of full-resolution stages and pooling keep
    a 512-image step well under a second on two CPU cores.

    Parameters
    ----------
    width : int
        Channels of the first stage (then 2w, 8w); ``out_dim = 8 * width``.
    in_channels : int
    """

    def __init__(self, width: int = 16, in_channels: int = 1):
        super().__init__()
        w = width
        self.net = nn.Sequential(*_block(in_channels, w, 5, 2), *_block(w, 2 * w, 3, 2), *_block(2 * w, 8 * w, 3, 2),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = 8 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> features [B, 8w]."""
        return self.net(x)


def self_out(width: int) -> int:
    """Feature dimension of ``ConvEncoder(width)``."""
    return 8 * width


def mlp(dims, *, last_bn: bool = False, last_bn_affine: bool = True) -> nn.Sequential:
    """Linear-BN-ReLU layers through ``dims``; the last layer is plain Linear
    (followed by BatchNorm when ``last_bn``)."""
    layers = []
    for i in range(len(dims) - 2):
        layers += [nn.Linear(dims[i], dims[i + 1], bias=False), nn.BatchNorm1d(dims[i + 1]), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(dims[-1], affine=last_bn_affine))
    return nn.Sequential(*layers)


class _TwoView(nn.Module):
    """Encoder + projector trained on two strongly augmented views."""

    def __init__(self, width: int, proj_dims):
        super().__init__()
        self.encoder = ConvEncoder(width)
        self.projector = mlp([self.encoder.out_dim, *proj_dims])

    def views(self, x, g=None):
        return augment(x, generator=g), augment(x, generator=g)

    def project(self, v):
        return self.projector(self.encoder(v))

    def after_step(self) -> None:
        pass


class SimCLR(_TwoView):
    """SimCLR: 2-layer projector, NT-Xent (temperature 0.2) over the 2N views."""

    def __init__(self, width: int = 16, proj: int = 64, temperature: float = 0.2):
        super().__init__(width, (2 * self_out(width), proj))
        self.temperature = temperature

    def loss(self, views):
        return fused(nt_xent, self.project(views[0]), self.project(views[1]), self.temperature)


class BarlowTwins(_TwoView):
    """Barlow Twins: 3-layer projector (8192 scaled to 512), BN'd
    cross-correlation loss with lambda 0.0051."""

    def __init__(self, width: int = 16, proj: int = 512, lambda_: float = 0.0051):
        super().__init__(width, (proj, proj, proj))
        self.lambda_ = lambda_

    def loss(self, views):
        return fused(barlow_twins_loss, self.project(views[0]), self.project(views[1]), self.lambda_)


class VICReg(_TwoView):
    """VICReg: 3-layer expander (8192 scaled to 512), coefficients 25/25/1."""

    def __init__(self, width: int = 16, proj: int = 512):
        super().__init__(width, (proj, proj, proj))

    def loss(self, views):
        return fused(vicreg_loss, self.project(views[0]), self.project(views[1]))


class SimSiam(_TwoView):
    """SimSiam: 3-layer projector with BN on its output, bottleneck
    predictor, symmetric negative cosine with stop-gradient on z."""

    def __init__(self, width: int = 16, proj: int = 256, pred_hidden: int = 64):
        super().__init__(width, (proj, proj, proj))
        self.projector = mlp([self.encoder.out_dim, proj, proj, proj], last_bn=True, last_bn_affine=False)
        self.predictor = mlp([proj, pred_hidden, proj])

    def loss(self, views):
        z1, z2 = self.project(views[0]), self.project(views[1])
        # simsiam_loss detaches z1, z2 (the stop-gradient)
        return fused(simsiam_loss, self.predictor(z1), self.predictor(z2), z1, z2)


class MoCo(_TwoView):
    """MoCo v2 (symmetrised as in v3): query encoder + projector, a momentum
    key encoder updated by ``fastrl.losses.momentum_update``, and a queue of
    ``queue_size`` keys (``MoCoQueue``) as the negatives."""

    def __init__(self, width: int = 16, proj: int = 64, queue_size: int = 4096, momentum: float = 0.99,
                 temperature: float = 0.2):
        super().__init__(width, (2 * self_out(width), proj))
        self.key_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.queue = MoCoQueue(queue_size, proj)
        self.momentum, self.temperature = momentum, temperature
        self._keys = None

    def loss(self, views):
        q1, q2 = self.project(views[0]), self.project(views[1])
        with torch.no_grad():
            k1 = self.key_projector(self.key_encoder(views[0]))
            k2 = self.key_projector(self.key_encoder(views[1]))
        queue = self.queue.queue
        loss = 0.5 * (fused(moco_loss, q1, k2, queue, self.temperature)
                      + fused(moco_loss, q2, k1, queue, self.temperature))
        self._keys = torch.cat([k1, k2]).float()
        return loss

    def after_step(self) -> None:
        momentum_update(self.encoder, self.key_encoder, self.momentum)
        momentum_update(self.projector, self.key_projector, self.momentum)
        if self._keys is not None:
            self.queue.enqueue(F.normalize(self._keys, dim=1))
            self._keys = None


class CLIP(nn.Module):
    """CLIP on two modalities of one digit: the augmented image (conv
    encoder, the probed one) and the Sobel edge map of another augmentation
    at 14 x 14 (a smaller conv encoder); linear projections to a shared
    space, L2-normalised, learnable ``logit_scale`` (init 1/0.07, clamped at
    100 as in open_clip)."""

    def __init__(self, width: int = 16, embed: int = 64):
        super().__init__()
        self.encoder = ConvEncoder(width)
        self.text_encoder = nn.Sequential(*_block(1, width, 3, 2), *_block(width, 2 * width, 3, 2),
                                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.image_proj = nn.Linear(self.encoder.out_dim, embed)
        self.text_proj = nn.Linear(2 * width, embed)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def views(self, x, g=None):
        return augment(x, generator=g), edge_map(augment(x, strength="light", generator=g))

    def loss(self, views):
        img = F.normalize(self.image_proj(self.encoder(views[0])), dim=1)
        txt = F.normalize(self.text_proj(self.text_encoder(views[1])), dim=1)
        return fused(clip_loss, img, txt, self.logit_scale.exp())

    def after_step(self) -> None:
        with torch.no_grad():
            self.logit_scale.clamp_(0, math.log(100))


def _sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """MAE's fixed 2-D sine-cosine position embedding, [grid*grid, dim]."""
    q = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / q)
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                            indexing="ij")
    out = [f(c.reshape(-1, 1) * omega) for c in (xs, ys) for f in (torch.sin, torch.cos)]
    return torch.cat(out, 1).float()


def _transformer(dim: int, depth: int, heads: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class MAEEncoder(nn.Module):
    """ViT encoder over p x p patches (linear patch embedding, fixed sin-cos
    positions, pre-norm blocks); ``forward`` mean-pools all patches."""

    def __init__(self, patch: int = 7, dim: int = 64, depth: int = 2, heads: int = 4, image: int = 28):
        super().__init__()
        self.patch, self.grid = patch, image // patch
        self.embed = nn.Linear(patch * patch, dim)
        self.register_buffer("pos", _sincos_2d(self.grid, dim))
        self.blocks = _transformer(dim, depth, heads)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def tokens(self, patches: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """patches [B, L', p*p] at grid positions ``ids`` [B, L'] (all if None) -> [B, L', dim]."""
        pos = self.pos if ids is None else self.pos[ids]
        return self.norm(self.blocks(self.embed(patches) + pos))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 1, H, W] -> features [B, dim]."""
        return self.tokens(patchify(x, self.patch)).mean(1)


class MAE(nn.Module):
    """MAE: ``fastrl.masking.patchify_and_mask`` keeps 40% of the sixteen
    7x7 patches (6 of 16; 75% of 4 patches would leave too little of a digit), a small ViT encodes them, a one-block decoder fills in mask
    tokens, ``fastrl.masking.mae_loss`` scores the masked patches (raw
    pixels: MNIST's blank patches make per-patch normalisation noisy)."""

    def __init__(self, patch: int = 7, dim: int = 64, depth: int = 2, dec_dim: int = 32, mask_ratio: float = 0.6):
        super().__init__()
        self.encoder = MAEEncoder(patch, dim, depth)
        self.dec_embed = nn.Linear(dim, dec_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.register_buffer("dec_pos", _sincos_2d(self.encoder.grid, dec_dim))
        self.decoder = _transformer(dec_dim, 1, 2)
        self.dec_norm = nn.LayerNorm(dec_dim)
        self.head = nn.Linear(dec_dim, patch * patch)
        self.mask_ratio = mask_ratio
        nn.init.normal_(self.mask_token, std=0.02)

    def views(self, x, g=None):
        return (augment(x, strength="light", generator=g),)

    def loss(self, views):
        imgs = views[0]
        p = self.encoder.patch
        vis, mask, ids_restore = patchify_and_mask(imgs, p, self.mask_ratio)
        ids_keep = torch.argsort(ids_restore, dim=1)[:, :vis.shape[1]]
        h = self.dec_embed(self.encoder.tokens(vis, ids_keep))
        b, keep, d = h.shape
        full = torch.cat([h, self.mask_token.to(h.dtype).expand(b, ids_restore.shape[1] - keep, d)], 1)
        full = torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
        pred = self.head(self.dec_norm(self.decoder(full + self.dec_pos)))
        return fused(mae_loss, pred, imgs, mask, p, norm_pix_loss=False)

    def after_step(self) -> None:
        pass


def build(method: str, *, tiny: bool = False) -> nn.Module:
    """The model of ``method``; ``tiny`` shrinks every width (tests)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "mae":
        return MAE(dim=16, depth=1, dec_dim=16) if tiny else MAE()
    width = 4 if tiny else 16
    kw = {"simclr": {}, "moco": {"queue_size": 512} if tiny else {}, "clip": {},
          "barlow": {"proj": 64} if tiny else {}, "vicreg": {"proj": 64} if tiny else {},
          "simsiam": {"proj": 64, "pred_hidden": 16} if tiny else {}}[method]
    cls = {"simclr": SimCLR, "moco": MoCo, "clip": CLIP, "barlow": BarlowTwins, "vicreg": VICReg,
           "simsiam": SimSiam}[method]
    return cls(width=width, **kw)
