"""Contrastive losses (InfoNCE, NT-Xent, CLIP, MoCo, alignment/uniformity)
on one tiled LSE core: Triton kernels for CUDA tensors, chunked torch otherwise."""
from .functional import alignment, clip_loss, info_nce, lse_core, moco_loss, nt_xent, uniformity
from .modules import ClipLoss, InfoNCELoss, MemoryBankModule, MoCoLoss, MoCoQueue, NTXentLoss, momentum_update

__all__ = ["alignment", "clip_loss", "info_nce", "lse_core", "moco_loss", "nt_xent", "uniformity",
           "ClipLoss", "InfoNCELoss", "MemoryBankModule", "MoCoLoss", "MoCoQueue", "NTXentLoss", "momentum_update"]
