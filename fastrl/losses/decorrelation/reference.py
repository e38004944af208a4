"""Naive references: the official formulas, written out with D x D matrices.

These follow the authors' code line by line (Barlow Twins ``main.py``, VICReg
``main_vicreg.py``, SimSiam ``D(p, z)``) and are used by the tests and the
benchmark as ground truth (run them in float64 for tight comparisons).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def off_diagonal(x: torch.Tensor) -> torch.Tensor:
    """Flattened off-diagonal entries of a square matrix (official helper)."""
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_twins_reference(z1: torch.Tensor, z2: torch.Tensor, lambda_: float = 0.0051,
                           eps: float = 1e-5) -> torch.Tensor:
    """Official Barlow Twins loss: BatchNorm1d(affine=False) on each view,
    C = z1n^T z2n / N, sum (1 - C_ii)^2 + lambda * sum_{i!=j} C_ij^2.

    z1, z2 : [N, D]. Returns a 0-d tensor.
    """
    n = z1.shape[0]
    bn1 = F.batch_norm(z1, None, None, training=True, eps=eps)
    bn2 = F.batch_norm(z2, None, None, training=True, eps=eps)
    c = bn1.T @ bn2 / n
    on_diag = torch.diagonal(c).add(-1).pow(2).sum()
    off_diag = off_diagonal(c).pow(2).sum()
    return on_diag + lambda_ * off_diag


def vicreg_terms_reference(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-4):
    """Official VICReg terms (invariance, variance, covariance), unweighted.

    x, y : [N, D]. Returns three 0-d tensors.
    """
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + eps)
    std_y = torch.sqrt(y.var(dim=0) + eps)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    cov_loss = off_diagonal(cov_x).pow(2).sum() / d + off_diagonal(cov_y).pow(2).sum() / d
    return repr_loss, std_loss, cov_loss


def vicreg_reference(x: torch.Tensor, y: torch.Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                     cov_coeff: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Official VICReg loss: sim * MSE + std * variance hinge + cov * covariance."""
    inv, var, cov = vicreg_terms_reference(x, y, eps)
    return sim_coeff * inv + std_coeff * var + cov_coeff * cov


def negative_cosine_reference(p: torch.Tensor, z: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """-cos(p, z) averaged over the batch (lightly's NegativeCosineSimilarity)."""
    return -F.cosine_similarity(p, z, dim=dim, eps=eps).mean()


def simsiam_reference(p1, p2, z1, z2) -> torch.Tensor:
    """SimSiam: D(p1, z2) / 2 + D(p2, z1) / 2 with D(p, z) = -cos(p, stopgrad(z))."""
    return 0.5 * negative_cosine_reference(p1, z2.detach()) + 0.5 * negative_cosine_reference(p2, z1.detach())
