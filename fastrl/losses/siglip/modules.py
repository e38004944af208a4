"""``SigLipLoss``: drop-in for open_clip's, on the fused tiled core."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from fastrl import distributed as fdist
from fastrl._validation import check_choice, check_int

from .functional import DIST_IMPLS, siglip_loss, siglip_loss_distributed


class SigLipLoss(nn.Module):
    """Sigmoid loss of SigLIP (Zhai et al. 2023), open_clip ``SigLipLoss`` semantics.

    Parameters
    ----------
    cache_labels : bool
        Accepted for compatibility (the fused loss needs no label matrix).
    rank, world_size : int
        As in open_clip; with ``world_size > 1`` torch.distributed must be
        initialised with ``world_size`` ranks, and each rank's loss adds its
        images against the other ranks' texts (negatives only).
    dist_impl : {"bidir", "shift", "reduce", "gather"}, optional
        open_clip 3.x's exchange; ``None`` takes ``bidir``.
    bidir : bool
        open_clip 2.x's switch: ``True`` is ``"bidir"``, ``False`` ``"shift"``
        (used when ``dist_impl`` is None).

    ``forward(image_features [n, D], text_features [n, D], logit_scale,
    logit_bias, output_dict=False)`` returns the 0-d loss
    ``-1/n sum_ij log sigmoid(z_ij (s x_i.y_j + b))`` (or ``{"contrastive_loss": loss}``).
    """

    def __init__(self, cache_labels: bool = False, rank: int = 0, world_size: int = 1,
                 dist_impl: Optional[str] = None, bidir: bool = True):
        super().__init__()
        self.cache_labels = bool(cache_labels)
        self.rank = check_int(rank, "rank", low=0)
        self.world_size = check_int(world_size, "world_size", low=1)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be < world_size={self.world_size}, got {self.rank}")
        self.dist_impl = check_choice(dist_impl or ("bidir" if bidir else "shift"), "dist_impl", DIST_IMPLS)
        self.bidir = self.dist_impl == "bidir"
        self.prev_num_logits = 0
        self.labels = {}

    def get_ground_truth(self, device, dtype, num_logits: int, negative_only: bool = False) -> torch.Tensor:
        """open_clip's label matrix [num_logits, num_logits]: 1 on the diagonal,
        -1 elsewhere (all -1 for ``negative_only``). Builds the N x N matrix."""
        labels = -torch.ones((num_logits, num_logits), device=device, dtype=dtype)
        if not negative_only:
            labels = 2 * torch.eye(num_logits, device=device, dtype=dtype) + labels
        return labels

    def get_logits(self, image_features, text_features, logit_scale, logit_bias=None) -> torch.Tensor:
        """The N x N logits ``s X Y^T + b`` (built in full, as open_clip does:
        for inspection only; ``forward`` never builds them)."""
        logits = logit_scale * image_features @ text_features.T
        return logits + logit_bias if logit_bias is not None else logits

    def forward(self, image_features, text_features, logit_scale, logit_bias=None, output_dict: bool = False):
        if self.world_size > 1:
            if not fdist.is_distributed() or fdist.world_size() != self.world_size or fdist.rank() != self.rank:
                raise ValueError(f"rank={self.rank}, world_size={self.world_size} need torch.distributed "
                                 f"initialised with that rank and world size (found rank {fdist.rank()} of "
                                 f"{fdist.world_size()})")
            loss = siglip_loss_distributed(image_features, text_features, logit_scale, logit_bias,
                                           dist_impl=self.dist_impl)
        else:
            loss = siglip_loss(image_features, text_features, logit_scale, logit_bias)
        return {"contrastive_loss": loss} if output_dict else loss
