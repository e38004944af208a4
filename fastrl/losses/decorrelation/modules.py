"""nn.Module wrappers with lightly's constructor signatures."""
from __future__ import annotations

import torch

from fastrl import distributed as fdist

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
        fdist.check_gather_available(gather_distributed)
        self.lambda_param = lambda_param
        self.gather_distributed = gather_distributed
        self.eps = eps

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return Fd.barlow_twins_loss(z_a, z_b, self.lambda_param, eps=self.eps,
                                    gather_distributed=self.gather_distributed)


class VICRegInputError(ValueError, AssertionError):
    """Bad VICReg input: a ``ValueError`` that is also the ``AssertionError``
    lightly's ``VICRegLoss`` raises (so code catching either keeps working)."""


class VICRegLoss(torch.nn.Module):
    """VICReg loss (drop-in for ``lightly.loss.VICRegLoss``).

    Inputs ``(batch, ..., dim)`` (VICRegL's local features) are handled as in
    lightly: invariance is the MSE over all elements; variance and covariance
    are computed per position of the middle axes (over the batch) and averaged.

    Parameters
    ----------
    lambda_param, mu_param, nu_param : float
        Invariance, variance and covariance weights (25, 25, 1).
    gather_distributed : bool
        Use the global batch of all ranks for all three terms.
    eps : float
        Variance epsilon.

    ``forward(z_a, z_b)`` with [N, D] or [N, ..., D] inputs returns a 0-d loss;
    ``terms(z_a, z_b)`` returns the unweighted (invariance, variance, covariance).
    """

    def __init__(self, lambda_param: float = 25.0, mu_param: float = 25.0, nu_param: float = 1.0,
                 gather_distributed: bool = False, eps: float = 1e-4):
        super().__init__()
        fdist.check_gather_available(gather_distributed)
        self.lambda_param = lambda_param
        self.mu_param = mu_param
        self.nu_param = nu_param
        self.gather_distributed = gather_distributed
        self.eps = eps

    @staticmethod
    def _check(z_a, z_b) -> None:
        if isinstance(z_a, torch.Tensor) and isinstance(z_b, torch.Tensor) and z_a.dim() >= 2:
            if z_a.shape[0] < 2 or z_b.shape[0] < 2:
                raise VICRegInputError(f"z_a and z_b need a batch of at least 2 rows, got shapes "
                                       f"{tuple(z_a.shape)} and {tuple(z_b.shape)}")
            if z_a.shape != z_b.shape:
                raise VICRegInputError(f"z_a and z_b must have the same shape, got {tuple(z_a.shape)} and "
                                       f"{tuple(z_b.shape)}")

    def terms(self, z_a: torch.Tensor, z_b: torch.Tensor):
        self._check(z_a, z_b)
        if isinstance(z_a, torch.Tensor) and z_a.dim() > 2:
            # one [batch, dim] problem per position of the middle axes; equal sizes, so means of means
            za = z_a.reshape(z_a.shape[0], -1, z_a.shape[-1])
            zb = z_b.reshape(z_b.shape[0], -1, z_b.shape[-1])
            per = [Fd.vicreg_terms(za[:, p], zb[:, p], self.eps, gather_distributed=self.gather_distributed)
                   for p in range(za.shape[1])]
            return tuple(torch.stack(t).mean() for t in zip(*per))
        return Fd.vicreg_terms(z_a, z_b, self.eps, gather_distributed=self.gather_distributed)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        self._check(z_a, z_b)
        if isinstance(z_a, torch.Tensor) and z_a.dim() > 2:
            inv, var, cov = self.terms(z_a, z_b)
            return self.lambda_param * inv + self.mu_param * var + self.nu_param * cov
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


class SymNegCosineSimilarityLoss(torch.nn.Module):
    """Symmetrised SimSiam loss (drop-in for lightly's ``SymNegCosineSimilarityLoss``).

    ``forward(out0, out1)`` with ``out0 = (z0, p0)`` and ``out1 = (z1, p1)``
    (projections z, predictions p, each [N, D]) returns
    ``-cos(p0, sg(z1)).mean() / 2 - cos(p1, sg(z0)).mean() / 2`` (cosine along
    the last axis, stop-gradient on z).
    """

    def _neg_cosine_simililarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``-cos(x, sg(y)).mean()`` along the last axis (lightly's helper, same name)."""
        return Fd.negative_cosine_similarity(x, y.detach(), -1)

    def forward(self, out0, out1) -> torch.Tensor:
        for out, name in ((out0, "out0"), (out1, "out1")):
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise ValueError(f"{name} must be a (z, p) pair of tensors, got {type(out).__name__}")
        (z0, p0), (z1, p1) = out0, out1
        return self._neg_cosine_simililarity(p0, z1) / 2 + self._neg_cosine_simililarity(p1, z0) / 2
