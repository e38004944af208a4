"""nn.Module wrappers with the constructor names of lightly and open_clip,
the MoCo queue and the momentum (EMA) update."""
from __future__ import annotations

import numbers
from typing import Sequence, Union

import numpy as np
import torch
from torch import nn

from fastrl import distributed as fdist
from fastrl._validation import check_choice, check_int, check_positive, check_tensor

from .functional import REDUCTIONS, _clip, _gather_open_clip, clip_loss, info_nce, moco_loss, nt_xent


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
        check_tensor(keys, "keys", ndim=2, finite=False)
        if keys.shape[1] != self.dim:
            raise ValueError(f"keys must have dim={self.dim} columns, got shape {tuple(keys.shape)}")
        # one registered op (the NaN scan and the pointer read inside): no graph break under torch.compile
        _queue_enqueue(self.bank, self.ptr, keys.detach())


@torch.library.custom_op("fastrl::queue_enqueue", mutates_args=("bank", "ptr"))
def _queue_enqueue(bank: torch.Tensor, ptr: torch.Tensor, keys: torch.Tensor) -> None:
    """Write ``keys`` (finite, checked here) into the ring buffer ``bank`` at ``ptr`` and advance it."""
    check_tensor(keys, "keys", ndim=2)
    size = bank.shape[0]
    keys = keys.to(bank)[-size:]
    b, p = keys.shape[0], int(ptr)
    idx = (torch.arange(b, device=bank.device) + p) % size
    bank[idx] = keys
    ptr.fill_((p + b) % size)


@_queue_enqueue.register_fake
def _(bank, ptr, keys):
    return None


class MemoryBankModule(nn.Module):
    """Drop-in for lightly 1.6's ``MemoryBankModule`` (a FIFO of past features).

    Parameters
    ----------
    size : int or (num_features, dim)
        ``0`` disables the bank; a bare positive int is rejected (the feature
        dimension is needed), as are negative entries and other lengths.
    gather_distributed : bool
        Enqueue the features of all ranks (torch.distributed).
    feature_dim_first : bool
        ``forward`` returns the bank as [dim, num_features] (lightly's default)
        instead of [num_features, dim].

    ``forward(output, labels=None, update=False)`` returns ``(output, bank)``
    (``bank`` is None for size 0; a detached copy taken before the update)
    and, with ``update=True``, enqueues ``output``. As in lightly, a batch that
    reaches the end of the bank fills it to the end and the pointer restarts
    at 0 (the batch's remaining rows are dropped).
    """

    def __init__(self, size: Union[int, Sequence[int]], gather_distributed: bool = False,
                 feature_dim_first: bool = True):
        super().__init__()
        size_tuple = (size,) if isinstance(size, numbers.Integral) else tuple(size)
        if any(int(x) < 0 for x in size_tuple):
            raise ValueError(f"Illegal memory bank size {size}, all entries must be non-negative.")
        if isinstance(size, numbers.Integral) and size > 0:
            raise ValueError(f"Memory bank size 'size={size}' does not specify the feature dimension. "
                             f"Set it with 'size=({size}, dim)', or pass 'size=0' to disable the memory bank.")
        if size_tuple != (0,) and len(size_tuple) != 2:
            raise ValueError(f"Illegal memory bank size {size}, expected a (num_features, dim) tuple, "
                             "or 'size=0' to disable the memory bank.")
        fdist.check_gather_available(gather_distributed)
        self.size = tuple(int(x) for x in size_tuple)
        self.gather_distributed = bool(gather_distributed)
        self.feature_dim_first = bool(feature_dim_first)
        bank = torch.empty(self.size, dtype=torch.float)
        if len(self.size) > 1:
            bank = nn.functional.normalize(torch.randn(self.size), dim=-1)
        self.register_buffer("bank", bank, persistent=False)
        self.register_buffer("bank_ptr", torch.zeros(1, dtype=torch.long), persistent=False)

    def forward(self, output: torch.Tensor, labels=None, update: bool = False):
        if self.size[0] == 0:
            return output, None
        bank = self.bank.clone().detach()
        if self.feature_dim_first:
            bank = bank.transpose(0, -1)
        if update:
            self._dequeue_and_enqueue(output)
        return output, bank

    @torch.no_grad()
    def _dequeue_and_enqueue(self, batch: torch.Tensor) -> None:
        if self.gather_distributed and fdist.is_distributed():
            batch = fdist.gather(batch.detach())
        n, ptr = batch.shape[0], int(self.bank_ptr)
        if ptr + n >= self.size[0]:
            self.bank[ptr:] = batch[: self.size[0] - ptr].detach()
            self.bank_ptr.zero_()
        else:
            self.bank[ptr: ptr + n] = batch.detach()
            self.bank_ptr[0] = ptr + n


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
    if isinstance(m, (bool, np.bool_)) or not isinstance(m, numbers.Real) or not 0.0 <= float(m) <= 1.0:
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
        fdist.check_gather_available(gather_distributed)
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
        fdist.check_gather_available(gather_distributed)
        self.temperature, self.gather_distributed = temperature, bool(gather_distributed)
        size, _ = _bank_shape(memory_bank_size)
        self.moco = MoCoLoss(temperature, memory_bank_size, gather_distributed) if size else None

    def forward(self, out0: torch.Tensor, out1: torch.Tensor) -> torch.Tensor:
        if self.moco is not None:
            return self.moco(out0, out1)
        return nt_xent(out0, out1, self.temperature, gather_distributed=self.gather_distributed)


