"""SigLIP sigmoid loss (open_clip ``SigLipLoss``) on a fused tiled core:
Triton kernels for CUDA tensors, chunked torch otherwise."""
from .functional import siglip_loss, siglip_loss_distributed
from .modules import SigLipLoss

__all__ = ["siglip_loss", "siglip_loss_distributed", "SigLipLoss"]
