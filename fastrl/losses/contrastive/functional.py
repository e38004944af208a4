"""Functional contrastive losses built on one shared LSE core.

Every softmax cross-entropy loss here is ``mean_i (lse_i - pos_i)`` where
``lse_i`` is the log-sum-exp of row i of ``scale * Q K^T`` (optionally
masked, optionally merged with the LSE against a queue) and ``pos_i`` is the
positive logit. The core (:func:`lse_core`) streams the N x N logits in
tiles (Triton kernel on CUDA, chunked torch otherwise) and never stores
them; positive logits and the queue merge are O(N D) torch ops.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from fastrl import distributed as fdist
from fastrl._dispatch import use_triton_no_fp64, warn_fallback
from fastrl._validation import check_choice, check_positive, check_same_dtype_device, check_tensor
from fastrl.losses._compile import DeferredChecks, register_check

REDUCTIONS = ("mean", "sum", "none")


def lse_core(q, k, scale, *, mask_offset=None, want_col=False, symmetric=False, precision=None,
             store_logits=None):
    """Row (and column) log-sum-exp of ``scale * q k^T`` without the N x N matrix.

    Parameters
    ----------
    q : torch.Tensor [M, D]
    k : torch.Tensor [N, D]
        Pass ``k is q`` with ``symmetric=True`` for the self-similarity case.
    scale : torch.Tensor, 0-d
        Multiplier of the logits (receives a gradient).
    mask_offset : int, optional
        Exclude the entries ``j == i + mask_offset`` (from the row and the column LSE).
    want_col : bool
        Also return the column LSE [N].
    symmetric : bool
        ``k`` is ``q``: the backward needs one pass instead of two.
    precision : {"tf32x3", "ieee", "tf32"}, optional
        fp32 ``tl.dot`` precision of the Triton path (default
        ``FASTRL_FP32_PRECISION``, else ``"tf32x3"``); ignored elsewhere.
    store_logits : bool, optional
        Triton path only: keep the M x N fp32 logits for the backward (3 GEMM
        passes instead of 4 for CLIP/InfoNCE). Default: when they fit
        ``FASTRL_LOGITS_BUDGET_MB`` (0 by default, i.e. never).

    Returns
    -------
    (torch.Tensor [M], torch.Tensor [N] or None)
        float32 (float64 for float64 inputs) row LSE and column LSE.
    """
    from fastrl._dispatch import fp32_precision
    asked_precision = precision
    precision = fp32_precision(precision)  # validated on every path, used by the Triton kernels
    if use_triton_no_fp64("contrastive LSE", q, k):
        from . import stored
        keep = stored.fits(q.shape[0], k.shape[0], q.dtype) if store_logits is None else bool(store_logits)
        path = "stored" if keep else "triton"
    else:
        _warn_ignored_triton_options(asked_precision, store_logits)
        path = "cpu"
    # one registered op (fastrl::lse_fwd): a single node under torch.compile
    from .ops import lse
    rlse, clse = lse(q, k, scale, mask_offset, bool(want_col), bool(symmetric), precision, path)
    return rlse, (clse if want_col else None)


def _warn_ignored_triton_options(precision, store_logits) -> None:
    """Warn (once) that Triton-only options set by the caller do nothing on the CPU path."""
    if precision is not None:
        warn_fallback("contrastive.precision_ignored",
                      f"fastrl: lse_core(precision={precision!r}) applies to the Triton kernels only; the CPU "
                      "path runs instead (CPU tensors, float64 or FASTRL_BACKEND=cpu) and computes with "
                      "torch matmuls, so the argument is ignored")
    if store_logits:
        warn_fallback("contrastive.store_logits_ignored",
                      "fastrl: lse_core(store_logits=True) applies to the Triton path only; the CPU path runs "
                      "instead (CPU tensors, float64 or FASTRL_BACKEND=cpu) and recomputes the logits in "
                      "chunks, so the argument is ignored")


# largest |logit| accepted: far inside fp32 (3.4e38) so that LSEs, differences
# and sums over 2^31 rows stay finite
MAX_LOGIT = 1e20


def _cdt(like: torch.Tensor) -> torch.dtype:
    return torch.float64 if like.dtype == torch.float64 else torch.float32


def as_scalar(value, name: str, like: torch.Tensor, *, positive: bool, checks: DeferredChecks | None = None
              ) -> torch.Tensor:
    """A 0-d compute-dtype (fp32, fp64 for fp64 ``like``) tensor of a number or a
    scalar tensor, which keeps its autograd graph. Rejects NaN/inf (and <= 0 when
    ``positive``) and values beyond ``MAX_LOGIT``; under torch.compile the value
    checks of a tensor are deferred to ``checks``."""
    if isinstance(value, torch.Tensor) and checks is not None and checks.active:
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        checks.add("scalar", (value,), name, positive)
        return value.reshape(()).to(device=like.device, dtype=_cdt(like))
    if positive:
        check_positive(value, name)
    elif isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
    elif isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
    if not math.isfinite(v) or abs(v) > MAX_LOGIT:
        raise ValueError(f"{name} must be finite with |{name}| <= {MAX_LOGIT:g}, got {v}")
    cdt = torch.float64 if like.dtype == torch.float64 else torch.float32
    if isinstance(value, torch.Tensor):
        return value.reshape(()).to(device=like.device, dtype=cdt)
    return torch.tensor(v, device=like.device, dtype=cdt)


def _as_scale(value, name: str, like: torch.Tensor, *, invert: bool, checks: DeferredChecks | None = None
              ) -> torch.Tensor:
    """A 0-d compute-dtype tensor for ``1/temperature`` or ``logit_scale`` (the value
    checks of a tensor deferred to ``checks`` under torch.compile)."""
    if isinstance(value, torch.Tensor) and checks is not None and checks.active:
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        checks.add("scale", (value,), name, invert)
        t = value.reshape(()).to(device=like.device, dtype=_cdt(like))
        return 1.0 / t if invert else t
    check_positive(value, name)
    v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
    s = 1.0 / v if invert else v
    if not s <= MAX_LOGIT:
        allowed = f">= {1 / MAX_LOGIT:g}" if invert else f"<= {MAX_LOGIT:g}"
        raise ValueError(f"{name} must be {allowed} (the logits overflow float32 beyond), got {v}")
    t = as_scalar(value, name, like, positive=True) if isinstance(value, torch.Tensor) else \
        torch.tensor(v, device=like.device, dtype=torch.float64 if like.dtype == torch.float64 else torch.float32)
    return 1.0 / t if invert else t


def check_logit_range(scale: torch.Tensor, q: torch.Tensor, k: torch.Tensor, name: str, bias=None,
                      checks: DeferredChecks | None = None) -> None:
    """Raise unless every logit ``scale * q_i.k_j (+ bias)`` is bounded by ``MAX_LOGIT``
    (bound: ``scale * max|q_i| * max|k_j| + |bias|``, an O(N D) pass; deferred to
    ``checks`` under torch.compile)."""
    if checks is not None and checks.active:
        checks.add("logit_range", (scale, q, k, scale.new_zeros(()) if bias is None else bias), name)
        return
    qn = float(torch.linalg.vector_norm(q.detach(), dim=1, dtype=torch.float64).max())
    kn = float(torch.linalg.vector_norm(k.detach(), dim=1, dtype=torch.float64).max())
    bound = float(scale.detach()) * qn * kn + (abs(float(bias.detach())) if bias is not None else 0.0)
    if not bound <= MAX_LOGIT:
        raise ValueError(f"{name} times the largest feature norms must keep |logits| <= {MAX_LOGIT:g} "
                         f"(float32 overflows beyond); got {name}={float(scale.detach()):g} with norms "
                         f"{qn:g} and {kn:g}")


def check_pair(a, b, name_a: str, name_b: str, checks: DeferredChecks | None = None) -> None:
    """Both 2-D, same shape/dtype/device, finite, N >= 1 and D >= 1 (the NaN/inf scans
    deferred to ``checks`` under torch.compile)."""
    defer = checks is not None and checks.active
    check_tensor(a, name_a, ndim=2, finite=not defer)
    check_tensor(b, name_b, ndim=2, finite=not defer)
    if defer:
        checks.add("finite", (a,), name_a)
        checks.add("finite", (b,), name_b)
    if a.shape != b.shape:
        raise ValueError(f"{name_b} must have the same shape as {name_a} (matching N and D), "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    check_same_dtype_device(a, b, name_a, name_b)
    if a.shape[1] == 0:
        raise ValueError(f"{name_a} and {name_b} have no features (D = 0): shape {tuple(a.shape)}")


_check_pair = check_pair


@register_check("finite")
def _check_finite(x, name):
    check_tensor(x, name, dtypes=None)


register_check("scale")(lambda v, name, invert: _as_scale(v, name, v, invert=invert))
register_check("scalar")(lambda v, name, positive: as_scalar(v, name, v, positive=positive))
register_check("logit_range")(lambda scale, q, k, bias, name: check_logit_range(scale, q, k, name, bias))


def _check_queue(queue, query, checks: DeferredChecks | None = None) -> None:
    defer = checks is not None and checks.active
    check_tensor(queue, "queue", ndim=2, finite=not defer)
    if defer:
        checks.add("finite", (queue,), "queue")
    if queue.shape[1] != query.shape[1]:
        raise ValueError(f"queue must have D={query.shape[1]} columns like query, got shape {tuple(queue.shape)}")
    if queue.device != query.device:
        raise ValueError(f"queue must be on {query.device}, got {queue.device}")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """<a_i, b_i> for every row, in the compute dtype (no [N, D] temporary)."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).reshape(-1)


