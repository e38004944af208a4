"""torch.distributed helpers with correct gradients.

Conventions (the same as DistributedDataParallel): every rank computes a loss
and calls ``backward``; DDP then averages parameter gradients over ranks. With
these helpers the gradient that reaches rank r's local inputs is the sum over
ranks of each rank's loss gradient, so after DDP's averaging the update equals
the single-process update on the concatenated batch (no 1/world_size error).
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def check_gather_available(gather_distributed: bool) -> None:
    """lightly's early check at construction: ``gather_distributed=True`` needs
    torch.distributed (``ValueError`` when the build lacks it)."""
    if gather_distributed and not dist.is_available():
        raise ValueError("gather_distributed is True but torch.distributed is not available. Please set "
                         "gather_distributed=False or install a torch version with distributed support.")


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 (uneven sizes allowed); backward sums the
    gradients of every rank and returns this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ws = dist.get_world_size()
        n_local = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
        sizes = [torch.zeros_like(n_local) for _ in range(ws)]
        dist.all_gather(sizes, n_local)
        sizes = [int(s.item()) for s in sizes]
        n_max = max(sizes)
        padded = x.new_zeros((n_max,) + tuple(x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(ws)]
        dist.all_gather(parts, padded.contiguous())
        ctx.sizes = sizes
        ctx.rank = dist.get_rank()
        return torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start: start + ctx.sizes[ctx.rank]]


class _AllReduceSumWithGrad(torch.autograd.Function):
    """all_reduce(SUM) whose backward is again an all_reduce(SUM)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.contiguous().clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = grad.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` [n_r, ...] from every rank along dim 0, with gradients.

    Returns ``x`` itself when not running distributed.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum ``x`` over ranks, with gradients. Returns ``x`` when not distributed."""
    if not is_distributed():
        return x
    return _AllReduceSumWithGrad.apply(x)


def all_sizes(n_local: int, device=None) -> list[int]:
    """Number of rows on every rank (``[n_local]`` when not distributed)."""
    if not is_distributed():
        return [int(n_local)]
    t = torch.tensor([n_local], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, t)
    return [int(s.item()) for s in sizes]


def gather_offset(n_local: int, device=None) -> int:
    """Index of this rank's first row in the gathered batch."""
    return sum(all_sizes(n_local, device)[: rank()])


def _exchange(from_rank: int, to_rank: int, tensor: torch.Tensor) -> torch.Tensor:
    recv = torch.empty_like(tensor)
    ops = [dist.P2POp(dist.isend, tensor.contiguous(), to_rank), dist.P2POp(dist.irecv, recv, from_rank)]
    for req in dist.batch_isend_irecv(ops):
        req.wait()
    return recv


def _exchange_bidir(left: int, right: int, to_left: torch.Tensor, to_right: torch.Tensor):
    from_left, from_right = torch.empty_like(to_right), torch.empty_like(to_left)
    ops = [dist.P2POp(dist.isend, to_right.contiguous(), right), dist.P2POp(dist.isend, to_left.contiguous(), left),
           dist.P2POp(dist.irecv, from_right, right), dist.P2POp(dist.irecv, from_left, left)]
    for req in dist.batch_isend_irecv(ops):
        req.wait()
    return from_right, from_left


class _NeighbourExchange(torch.autograd.Function):
    """Send to ``to_rank``, receive from ``from_rank``; the gradient travels back."""

    @staticmethod
    def forward(ctx, from_rank, to_rank, tensor):
        ctx.from_rank, ctx.to_rank = from_rank, to_rank
        return _exchange(from_rank, to_rank, tensor)

    @staticmethod
    def backward(ctx, grad):
        return None, None, _NeighbourExchange.apply(ctx.to_rank, ctx.from_rank, grad.contiguous())


class _NeighbourExchangeBidir(torch.autograd.Function):
    """Send ``to_left`` left and ``to_right`` right; returns (from_right, from_left)."""

    @staticmethod
    def forward(ctx, left, right, to_left, to_right):
        ctx.left, ctx.right = left, right
        return _exchange_bidir(left, right, to_left, to_right)

    @staticmethod
    def backward(ctx, g_from_right, g_from_left):
        # what came from the right goes back right (it is "to_left" seen from there)
        g_to_left, g_to_right = _NeighbourExchangeBidir.apply(ctx.right, ctx.left, g_from_right.contiguous(),
                                                              g_from_left.contiguous())
        return None, None, g_to_left, g_to_right


def neighbour_exchange(from_rank: int, to_rank: int, tensor: torch.Tensor) -> torch.Tensor:
    """Send ``tensor`` to ``to_rank`` and return the one received from ``from_rank``
    (same shape), with gradients sent back the other way (open_clip's ring)."""
    return _NeighbourExchange.apply(from_rank, to_rank, tensor)


def neighbour_exchange_bidir(left: int, right: int, to_left: torch.Tensor, to_right: torch.Tensor):
    """Send ``to_left`` to ``left`` and ``to_right`` to ``right`` at once; returns
    ``(from_right, from_left)``, with gradients."""
    return _NeighbourExchangeBidir.apply(left, right, to_left, to_right)
