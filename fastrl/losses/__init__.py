"""Fused self-supervised losses (functional API and nn.Modules)."""

# contrastive family (InfoNCE, NT-Xent, CLIP, MoCo)
from fastrl.losses.contrastive import (  # noqa: F401
    ClipLoss, InfoNCELoss, MoCoLoss, MoCoQueue, NTXentLoss, alignment, clip_loss, info_nce, moco_loss,
    momentum_update, nt_xent, uniformity,
)
