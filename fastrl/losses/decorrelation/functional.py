"""Barlow Twins, VICReg and SimSiam losses: public functional API.

Each loss validates its input, optionally gathers the global batch
(``gather_distributed=True``, gradient-correct, see :mod:`fastrl.distributed`),
standardises the views with one column-statistics pass and reduces the
D x D cross-correlation / covariance without storing it (see :mod:`.core`).
The Triton kernels run for CUDA tensors (or when forced with the interpreter);
otherwise the chunked torch path runs. Both sit behind one registered op
(``fastrl::decorr_fwd``, :mod:`.ops`), so the losses compile without graph breaks;
the cosine losses' NaN/inf checks are deferred under torch.compile
(:class:`fastrl.losses._compile.DeferredChecks`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastrl import distributed as fdist
from fastrl._dispatch import use_triton_no_fp64
from fastrl._validation import check_choice, check_positive, check_same_dtype_device, check_same_shape, check_tensor
from fastrl.losses._compile import DeferredChecks, register_check

from .core import pick_form
from .ops import decorr_parts

FORMS = ("auto", "gram", "cross")


def _path(*tensors) -> str:
    """The kernel path for this call (fp64 takes the torch path; a forced triton backend raises)."""
    return "triton" if use_triton_no_fp64("decorrelation loss", *tensors) else "cpu"


def _check_views(z1, z2, names=("z1", "z2"), min_rows: int = 2):
    for z, name in zip((z1, z2), names):
        if isinstance(z, torch.Tensor) and z.dim() == 2 and 0 < z.shape[0] < min_rows:
            raise ValueError(f"{name} needs a batch of at least {min_rows} rows (the variance of one "
                             f"sample is undefined), got shape {tuple(z.shape)}")
        # finite=False: NaN/inf are caught from the column statistics (one pass less)
        check_tensor(z, name, ndim=2, min_rows=min_rows, finite=False)
        if z.shape[1] == 0:
            raise ValueError(f"{name} has no features: shape {tuple(z.shape)}")
    check_same_shape(z1, z2, *names)
    check_same_dtype_device(z1, z2, *names)


def _global_views(z1, z2, gather_distributed: bool):
    """Concatenate the views over ranks when asked (and running distributed)."""
    if gather_distributed and fdist.is_distributed():
        _check_views(z1, z2, min_rows=1)
        z1, z2 = fdist.gather(z1), fdist.gather(z2)
        if z1.shape[0] < 2:
            raise ValueError(f"the global batch needs at least 2 rows, got {z1.shape[0]}")
    else:
        _check_views(z1, z2)
    return z1, z2


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambda_: float = 0.0051, *, eps: float = 1e-5,
                      gather_distributed: bool = False, form: str = "auto") -> torch.Tensor:
    """Barlow Twins loss (official semantics), without building the D x D matrix.

    Each view is batch-normalised (no affine, biased variance, ``eps`` as in
    ``nn.BatchNorm1d``), C = z1n^T z2n / N and
    ``loss = sum_i (1 - C_ii)^2 + lambda_ * sum_{i != j} C_ij^2``.

    Parameters
    ----------
    z1, z2 : torch.Tensor
        Projections of the two views, shape [N, D], N >= 2, same dtype/device.
    lambda_ : float
        Weight of the redundancy-reduction (off-diagonal) term.
    eps : float
        Added to the variance before the square root.
    gather_distributed : bool
        Use the global batch over all ranks (statistics and C); gradients follow
        :mod:`fastrl.distributed`'s convention.
    form : {"auto", "gram", "cross"}
        ``gram`` uses ||A^T B||_F^2 = <A A^T, B B^T>_F (cost N^2 D, N x N tiles),
        ``cross`` tiles C (cost D^2 N); ``auto`` picks gram when N < D.

    Returns
    -------
    torch.Tensor
        0-d loss (float32 for half-precision inputs, else the input dtype).
    """
    check_positive(lambda_, "lambda_", strict=False)
    check_positive(eps, "eps")
    check_choice(form, "form", FORMS)
    z1, z2 = _global_views(z1, z2, gather_distributed)
    path = _path(z1, z2)
    n, d = z1.shape
    # C = z1n^T z2n / N (the 1/N is applied in the op: kind "barlow")
    parts = decorr_parts(z1, z2, "bn", eps, lambda_, "barlow", 1.0, 0.0, pick_form(n, d, form), path, ("z1", "z2"))
    return parts.sum()


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-4, *, gather_distributed: bool = False,
                 form: str = "auto"):
    """The three unweighted VICReg terms (for logging), as in main_vicreg.py.

    Parameters
    ----------
    z1, z2 : torch.Tensor
        Embeddings of the two views, shape [N, D], N >= 2.
    eps : float
        Added to the (unbiased) variance inside the square root.
    gather_distributed, form
        As in :func:`barlow_twins_loss`.

    Returns
    -------
    (invariance, variance, covariance) : tuple of 0-d torch.Tensor
        invariance = MSE(z1, z2); variance = mean_d relu(1 - sqrt(var_d + eps))
        averaged over the two views; covariance = sum_{i != j} cov_ij^2 / D summed
        over the two views.
    """
    check_positive(eps, "eps")
    check_choice(form, "form", FORMS)
    z1, z2 = _global_views(z1, z2, gather_distributed)
    path = _path(z1, z2)
    n, d = z1.shape
    chosen = pick_form(n, d, form)
    up = torch.float64 if z1.dtype == torch.float64 else torch.float32
    inv = F.mse_loss(z1.to(up), z2.to(up))
    parts = []
    for z, name in ((z1, "z1"), (z2, "z2")):
        # x = z - mean, C = x^T x / (N - 1): off-diagonal = covariances, diagonal = unbiased variances;
        # both terms averaged over the D features (1/(N - 1) and 1/D applied in the op: kind "hinge")
        parts.append(decorr_parts(z, None, "center", 0.0, 1.0, "hinge", 1.0, eps, chosen, path, (name,)))
    var = 0.5 * (parts[0][1] + parts[1][1])
    cov = parts[0][0] + parts[1][0]
    return inv, var, cov


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                cov_coeff: float = 1.0, eps: float = 1e-4, *, gather_distributed: bool = False,
                form: str = "auto") -> torch.Tensor:
    """VICReg loss (official main_vicreg.py / lightly ``VICRegLoss`` semantics).

    ``sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance``
    with the terms of :func:`vicreg_terms`; the covariance matrices are reduced
    tile by tile (or through the N x N Gram when N < D), never stored.

    Parameters
    ----------
    z1, z2 : torch.Tensor
        Embeddings [N, D], N >= 2.
    sim_coeff, std_coeff, cov_coeff : float
        Term weights (defaults of the paper).
    eps : float
        Variance epsilon.
    gather_distributed, form
        As in :func:`barlow_twins_loss`.

    Returns
    -------
    torch.Tensor
        0-d loss.
    """
    for value, name in ((sim_coeff, "sim_coeff"), (std_coeff, "std_coeff"), (cov_coeff, "cov_coeff")):
        check_positive(value, name, strict=False)
    inv, var, cov = vicreg_terms(z1, z2, eps, gather_distributed=gather_distributed, form=form)
    return sim_coeff * inv + std_coeff * var + cov_coeff * cov


def negative_cosine_similarity(p: torch.Tensor, z: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Mean negative cosine similarity (lightly's ``NegativeCosineSimilarity``).

    Parameters
    ----------
    p, z : torch.Tensor
        Same shape, e.g. [N, D]; the cosine is taken along ``dim``.
    dim : int
        Feature dimension.
    eps : float
        Lower bound of the norms, as in ``torch.nn.functional.cosine_similarity``.

    Returns
    -------
    torch.Tensor
        0-d ``-cos(p, z).mean()``. Gradients flow into both arguments.
    """
    checks = DeferredChecks()
    return checks.apply(_negative_cosine(p, z, dim, eps, checks))


