"""nn.Module wrappers with the constructor names of lightly and open_clip,
the MoCo queue and the momentum (EMA) update."""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from fastrl import distributed as fdist
from fastrl._validation import check_choice, check_int, check_positive, check_tensor

from .functional import REDUCTIONS, clip_loss, info_nce, moco_loss, nt_xent


class MoCoQueue(nn.Module):
    """Ring buffer of ``size`` negatives of dimension ``dim`` (a buffer, so it
    follows ``.to()`` and the state dict). Starts with random unit vectors,
    like lightly's memory bank.

    Parameters
    ----------
    size : int
        Number of rows K.
    dim : int
        Feature dimension D.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        check_int(size, "size", low=1)
        check_int(dim, "dim", low=1)
        self.size, self.dim = int(size), int(dim)
        self.register_buffer("bank", nn.functional.normalize(torch.randn(self.size, self.dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def queue(self) -> torch.Tensor:
        """The current negatives [K, D] (a detached view)."""
        return self.bank.detach()

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Overwrite the oldest rows with ``keys`` [B, D] (wrapping around)."""
        check_tensor(keys, "keys", ndim=2)
        if keys.shape[1] != self.dim:
            raise ValueError(f"keys must have dim={self.dim} columns, got shape {tuple(keys.shape)}")
        keys = keys.detach().to(self.bank)[-self.size:]
        b, p = keys.shape[0], int(self.ptr)
        idx = (torch.arange(b, device=self.bank.device) + p) % self.size
        self.bank[idx] = keys
        self.ptr.fill_((p + b) % self.size)


def momentum_update(online, target, m: float) -> None:
    """EMA ``target = m * target + (1 - m) * online`` over all parameters,
    with torch's fused ``_foreach`` ops (no Python loop over tensors).

    Parameters
    ----------
    online, target : nn.Module or iterable of torch.Tensor
        Matching parameters (same order and shapes).
    m : float in [0, 1]
        Momentum.
    """
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0.0 <= float(m) <= 1.0:
        raise ValueError(f"m must be a number in [0, 1], got {m!r}")
    src = list(online.parameters() if isinstance(online, nn.Module) else online)
    dst = list(target.parameters() if isinstance(target, nn.Module) else target)
    if len(src) != len(dst):
        raise ValueError(f"online and target have different numbers of parameters: {len(src)} and {len(dst)}")
    for a, b in ((s, d) for s, d in zip(src, dst) if s.shape != d.shape):
        raise ValueError(f"online and target parameter shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    with torch.no_grad():
        torch._foreach_lerp_([d.data for d in dst], [s.data for s in src], 1.0 - float(m))


def _bank_shape(memory_bank_size) -> tuple[int, int | None]:
    if isinstance(memory_bank_size, Sequence) and not isinstance(memory_bank_size, str):
        if len(memory_bank_size) != 2:
            raise ValueError(f"memory_bank_size must be an int or (size, dim), got {memory_bank_size!r}")
        return check_int(memory_bank_size[0], "memory_bank_size", low=0), check_int(
            memory_bank_size[1], "memory_bank_size[1]", low=1)
    return check_int(memory_bank_size, "memory_bank_size", low=0), None


class _BankMixin(nn.Module):
    """Lazily created :class:`MoCoQueue` fed with (gathered) keys after each training step."""

    def _init_bank(self, memory_bank_size, gather_distributed: bool) -> None:
        self.bank_size, dim = _bank_shape(memory_bank_size)
        self.gather_distributed = bool(gather_distributed)
        self.memory_bank = MoCoQueue(self.bank_size, dim) if self.bank_size and dim else None

    def _negatives(self, key: torch.Tensor) -> torch.Tensor | None:
        if not self.bank_size:
            return None
        if self.memory_bank is None:
            self.memory_bank = MoCoQueue(self.bank_size, key.shape[1]).to(key.device)
        return self.memory_bank.queue.clone()

    def _update(self, key: torch.Tensor, training: bool) -> None:
        if self.memory_bank is not None and training:
            keys = key.detach()
            if self.gather_distributed and fdist.is_distributed():
                keys = fdist.gather(keys)
            self.memory_bank.enqueue(nn.functional.normalize(keys.float(), dim=1))


class InfoNCELoss(_BankMixin):
    """Module form of :func:`info_nce`; with ``memory_bank_size > 0`` the keys of
    earlier steps are extra negatives (in-batch negatives are kept).

    Parameters
    ----------
    temperature : float
    memory_bank_size : int or (size, dim)
    gather_distributed : bool
    normalize : bool
    reduction : {"mean", "sum", "none"}
    """

    def __init__(self, temperature: float = 0.1, memory_bank_size: Union[int, Sequence[int]] = 0,
                 gather_distributed: bool = False, normalize: bool = True, reduction: str = "mean"):
        super().__init__()
        check_positive(temperature, "temperature")
        self.temperature, self.normalize = temperature, normalize
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)
        self._init_bank(memory_bank_size, gather_distributed)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        queue = self._negatives(key)
        loss = info_nce(query, key, self.temperature, queue=queue, normalize=self.normalize,
                        reduction=self.reduction, gather_distributed=self.gather_distributed)
        self._update(key, query.requires_grad)
        return loss


