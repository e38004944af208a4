"""Run a function in 2 gloo processes on CPU and collect the results.

Usage in a test::

    def _worker(rank, world, payload):   # module-level, picklable
        ...                               # torch.distributed is initialised
        return {"loss": ..., "grad": ...}

    results = run_distributed(_worker, payload, world_size=2)   # list by rank
"""
from __future__ import annotations

import os
import socket
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, world, port, fn, payload, outdir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = fn(rank, world, payload)
        torch.save(result, os.path.join(outdir, f"rank{rank}.pt"))
        # no rank tears gloo down while a peer may still have point-to-point work in flight
        # (an early destroy_process_group can abort the other process)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_distributed(fn, payload, world_size: int = 2):
    """Spawn ``world_size`` gloo ranks running ``fn(rank, world, payload)``."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as outdir:
        mp.spawn(_entry, args=(world_size, port, fn, payload, outdir), nprocs=world_size, join=True)
        return [torch.load(os.path.join(outdir, f"rank{r}.pt")) for r in range(world_size)]


def require_peer(name: str):
    """The peer class from :func:`fastrl.losses.contrastive.reference.load_peer`.

    Skips the test when the peer cannot be loaded, except in CI (the ``CI``
    environment variable is set), where peer parity must run: there it fails.
    """
    import pytest

    from fastrl.losses.contrastive.reference import load_peer

    peer = load_peer(name)
    if peer is None:
        msg = f"peer {name!r} cannot be loaded (pip install --no-deps lightly==1.6.0 open_clip_torch==3.3.0)"
        if os.environ.get("CI"):
            pytest.fail(msg + " and CI is set: peer parity must run in CI")
        pytest.skip(msg)
    return peer