def _negative_cosine(p, z, dim, eps, checks: DeferredChecks):
    """:func:`negative_cosine_similarity` with its NaN/inf check recorded in ``checks``."""
    check_tensor(p, "p", min_rows=1, finite=False)
    check_tensor(z, "z", min_rows=1, finite=False)
    check_same_shape(p, z, "p", "z")
    check_same_dtype_device(p, z, "p", "z")
    check_positive(eps, "eps")
    if not -p.dim() <= dim < p.dim():
        raise ValueError(f"dim must be in [{-p.dim()}, {p.dim() - 1}] for p of shape {tuple(p.shape)}, got {dim}")
    if p.shape[dim] == 0:
        raise ValueError(f"p and z have an empty feature dimension (dim={dim}, shape {tuple(p.shape)}): "
                         "the cosine of zero-length vectors is undefined")
    loss = -F.cosine_similarity(p, z, dim=dim, eps=eps).mean()
    checks.add("cosine_finite", (loss, p, z))
    return loss


@register_check("cosine_finite")
def _check_cosine(loss, p, z):
    if not bool(torch.isfinite(loss.detach())):  # NaN/inf inputs: name the culprit (no extra pass otherwise)
        check_tensor(p, "p")
        check_tensor(z, "z")


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Symmetric SimSiam loss: D(p1, z2) / 2 + D(p2, z1) / 2, D(p, z) = -cos(p, stopgrad(z)).

    Parameters
    ----------
    p1, p2 : torch.Tensor
        Predictor outputs of the two views, [N, D].
    z1, z2 : torch.Tensor
        Projector outputs of the two views, [N, D]; no gradient flows into them.

    Returns
    -------
    torch.Tensor
        0-d loss in [-1, 1].
    """
    checks = DeferredChecks()
    for t, name in ((p2, "p2"), (z1, "z1"), (z2, "z2")):
        check_tensor(t, name, min_rows=1, finite=not checks.active)
        if checks.active:  # the "finite" check of fastrl.losses.contrastive.functional
            checks.add("finite", (t,), name)
        check_same_shape(p1, t, "p1", name)
    loss = (_negative_cosine(p1, z2.detach(), 1, 1e-8, checks) + _negative_cosine(p2, z1.detach(), 1, 1e-8, checks))
    return checks.apply(0.5 * loss)
