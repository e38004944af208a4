"""gather_distributed=True on 2 gloo ranks equals the single-process loss on
the concatenated batch; each rank's input grad / world_size equals the
single-process grad rows (fastrl.distributed convention)."""
from __future__ import annotations

import pytest
import torch

from dist_utils import run_distributed
from fastrl import use_backend
from fastrl.losses import clip_loss, info_nce, nt_xent

N_LOCAL, D = 6, 20


def _cases():
    return {
        "nt_xent": lambda a, b, t, g: nt_xent(a, b, t, gather_distributed=g),
        "clip": lambda a, b, t, g: clip_loss(a, b, 1.0 / t, gather_distributed=g),
        "info_nce": lambda a, b, t, g: info_nce(a, b, t, gather_distributed=g),
        "info_nce_queue": lambda a, b, t, g: info_nce(
            a, b, t, queue=torch.linspace(-1, 1, 4 * D).reshape(4, D).to(a), gather_distributed=g),
    }


def _loss_and_grads(fn, a, b, gather):
    a = a.clone().requires_grad_()
    b = b.clone().requires_grad_()
    t = torch.tensor(0.2, requires_grad=True)
    loss = fn(a, b, t, gather)
    (loss * 1.3).backward()
    return {"loss": loss.detach(), "a": a.grad, "b": b.grad, "t": t.grad}


def _worker(rank, world, payload):
    a, b, backend = payload
    lo, hi = rank * N_LOCAL, (rank + 1) * N_LOCAL
    with use_backend(backend):
        return {name: _loss_and_grads(fn, a[lo:hi], b[lo:hi], True) for name, fn in _cases().items()}


@pytest.mark.distributed
def test_gathered_losses_match_single_process(backend):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2 * N_LOCAL, D, generator=g)
    b = torch.randn(2 * N_LOCAL, D, generator=g)
    results = run_distributed(_worker, (a, b, backend), world_size=2)
    for name, fn in _cases().items():
        single = _loss_and_grads(fn, a, b, False)
        loss = sum(r[name]["loss"] for r in results) / 2
        torch.testing.assert_close(loss, single["loss"], rtol=1e-5, atol=1e-6)
        for key in ("a", "b"):
            got = torch.cat([r[name][key] for r in results]) / 2
            atol = 1e-5 * float(single[key].abs().max())  # fp32 sums in another order
            torch.testing.assert_close(got, single[key], rtol=1e-4, atol=atol, msg=f"{name} d{key}")
        dt = sum(r[name]["t"] for r in results) / 2
        torch.testing.assert_close(dt, single["t"], rtol=1e-4, atol=1e-6, msg=f"{name} dtemperature")
