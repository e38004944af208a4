"""Naive reference of the SigLIP loss: the full N x N logits in plain torch
(use float64 inputs for an exact reference). It reproduces the formula of
open_clip's ``SigLipLoss`` and is used by the tests; it needs O(N^2) memory."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def siglip_loss_reference(image_features, text_features, logit_scale, logit_bias=None, negative_only=False):
    """``-sum_ij log sigmoid(z_ij (s x_i.y_j + b)) / N`` with ``z = 2 I - 1``
    (``z = -1`` everywhere when ``negative_only``)."""
    n = image_features.shape[0]
    logits = logit_scale * image_features @ text_features.T
    if logit_bias is not None:
        logits = logits + logit_bias
    labels = -torch.ones_like(logits)
    if not negative_only:
        labels = labels + 2 * torch.eye(n, dtype=logits.dtype, device=logits.device)
    return -F.logsigmoid(labels * logits).sum() / n
