"""BERT masked-language-model masking (80/10/10), one fused pass.

Semantics of HuggingFace ``DataCollatorForLanguageModeling``: every token that
is not special is selected with probability ``mlm_probability``; a selected
token becomes ``mask_token_id`` with probability 0.8, a uniform random token
of ``[0, vocab_size)`` with probability 0.1, and stays unchanged with
probability 0.1. ``labels`` hold the original id where selected and -100
elsewhere. Random numbers come from a counter-based hash keyed by
``generator``, so the CPU (Numba) and Triton kernels give identical output.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch
from torch import nn

from fastrl._dispatch import use_triton
from fastrl._validation import check_int, check_real, check_tensor
from fastrl.masking._rng import draw_keys, threshold24

_INT_DTYPES = (torch.int64, torch.int32)


def _check_prob(p) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"mlm_probability must be a number, got {type(p).__name__}")
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"mlm_probability must be in [0, 1], got {p}")
    return float(p)


def _special(special_tokens_mask, input_ids) -> torch.Tensor:
    """``special_tokens_mask`` as a bool tensor on ``input_ids``' device.

    Any real dtype is accepted (bool, integer, fp16/bf16/fp32/fp64, as tokenizers
    and collators hand it over); its values must be 0 or 1. On the CPU the check
    runs in numpy: a torch op here would wake torch's thread pool just before
    the Numba kernel.
    """
    check_tensor(check_real(special_tokens_mask, "special_tokens_mask"), "special_tokens_mask", dtypes=None,
                 finite=False, min_rows=0)
    if special_tokens_mask.shape != input_ids.shape:
        raise ValueError(f"special_tokens_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                         f"got {tuple(special_tokens_mask.shape)}")
    sp = special_tokens_mask.detach()
    if sp.dtype == torch.bool:
        return sp.to(input_ids.device)
    if sp.device.type == "cpu":
        a = (sp.float() if sp.dtype == torch.bfloat16 else sp).numpy()
        nonzero = a != 0
        ok = bool((nonzero <= (a == 1)).all())  # every nonzero value is 1 (NaN fails too)
        out = torch.from_numpy(nonzero)
    else:
        out = sp != 0
        ok = bool((out <= (sp == 1)).all())
    if not ok:
        raise ValueError("special_tokens_mask must hold only 0 and 1 (or True/False), "
                         "e.g. a tokenizer's return_special_tokens_mask output")
    return out.to(input_ids.device)


def bert_mask(input_ids: torch.Tensor, vocab_size: int, mask_token_id: int, mlm_probability: float = 0.15, *,
              special_tokens_mask: torch.Tensor | None = None, generator: torch.Generator | None = None):
    """Mask tokens for masked language modelling (BERT's 80/10/10 rule).

    Parameters
    ----------
    input_ids : torch.Tensor
        [...] int64 or int32 token ids (any shape, e.g. [B, T]).
    vocab_size : int
        Random replacement tokens are drawn uniformly from ``[0, vocab_size)``.
    mask_token_id : int
        Id of the [MASK] token.
    mlm_probability : float
        Selection probability of a non-special token (default 0.15).
    special_tokens_mask : torch.Tensor, optional
        Same shape as ``input_ids``, 1/True = never selected (CLS, SEP, PAD...),
        0/False = may be selected; bool, integer or floating dtype (values 0 or 1 only).
    generator : torch.Generator, optional
        Seeds the hash keys (CPU generator); default: torch's global generator.

    Returns
    -------
    masked_ids : torch.Tensor
        Same shape and dtype as ``input_ids``.
    labels : torch.Tensor
        Original ids where selected, -100 elsewhere.
    """
    check_tensor(input_ids, "input_ids", dtypes=_INT_DTYPES, finite=False, min_rows=0)
    V = check_int(vocab_size, "vocab_size", low=1, high=2**31 - 1)
    mask_id = check_int(mask_token_id, "mask_token_id", low=0, high=2**31 - 1)
    prob = _check_prob(mlm_probability)
    if input_ids.numel() >= 2**61 // 3:
        raise ValueError("input_ids has too many elements")
    special = None if special_tokens_mask is None else _special(special_tokens_mask, input_ids)
    k0, k1 = draw_keys(2, generator)
    t_sel, t_mask, t_rand = threshold24(prob), threshold24(0.8), threshold24(0.9)
    if input_ids.numel() == 0:
        return input_ids.clone(), input_ids.clone()
    if use_triton(input_ids, special):
        from fastrl.masking import triton_kernels as tk
        return tk.bert_mask(input_ids.contiguous(), special, V, mask_id, t_sel, t_mask, t_rand, k0, k1)
    # CPU kernel (CUDA tensors without triton run it on a host copy: same numbers)
    from fastrl.masking import _numba_kernels as nk
    flat = input_ids.detach().cpu().contiguous().reshape(-1)
    out = torch.empty_like(flat)
    labels = torch.empty_like(flat)
    sp = np.zeros(1, dtype=np.bool_) if special is None else special.cpu().contiguous().reshape(-1).numpy()
    nk.run(nk.bert_mask, flat.numel(), flat.numpy(), sp, special is not None, V, mask_id, t_sel, t_mask, t_rand,
           k0, k1, out.numpy(), labels.numpy())
    dev = input_ids.device
    return out.view(input_ids.shape).to(dev), labels.view(input_ids.shape).to(dev)


class BertMasking(nn.Module):
    """Module form of :func:`bert_mask`: ``forward(input_ids, special_tokens_mask=None)``."""

    def __init__(self, vocab_size: int, mask_token_id: int, mlm_probability: float = 0.15):
        super().__init__()
        self.vocab_size = check_int(vocab_size, "vocab_size", low=1)
        self.mask_token_id = check_int(mask_token_id, "mask_token_id", low=0)
        self.mlm_probability = _check_prob(mlm_probability)

    def forward(self, input_ids, special_tokens_mask=None, generator=None):
        return bert_mask(input_ids, self.vocab_size, self.mask_token_id, self.mlm_probability,
                         special_tokens_mask=special_tokens_mask, generator=generator)