class ClipLoss(nn.Module):
    """open_clip-compatible CLIP loss (open_clip 3.3.0 semantics in every mode).

    With ``world_size > 1`` (torch.distributed initialised with that many
    ranks) the four combinations of ``local_loss`` and ``gather_with_grad``
    give open_clip's per-rank loss values and gradients (of both features and
    ``logit_scale``), computed by the tiled core without the N x N logits:

    * ``local_loss=False`` (default): every rank computes the loss of the whole
      gathered batch; without ``gather_with_grad`` only the rank's own rows get
      gradients, with it the gradients of all ranks are summed.
    * ``local_loss=True``: each rank's rows against all gathered rows (labels
      offset by ``rank``); without ``gather_with_grad`` the gathered keys carry
      no gradient.

    ``gather_distributed=True`` selects fastrl's memory-efficient layout
    (``local_loss=True, gather_with_grad=True`` whatever the two flags say),
    whose mean over ranks equals the single-process loss of the whole batch.

    Parameters
    ----------
    local_loss, gather_with_grad, cache_labels : bool
        As in open_clip (``cache_labels`` caches :meth:`get_ground_truth`).
    rank, world_size : int
        As in open_clip; with ``world_size > 1`` torch.distributed must be
        initialised with ``world_size`` ranks.
    use_horovod : bool
        Not supported (raises).
    gather_distributed : bool
    output_dict : bool
        Default of ``forward``'s ``output_dict`` (return ``{"contrastive_loss": loss}``).
    """

    def __init__(self, local_loss: bool = False, gather_with_grad: bool = False, cache_labels: bool = False,
                 rank: int = 0, world_size: int = 1, use_horovod: bool = False, gather_distributed: bool = False,
                 output_dict: bool = False):
        super().__init__()
        if use_horovod:
            raise ValueError("use_horovod=True is not supported by fastrl.ClipLoss; use torch.distributed")
        self.rank = check_int(rank, "rank", low=0)
        self.world_size = check_int(world_size, "world_size", low=1)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be < world_size={self.world_size}, got {self.rank}")
        self.local_loss, self.gather_with_grad = bool(local_loss), bool(gather_with_grad)
        self.cache_labels, self.use_horovod = bool(cache_labels), False
        self.gather_distributed = bool(gather_distributed)
        self.output_dict = bool(output_dict)
        self.prev_num_logits = 0
        self.labels = {}

    def _distributed(self) -> bool:
        if self.world_size == 1:
            return False
        if not fdist.is_distributed() or fdist.world_size() != self.world_size:
            raise ValueError(f"world_size={self.world_size} needs torch.distributed initialised with "
                             f"{self.world_size} ranks (found {fdist.world_size()})")
        if fdist.rank() != self.rank:
            raise ValueError(f"rank={self.rank} differs from torch.distributed's rank {fdist.rank()}")
        return True

    def get_ground_truth(self, device, num_logits: int) -> torch.Tensor:
        """open_clip's labels [num_logits] (offset by ``num_logits * rank`` for
        ``local_loss`` on several ranks), cached when ``cache_labels``."""
        if self.prev_num_logits != num_logits or device not in self.labels:
            labels = torch.arange(num_logits, device=device, dtype=torch.long)
            if self.world_size > 1 and self.local_loss:
                labels = labels + num_logits * self.rank
            if self.cache_labels:
                self.labels[device] = labels
                self.prev_num_logits = num_logits
            return labels
        return self.labels[device]

    def get_logits(self, image_features, text_features, logit_scale, logit_bias=None):
        """open_clip's ``(logits_per_image, logits_per_text)``.

        This builds the N x N (n x N with ``local_loss``) logits, as open_clip
        does: use it for inspection only; ``forward`` never builds them.
        """
        img, txt = image_features, text_features
        if self._distributed():
            img_all = _gather_open_clip(img, self.gather_with_grad, keep_local=not self.local_loss)
            txt_all = _gather_open_clip(txt, self.gather_with_grad, keep_local=not self.local_loss)
            if self.local_loss:
                per_image, per_text = logit_scale * img @ txt_all.T, logit_scale * txt @ img_all.T
            else:
                per_image = logit_scale * img_all @ txt_all.T
                per_text = per_image.T
        else:
            per_image, per_text = logit_scale * img @ txt.T, logit_scale * txt @ img.T
        if logit_bias is not None:
            per_image, per_text = per_image + logit_bias, per_text + logit_bias
        return per_image, per_text

    def forward(self, image_features, text_features, logit_scale, logit_bias=None, output_dict=None):
        if self.gather_distributed:
            loss = clip_loss(image_features, text_features, logit_scale, logit_bias, gather_distributed=True)
        else:
            loss = _clip(image_features, text_features, logit_scale, logit_bias, local_loss=self.local_loss,
                         gather_with_grad=self.gather_with_grad, distributed=self._distributed())
        want_dict = self.output_dict if output_dict is None else output_dict
        return {"contrastive_loss": loss} if want_dict else loss