class MoCoLoss(_BankMixin):
    """MoCo: positive ``key[i]``, negatives from a queue of past keys
    (lightly ``NTXentLoss(memory_bank_size=K)``). The queue is read before
    and updated after each training forward.

    Parameters
    ----------
    temperature : float
    memory_bank_size : int or (size, dim), > 0
    gather_distributed : bool
        Enqueue the keys of all ranks.
    normalize : bool
    """

    def __init__(self, temperature: float = 0.2, memory_bank_size: Union[int, Sequence[int]] = 4096,
                 gather_distributed: bool = False, normalize: bool = True):
        super().__init__()
        check_positive(temperature, "temperature")
        self.temperature, self.normalize = temperature, normalize
        self._init_bank(memory_bank_size, gather_distributed)
        if not self.bank_size:
            raise ValueError("memory_bank_size must be > 0 for MoCoLoss")

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        queue = self._negatives(key)
        loss = moco_loss(query, key, queue.to(query.dtype), self.temperature, normalize=self.normalize)
        self._update(key, query.requires_grad)
        return loss


class NTXentLoss(nn.Module):
    """lightly-compatible NT-Xent: SimCLR with ``memory_bank_size=0`` (default),
    MoCo (:class:`MoCoLoss`) with a memory bank.

    Parameters
    ----------
    temperature : float
    memory_bank_size : int or (size, dim)
    gather_distributed : bool
    """

    def __init__(self, temperature: float = 0.5, memory_bank_size: Union[int, Sequence[int]] = 0,
                 gather_distributed: bool = False):
        super().__init__()
        check_positive(temperature, "temperature")
        self.temperature, self.gather_distributed = temperature, bool(gather_distributed)
        size, _ = _bank_shape(memory_bank_size)
        self.moco = MoCoLoss(temperature, memory_bank_size, gather_distributed) if size else None

    def forward(self, out0: torch.Tensor, out1: torch.Tensor) -> torch.Tensor:
        if self.moco is not None:
            return self.moco(out0, out1)
        return nt_xent(out0, out1, self.temperature, gather_distributed=self.gather_distributed)


class ClipLoss(nn.Module):
    """open_clip-compatible CLIP loss. Distributed runs (``world_size > 1`` or
    ``gather_distributed=True``) always use the ``local_loss=True,
    gather_with_grad=True`` layout, whose gradients are exact.

    Parameters
    ----------
    local_loss, gather_with_grad, cache_labels, rank, world_size : as in open_clip
        (accepted for compatibility; the layout above is always used).
    use_horovod : bool
        Not supported (raises).
    gather_distributed : bool
    """

    def __init__(self, local_loss: bool = False, gather_with_grad: bool = False, cache_labels: bool = False,
                 rank: int = 0, world_size: int = 1, use_horovod: bool = False, gather_distributed: bool = False):
        super().__init__()
        if use_horovod:
            raise ValueError("use_horovod=True is not supported by fastrl.ClipLoss; use torch.distributed")
        self.rank, self.world_size = rank, world_size
        self.local_loss, self.gather_with_grad, self.cache_labels = local_loss, gather_with_grad, cache_labels
        self.gather_distributed = bool(gather_distributed) or int(world_size) > 1

    def forward(self, image_features, text_features, logit_scale, logit_bias=None, output_dict: bool = False):
        loss = clip_loss(image_features, text_features, logit_scale, logit_bias,
                         gather_distributed=self.gather_distributed)
        return {"contrastive_loss": loss} if output_dict else loss

