"""Fused self-supervised losses (functional API and nn.Modules)."""

# Barlow Twins / VICReg / SimSiam (fastrl.losses.decorrelation)
from fastrl.losses.decorrelation import (  # noqa: E402,F401
    BarlowTwinsLoss, NegativeCosineSimilarity, SimSiamLoss, VICRegLoss, barlow_twins_loss,
    negative_cosine_similarity, simsiam_loss, vicreg_loss, vicreg_terms)

# contrastive family (InfoNCE, NT-Xent, CLIP, MoCo)
from fastrl.losses.contrastive import (  # noqa: F401
    ClipLoss, InfoNCELoss, MoCoLoss, MoCoQueue, NTXentLoss, alignment, clip_loss, info_nce, moco_loss,
    momentum_update, nt_xent, uniformity,
)
