"""Masked-modelling ops (MAE, BERT, BEiT), fused.

* :func:`patchify`, :func:`unpatchify` - MAE patch layout
* :func:`random_masking` - MAE argsort-of-noise masking
* :func:`patchify_and_mask` - fused patchify + masking (visible patches only)
* :func:`mae_loss` - fused MAE loss, forward + backward
* :func:`bert_mask` - BERT 80/10/10 token masking in one kernel
* :func:`block_mask` - BEiT block-wise masking generator (compiled)
* :func:`vq_nearest` - vector-quantizer lookup without the N x K distance matrix

Reference implementations live in :mod:`fastrl.masking.reference`.
"""
from fastrl.masking.bert import BertMasking, bert_mask
from fastrl.masking.blocks import MaskingGenerator, block_mask
from fastrl.masking.loss import MAELoss, mae_loss
from fastrl.masking.mae import PatchifyAndMask, RandomMasking, patchify, patchify_and_mask, random_masking, unpatchify
from fastrl.masking.vq import VQNearest, vq_nearest

__all__ = [
    "patchify", "unpatchify", "random_masking", "patchify_and_mask", "mae_loss", "bert_mask", "block_mask",
    "vq_nearest", "RandomMasking", "PatchifyAndMask", "MAELoss", "BertMasking", "MaskingGenerator", "VQNearest",
]