def _compute(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _gather(x: torch.Tensor, gather_distributed: bool):
    """(all rows, offset of this rank's rows) with gradients through the gather."""
    if gather_distributed and fdist.is_distributed():
        return fdist.gather(x), fdist.gather_offset(x.shape[0], device=x.device)
    return x, 0


def info_nce(query, key, temperature=0.1, *, queue=None, normalize=True, reduction="mean",
             gather_distributed=False):
    """InfoNCE: the positive of ``query[i]`` is ``key[i]``; negatives are the
    other keys and the rows of ``queue``.

    Parameters
    ----------
    query, key : torch.Tensor [N, D]
        fp32/fp16/bf16 (accumulated in fp32) or fp64.
    temperature : float or 0-d torch.Tensor
        > 0; a tensor that requires grad receives a gradient.
    queue : torch.Tensor [K, D], optional
        Extra negatives (MoCo memory bank), no gradient.
    normalize : bool
        L2-normalise query, key and queue first.
    reduction : {"mean", "sum", "none"}
    gather_distributed : bool
        Gather keys from all ranks (with gradients); each rank keeps its rows.

    Returns
    -------
    torch.Tensor
        0-d loss, or [N] per-row losses for ``reduction="none"``.
    """
    checks = DeferredChecks()
    _check_pair(query, key, "query", "key", checks)
    check_choice(reduction, "reduction", REDUCTIONS)
    if queue is not None:
        _check_queue(queue, query, checks)
    scale = _as_scale(temperature, "temperature", query, invert=True, checks=checks)
    if normalize:
        query, key = F.normalize(query, dim=1), F.normalize(key, dim=1)
    else:
        check_logit_range(scale, query, key if queue is None else torch.cat([key, queue.to(key)]), "1/temperature",
                          checks=checks)
    keys, _ = _gather(key, gather_distributed)
    lse, _ = lse_core(query, keys, scale)
    if queue is not None:
        queue = queue.detach().to(query.dtype)
        if normalize:
            queue = F.normalize(queue, dim=1)
        lse = torch.logaddexp(lse, lse_core(query, queue, scale)[0])
    pos = scale * _rowdot(_compute(query), _compute(key))
    return checks.apply(_reduce(lse - pos, reduction))


def moco_loss(query, key, queue, temperature=0.2, *, normalize=True, reduction="mean"):
    """MoCo loss (lightly ``NTXentLoss`` with a memory bank): the positive of
    ``query[i]`` is ``key[i]``, the negatives are only the ``queue`` rows.

    Parameters
    ----------
    query, key : torch.Tensor [N, D]
    queue : torch.Tensor [K, D]
        Negatives (no gradient).
    temperature : float or 0-d torch.Tensor
    normalize : bool
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    torch.Tensor
    """
    checks = DeferredChecks()
    _check_pair(query, key, "query", "key", checks)
    check_choice(reduction, "reduction", REDUCTIONS)
    _check_queue(queue, query, checks)
    scale = _as_scale(temperature, "temperature", query, invert=True, checks=checks)
    queue = queue.detach().to(query.dtype)
    if normalize:
        query, key, queue = F.normalize(query, dim=1), F.normalize(key, dim=1), F.normalize(queue, dim=1)
    else:
        check_logit_range(scale, query, torch.cat([key, queue]), "1/temperature", checks=checks)
    pos = scale * _rowdot(_compute(query), _compute(key))
    lse = torch.logaddexp(pos, lse_core(query, queue, scale)[0])
    return checks.apply(_reduce(lse - pos, reduction))


def nt_xent(z1, z2, temperature=0.5, *, normalize=True, gather_distributed=False):
    """SimCLR NT-Xent over the 2N views, equal to lightly's ``NTXentLoss(temperature)``.

    Row i of ``Z = [z1; z2]`` has the positive ``Z[(i + N) mod 2N]`` and the
    other 2N - 2 rows as negatives (self-similarity masked).

    Parameters
    ----------
    z1, z2 : torch.Tensor [N, D]
    temperature : float or 0-d torch.Tensor
    normalize : bool
    gather_distributed : bool
        Negatives from all ranks (with gradients).

    Returns
    -------
    torch.Tensor, 0-d
    """
    checks = DeferredChecks()
    _check_pair(z1, z2, "z1", "z2", checks)
    scale = _as_scale(temperature, "temperature", z1, invert=True, checks=checks)
    n = z1.shape[0]
    if normalize:
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    else:
        zz = torch.cat([z1, z2])
        check_logit_range(scale, zz, zz, "1/temperature", checks=checks)
    z = torch.cat([z1, z2], dim=0)
    keys, offset = _gather(z, gather_distributed)
    # rank blocks of the gathered keys are [z1_r; z2_r]: self at i + offset
    lse, _ = lse_core(z, keys, scale, mask_offset=offset, symmetric=keys is z)
    pos = scale * _rowdot(_compute(z1), _compute(z2))
    # per-row differences first: lse and pos are large and nearly cancel
    return checks.apply((lse.view(2, n) - pos).mean())


def clip_loss(image_features, text_features, logit_scale, logit_bias=None, *, gather_distributed=False):
    """open_clip ``ClipLoss``: mean of the image->text and text->image cross-entropies.

    Parameters
    ----------
    image_features, text_features : torch.Tensor [N, D]
        Used as given (open_clip normalises in the model).
    logit_scale : float or 0-d torch.Tensor
        The multiplier (already exponentiated), > 0; receives a gradient.
    logit_bias : float or 0-d torch.Tensor, optional
        Added to every logit (it cancels in the cross-entropy).
    gather_distributed : bool
        Memory-efficient distributed layout (open_clip ``local_loss=True,
        gather_with_grad=True``): each rank's rows against all ranks' rows.
        The mean of the ranks' losses is the single-process loss of the whole
        batch. For open_clip's other modes see :class:`ClipLoss`.

    Returns
    -------
    torch.Tensor, 0-d
    """
    dist_mode = bool(gather_distributed) and fdist.is_distributed()
    return _clip(image_features, text_features, logit_scale, logit_bias,
                 local_loss=True, gather_with_grad=True, distributed=dist_mode)


def _gather_open_clip(x: torch.Tensor, with_grad: bool, keep_local: bool) -> torch.Tensor:
    """open_clip's ``gather_features`` for one tensor: with gradients, or without
    them except (``keep_local``) through this rank's own slot."""
    if with_grad:
        return fdist.gather(x)
    parts = list(torch.split(fdist.gather(x.detach()), fdist.all_sizes(x.shape[0], x.device)))
    if keep_local:
        parts[fdist.rank()] = x
    return torch.cat(parts)


def _clip(image_features, text_features, logit_scale, logit_bias, *, local_loss: bool, gather_with_grad: bool,
          distributed: bool):
    """CLIP loss in any of open_clip's four distributed modes (or one process).

    ``local_loss``: this rank's rows against all keys, labels offset by the
    rank's first row; otherwise the whole gathered N x N problem on every rank.
    ``gather_with_grad``: the gathered keys carry gradients (summed over ranks
    in backward); otherwise only this rank's own rows do (open_clip keeps the
    local slot for ``local_loss=False`` and detaches all keys for ``local_loss=True``).
    """
    checks = DeferredChecks()
    _check_pair(image_features, text_features, "image_features", "text_features", checks)
    scale = _as_scale(logit_scale, "logit_scale", image_features, invert=False, checks=checks)
    check_logit_range(scale, image_features, text_features, "logit_scale", checks=checks)
    img, txt = image_features, text_features
    if distributed and local_loss:
        keys_t = _gather_open_clip(txt, gather_with_grad, keep_local=False)
        keys_i = _gather_open_clip(img, gather_with_grad, keep_local=False)
        lse_i, _ = lse_core(img, keys_t, scale)
        lse_t, _ = lse_core(txt, keys_i, scale)
        # the positive is the local row of the gathered keys (no gradient through it without gather_with_grad)
        pos_txt = txt if gather_with_grad else txt.detach()
        pos_img = img if gather_with_grad else img.detach()
        pos_i = scale * _rowdot(_compute(img), _compute(pos_txt))
        pos_t = scale * _rowdot(_compute(txt), _compute(pos_img))
        loss = ((lse_i - pos_i) + (lse_t - pos_t)).mean() / 2
    else:
        if distributed:
            img = _gather_open_clip(img, gather_with_grad, keep_local=True)
            txt = _gather_open_clip(txt, gather_with_grad, keep_local=True)
        lse_i, lse_t = lse_core(img, txt, scale, want_col=True)
        pos = scale * _rowdot(_compute(img), _compute(txt))
        loss = ((lse_i - pos) + (lse_t - pos)).mean() / 2
    if logit_bias is not None:
        # a logit bias shifts every logit, positives included: it cancels exactly
        bias = as_scalar(logit_bias, "logit_bias", image_features, positive=False, checks=checks)
        loss = loss + 0.0 * bias
    return checks.apply(loss)


def alignment(x, y, alpha=2):
    """Alignment loss of Wang & Isola: ``mean_i ||x_i - y_i||^alpha``.

    Parameters
    ----------
    x, y : torch.Tensor [N, D]
    alpha : float, > 0

    Returns
    -------
    torch.Tensor, 0-d
    """
    checks = DeferredChecks()
    _check_pair(x, y, "x", "y", checks)
    check_positive(alpha, "alpha", allow_tensor=False)
    return checks.apply((x - y).norm(dim=1).pow(alpha).mean())


def uniformity(x, t=2):
    """Uniformity loss of Wang & Isola: ``log mean_{i<j} exp(-t ||x_i - x_j||^2)``.

    Tiled: the input is centred first (the loss is translation-invariant, and
    centring keeps the expansion below exact in fp32 for offset data); with
    ``a_ij = 2t x_i.x_j - t|x_i|^2 - t|x_j|^2`` the loss is
    ``LSE_{i != j} a_ij - log(N (N - 1))``; the per-row LSE comes from the
    core on the augmented rows ``[x_i, 1]`` and ``[x_j, -|x_j|^2 / 2]``.

    Parameters
    ----------
    x : torch.Tensor [N, D], N >= 2, D >= 1
    t : float, > 0, with ``t * max|x_i - mean|^2 <= 1e20`` (float32 range)

    Returns
    -------
    torch.Tensor, 0-d
    """
    checks = DeferredChecks()
    check_tensor(x, "x", ndim=2, min_rows=2, finite=not checks.active)
    if checks.active:
        checks.add("finite", (x,), "x")
    if x.shape[1] == 0:
        raise ValueError(f"x has no features (D = 0): shape {tuple(x.shape)}")
    check_positive(t, "t", allow_tensor=False)
    xc = _compute(x)
    xc = xc - xc.mean(dim=0, keepdim=True)
    sq = (xc * xc).sum(1, keepdim=True)
    checks.add("spread", (sq,), float(t))
    q = torch.cat([xc, torch.ones_like(sq)], dim=1)
    k = torch.cat([xc, -0.5 * sq], dim=1)
    scale = torch.tensor(2.0 * float(t), dtype=xc.dtype, device=x.device)
    lse, _ = lse_core(q, k, scale, mask_offset=0)
    n = x.shape[0]
    return checks.apply(torch.logsumexp(lse - float(t) * sq.reshape(-1), dim=0) - math.log(n * (n - 1)))


@register_check("spread")
def _check_spread(sq: torch.Tensor, t: float) -> None:
    """uniformity: ``4 t max|x_i - mean|^2`` must stay within the float32 logit range."""
    bound = 4.0 * t * float(sq.detach().max())
    if not bound <= MAX_LOGIT:
        raise ValueError(f"t times the squared spread of x must be <= {MAX_LOGIT:g} (float32 overflows beyond), "
                         f"got t={t:g} with max |x_i - mean|^2 = {float(sq.detach().max()):g}")
