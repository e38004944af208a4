"""lightly drop-in gaps of the decorrelation family: VICRegLoss on
(batch, ..., dim) inputs (VICRegL) and SymNegCosineSimilarityLoss.
Oracles: the formulas written out in fp64 (and lightly's VICRegLoss when loadable)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dist_utils import require_peer
from fastrl.losses import SymNegCosineSimilarityLoss, VICRegLoss


def _vicreg_nd_fp64(x, y, lam=25.0, mu=25.0, nu=1.0, eps=1e-4):
    """VICReg over (batch, ..., dim) by the definition: per middle position p,
    variance and covariance over the batch; averaged over positions."""
    x, y = x.double(), y.double()
    inv = ((x - y) ** 2).mean()
    xs = x.reshape(x.shape[0], -1, x.shape[-1])
    ys = y.reshape(y.shape[0], -1, y.shape[-1])
    var, cov = [], []
    for p in range(xs.shape[1]):
        v = c = 0.0
        for z in (xs[:, p], ys[:, p]):
            zc = z - z.mean(0)
            v = v + F.relu(1 - torch.sqrt(zc.var(0) + eps)).mean() / 2
            m = zc.T @ zc / (z.shape[0] - 1)
            c = c + (m.pow(2).sum() - m.diagonal().pow(2).sum()) / z.shape[1]
        var.append(v)
        cov.append(c)
    return lam * inv + mu * torch.stack(var).mean() + nu * torch.stack(cov).mean()


@pytest.mark.parametrize("shape", [(6, 5, 7), (4, 2, 3, 9), (9, 17)])
def test_vicreg_nd_matches_definition(shape):
    g = torch.Generator().manual_seed(len(shape))
    x = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    loss = VICRegLoss(nu_param=0.5)(x, y)
    want = _vicreg_nd_fp64(x, y, nu=0.5)
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-12)
    g1 = torch.autograd.grad(loss * 1.3, [x, y])
    g2 = torch.autograd.grad(want * 1.3, [x, y])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # fp32: measured error against fp64 ~1e-7 relative; 3x margin-ish
    l32 = VICRegLoss(nu_param=0.5)(x.detach().float(), y.detach().float())
    assert abs(float(l32) - float(want)) <= 5e-6 * abs(float(want))


def test_vicreg_nd_matches_lightly():
    lightly_vicreg = require_peer("lightly_vicreg")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 4, 11, generator=g), torch.randn(5, 4, 11, generator=g)
    torch.testing.assert_close(VICRegLoss()(x, y), lightly_vicreg()(x, y), rtol=2e-6, atol=1e-6)


def test_vicreg_bad_inputs_are_value_and_assertion_errors():
    for a, b in ((torch.randn(1, 8), torch.randn(1, 8)), (torch.randn(3, 8), torch.randn(3, 4)),
                 (torch.randn(3, 2, 8), torch.randn(3, 2, 4))):
        for exc in (ValueError, AssertionError):
            with pytest.raises(exc, match="z_a and z_b"):
                VICRegLoss()(a, b)


def test_sym_neg_cosine_similarity():
    g = torch.Generator().manual_seed(1)
    z0, p0, z1, p1 = (torch.randn(7, 16, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(4))
    loss = SymNegCosineSimilarityLoss()((z0, p0), (z1, p1))

    def cos(a, b):  # explicit row cosines
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))

    want = -(cos(p0, z1).mean() + cos(p1, z0).mean()) / 2
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-12)
    loss.backward()
    assert z0.grad is None and z1.grad is None  # stop-gradient on the projections
    # the gradients are lightly's: its SymNegCosineSimilarityLoss (lightly < 1.5) is the mean of
    # NegativeCosineSimilarity(p0, z1.detach()) and NegativeCosineSimilarity(p1, z0.detach())
    lightly_negcos = require_peer("lightly_negcos")()
    q0, q1 = p0.detach().clone().requires_grad_(), p1.detach().clone().requires_grad_()
    ref = (lightly_negcos(q0, z1.detach()) + lightly_negcos(q1, z0.detach())) / 2
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    for got, exp in ((p0.grad, q0.grad), (p1.grad, q1.grad)):
        assert float(exp.abs().max()) > 0
        torch.testing.assert_close(got, exp, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="out0"):
        SymNegCosineSimilarityLoss()(z0, (z1, p1))
