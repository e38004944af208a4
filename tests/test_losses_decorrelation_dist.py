"""gather_distributed=True with 2 gloo ranks: every rank's loss equals the
single-process loss on the concatenated batch, and rank r's input gradient /
world_size equals the single-process gradient rows (fastrl.distributed)."""
from __future__ import annotations

import pytest
import torch

from fastrl.losses import BarlowTwinsLoss, VICRegLoss, barlow_twins_loss, vicreg_loss
from tests.dist_utils import run_distributed

SPLIT = (5, 4)  # uneven shards


def _losses():
    return {
        "barlow": lambda a, b, dist: barlow_twins_loss(a, b, 0.01, gather_distributed=dist),
        "barlow_module": lambda a, b, dist: BarlowTwinsLoss(gather_distributed=dist)(a, b),
        "vicreg": lambda a, b, dist: vicreg_loss(a, b, 2.0, 3.0, 0.5, gather_distributed=dist),
        "vicreg_module": lambda a, b, dist: VICRegLoss(gather_distributed=dist)(a, b),
    }


def _run_case(z1, z2, dtype, rank, distributed):
    """Loss and input grads of every loss on this rank's shard (or the full batch)."""
    lo, hi = (sum(SPLIT[:rank]), sum(SPLIT[:rank + 1])) if distributed else (0, z1.shape[0])
    out = {}
    for name, fn in _losses().items():
        a = z1[lo:hi].to(dtype).clone().requires_grad_()
        b = z2[lo:hi].to(dtype).clone().requires_grad_()
        loss = fn(a, b, distributed)
        (loss * 0.7).backward()
        out[name] = (loss.detach().double(), a.grad.double(), b.grad.double())
    return out


def _worker(rank, world, cases):
    return [_run_case(z1, z2, dtype, rank, True) for z1, z2, dtype in cases]


def _cases():
    g = torch.Generator().manual_seed(0)
    cases = []
    for d in (6, 12):  # N = 9 >= D: cross form; N < D: gram form
        z1 = torch.randn(sum(SPLIT), d, generator=g, dtype=torch.float64)
        z2 = 0.5 * z1 + torch.randn(sum(SPLIT), d, generator=g, dtype=torch.float64)
        cases += [(z1, z2, torch.float64), (z1, z2, torch.float32)]
    return cases


@pytest.mark.distributed
def test_gather_distributed_matches_single_process():
    cases = _cases()
    per_rank = run_distributed(_worker, cases, world_size=2)
    for i, (z1, z2, dtype) in enumerate(cases):
        single = _run_case(z1, z2, dtype, 0, False)
        # measured: the gathered computation reproduces the single-process one bit for bit;
        # allow ~3 ulps of the dtype for a different reduction order
        tol = 1e-15 if dtype == torch.float64 else 4e-7
        for name, (loss, ga, gb) in single.items():
            lo = 0
            for rank in range(2):
                r_loss, r_ga, r_gb = per_rank[rank][i][name]
                hi = lo + SPLIT[rank]
                assert abs(float(r_loss - loss)) <= tol * abs(float(loss)), (name, dtype)
                for got, ref in ((r_ga / 2, ga[lo:hi]), (r_gb / 2, gb[lo:hi])):
                    torch.testing.assert_close(got, ref, rtol=tol, atol=tol * float(ref.abs().max()))
                lo = hi
