"""Fused self-supervised losses (functional API and nn.Modules)."""

# Barlow Twins / VICReg / SimSiam (fastrl.losses.decorrelation)
from fastrl.losses.decorrelation import (  # noqa: E402,F401
    BarlowTwinsLoss, NegativeCosineSimilarity, SimSiamLoss, VICRegLoss, barlow_twins_loss,
    negative_cosine_similarity, simsiam_loss, vicreg_loss, vicreg_terms)
