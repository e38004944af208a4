"""Fused self-supervised losses (functional API and nn.Modules)."""

# Barlow Twins / VICReg / SimSiam (fastrl.losses.decorrelation)
from fastrl.losses.decorrelation import (  # noqa: E402,F401
    BarlowTwinsLoss, NegativeCosineSimilarity, SimSiamLoss, VICRegLoss, barlow_twins_loss,
    negative_cosine_similarity, simsiam_loss, vicreg_loss, vicreg_terms)
from fastrl.losses.decorrelation.modules import SymNegCosineSimilarityLoss  # noqa: E402,F401

# contrastive family (InfoNCE, NT-Xent, CLIP, MoCo)
from fastrl.losses.contrastive import (  # noqa: F401
    ClipLoss, InfoNCELoss, MemoryBankModule, MoCoLoss, MoCoQueue, NTXentLoss, alignment, clip_loss, info_nce, moco_loss,
    momentum_update, nt_xent, uniformity,
)

# SigLIP (fastrl.losses.siglip)
from fastrl.losses.siglip import SigLipLoss, siglip_loss  # noqa: E402,F401
