"""Barlow Twins, VICReg and SimSiam losses (fused cross-correlation/covariance)."""
from .functional import (barlow_twins_loss, negative_cosine_similarity, simsiam_loss, vicreg_loss,
                         vicreg_terms)
from .modules import BarlowTwinsLoss, NegativeCosineSimilarity, SimSiamLoss, VICRegLoss

__all__ = ["barlow_twins_loss", "vicreg_loss", "vicreg_terms", "simsiam_loss", "negative_cosine_similarity",
           "BarlowTwinsLoss", "VICRegLoss", "NegativeCosineSimilarity", "SimSiamLoss"]
