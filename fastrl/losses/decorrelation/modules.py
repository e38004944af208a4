"""nn.Module wrappers with lightly's constructor signatures."""
from __future__ import annotations

import torch

from . import functional as Fd


class BarlowTwinsLoss(torch.nn.Module):
    """Barlow Twins loss (drop-in for ``lightly.loss.BarlowTwinsLoss``).

    Parameters
    ----------
    lambda_param : float
        Weight of the off-diagonal term (lightly's default 5e-3).
    gather_distributed : bool
        Compute statistics and C over the global batch of all ranks.
    eps : float
        BatchNorm epsilon.

    ``forward(z_a, z_b)`` with z_a, z_b [N, D] returns a 0-d loss.
    """

    def __init__(self, lambda_param: float = 5e-3, gather_distributed: bool = False, eps: float = 1e-5):
        super().__init__()
        self.lambda_param = lambda_param
        self.gather_distributed = gather_distributed
        self.eps = eps

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return Fd.barlow_twins_loss(z_a, z_b, self.lambda_param, eps=self.eps,
                                    gather_distributed=self.gather_distributed)


class VICRegLoss(torch.nn.Module):
    """VICReg loss (drop-in for ``lightly.loss.VICRegLoss``).

    Parameters
    ----------
    lambda_param, mu_param, nu_param : float
        Invariance, variance and covariance weights (25, 25, 1).
    gather_distributed : bool
        Use the global batch of all ranks for all three terms.
    eps : float
        Variance epsilon.

    ``forward(z_a, z_b)`` with [N, D] inputs returns a 0-d loss; ``terms(z_a, z_b)``
    returns the unweighted (invariance, variance, covariance) for logging.
    """

    def __init__(self, lambda_param: float = 25.0, mu_param: float = 25.0, nu_param: float = 1.0,
                 gather_distributed: bool = False, eps: float = 1e-4):
        super().__init__()
        self.lambda_param = lambda_param
        self.mu_param = mu_param
        self.nu_param = nu_param
        self.gather_distributed = gather_distributed
        self.eps = eps

    def terms(self, z_a: torch.Tensor, z_b: torch.Tensor):
        return Fd.vicreg_terms(z_a, z_b, self.eps, gather_distributed=self.gather_distributed)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return Fd.vicreg_loss(z_a, z_b, self.lambda_param, self.mu_param, self.nu_param, self.eps,
                              gather_distributed=self.gather_distributed)


class NegativeCosineSimilarity(torch.nn.Module):
    """Mean negative cosine similarity (drop-in for lightly's; ``dim=1``, ``eps=1e-8``)."""

    def __init__(self, dim: int = 1, eps: float = 1e-8):
        super().__init__()
        self.dim = dim
        self.eps = eps

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        return Fd.negative_cosine_similarity(x0, x1, self.dim, self.eps)


class SimSiamLoss(torch.nn.Module):
    """Symmetric SimSiam loss; ``forward(p1, p2, z1, z2)`` stops the gradient on z."""

    def forward(self, p1, p2, z1, z2) -> torch.Tensor:
        return Fd.simsiam_loss(p1, p2, z1, z2)
