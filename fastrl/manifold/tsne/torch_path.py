"""t-SNE on torch tensors: the GPU path (Triton kernels for the gradient) and
its chunked-torch fallback. The affinities come from the CPU pipeline; only
the optimisation runs on the tensors' device.

Gradient convention as in :mod:`fastrl.manifold.tsne.gradients`: the step is
on ``A - R / Z`` (the KL gradient over 4); the repulsion is exact (tiled,
O(N^2) work and O(N d) memory), which a GPU does for 70k points in
milliseconds per iteration.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from fastrl._dispatch import use_triton


class TorchP:
    """CSR affinities on a device (int64 indptr, int32 indices, float32 data)."""

    def __init__(self, P, device):
        P = sp.csr_matrix(P)
        self.shape = P.shape
        self.indptr = torch.as_tensor(P.indptr.astype(np.int64), device=device)
        self.indices = torch.as_tensor(P.indices.astype(np.int32), device=device)
        self.data = torch.as_tensor(P.data.astype(np.float32), device=device)
        self.rows = torch.repeat_interleave(torch.arange(P.shape[0], device=device),
                                            self.indptr[1:] - self.indptr[:-1])


def _attractive_torch(P: TorchP, Y, Y_ref, dof, exaggeration):
    diff = Y[P.rows] - Y_ref[P.indices.long()]
    u = 1.0 / (1.0 + (diff * diff).sum(1) / dof)
    A = torch.zeros_like(Y).index_add_(0, P.rows, (P.data * u)[:, None] * diff)
    return A * exaggeration


def _repulsive_torch(Y, dof, chunk: int = 2048):
    n = Y.shape[0]
    R = torch.empty_like(Y)
    z = torch.empty(n, dtype=Y.dtype, device=Y.device)
    for s in range(0, n, chunk):
        yi = Y[s:s + chunk]
        diff = yi[:, None, :] - Y[None, :, :]
        u = 1.0 / (1.0 + (diff * diff).sum(-1) / dof)
        w = u if dof == 1.0 else u ** dof
        idx = torch.arange(s, s + yi.shape[0], device=Y.device)
        w[idx - s, idx] = 0.0
        z[s:s + chunk] = w.sum(1)
        R[s:s + chunk] = ((w * u)[:, :, None] * diff).sum(1)
    return R, z


def tsne_gradient(P: TorchP, Y: torch.Tensor, *, dof: float = 1.0, exaggeration: float = 1.0,
                  eval_kl: bool = False):
    """KL divergence (optional) and the gradient over 4 for an embedding tensor.

    Parameters
    ----------
    P : TorchP
        Joint affinities on Y's device.
    Y : float32 tensor, shape (N, d)

    Returns
    -------
    kl : float or None
    grad : float32 tensor, shape (N, d)
        ``A - R / Z`` (``dKL/dY / 4``).
    """
    if use_triton(Y):
        from fastrl.manifold.tsne.triton_kernels import attractive_triton, repulsive_triton
        A = attractive_triton(P.indptr, P.indices, P.data, Y, dof=dof, exaggeration=exaggeration)
        R, z = repulsive_triton(Y, dof=dof)
    else:
        A = _attractive_torch(P, Y, Y, dof, exaggeration)
        R, z = _repulsive_torch(Y, dof)
    Z = z.double().sum()
    grad = A - R / Z.float()
    kl = None
    if eval_kl:
        diff = Y[P.rows] - Y[P.indices.long()]
        logu = -torch.log1p((diff * diff).sum(1).double() / dof)
        p = P.data.double()
        kl = float((p * (torch.log(p.clamp_min(1e-300)) - dof * logu)).sum() + torch.log(Z))
    return kl, grad


class TorchGradientDescent:
    """Gains + momentum update on tensors (same rule as the compiled step)."""

    def __init__(self, Y: torch.Tensor):
        self.update = torch.zeros_like(Y)
        self.gains = torch.ones_like(Y)

    def step(self, Y, grad, *, learning_rate, momentum, min_gain=0.01, max_step_norm=5.0, center=True,
             max_grad_norm=None):
        flipped = torch.sign(self.update) != torch.sign(grad)
        self.gains = torch.where(flipped, self.gains + 0.2, self.gains * 0.8 + min_gain)
        self.update = momentum * self.update - learning_rate * self.gains * grad
        if max_step_norm:
            norm = self.update.norm(dim=1, keepdim=True)
            self.update = torch.where(norm > max_step_norm, self.update * (max_step_norm / norm), self.update)
        Y += self.update
        if center:
            Y -= Y.mean(0, keepdim=True)


class TorchObjective:
    """Objective adapter for :func:`fastrl.manifold.tsne.optimizer.run_phase`."""

    def __init__(self, P, device, dof: float = 1.0):
        self.P = TorchP(P, device)
        self.dof = float(dof)

    def __call__(self, Y, exaggeration, eval_kl):
        return tsne_gradient(self.P, Y, dof=self.dof, exaggeration=exaggeration, eval_kl=eval_kl)
