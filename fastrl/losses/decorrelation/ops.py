"""The decorrelation core as registered custom ops (one node under torch.compile).

``fastrl::decorr_fwd`` standardises one view (``z2=None``, the symmetric VICReg
case B = A) or two (Barlow Twins) with :class:`.core.Standardize` and reduces
C = scale * A^T B with :class:`.core.DecorrCore`; ``fastrl::decorr_bwd`` runs
DecorrCore's backward, then Standardize's on its fresh gradients. Both run the
autograd.Functions' own ``forward`` / ``backward`` through
:class:`fastrl.losses._compile.OpCtx`, on the CPU path (:mod:`.cpu`) or the
Triton path (:mod:`.triton_kernels`), so eager and compiled calls compute the
same values with the same kernels. The NaN/inf check of the column statistics
runs inside the op: a compiled step raises the same ``ValueError`` naming the view.

What the forward keeps for the backward travels as extra outputs (0-element
tensors when absent): the standardised views A, B, their rstd (mode "bn"),
diag(C) (gram form) and the kept buffers: C on the CPU cross form when it fits one
block, or the two N x N Grams on the Triton gram form (reused by every backward).
In eager mode the first backward overwrites the kept C (a second one recomputes it,
as :class:`.core.DecorrCore` does); a compiled backward graph may run again on the
same saved C (``retain_graph=True``), so under torch.compile it works on a copy
(one D x D copy, cheaper than recomputing the D x D x N product).

The ops take few arguments (the numbers in one list, the choices in one
space-separated ``spec`` string): torch's custom-op dispatch costs time
quadratic in the number of schema arguments on every call. The factors that
depend on the batch shape (``scale`` = 1/N or 1/(N - 1), VICReg's 1/D) are
applied inside the op (:func:`_shape_factors`), so that a compiled step stays
valid for every batch size (a float argument computed from a symbolic N would
specialise the graph on N).
"""
from __future__ import annotations

from typing import Optional

import torch

from fastrl.losses._compile import OpCtx, compiling, empty, present

from .core import DecorrCore, Standardize

PATHS = ("cpu", "triton")


def _impl(path: str):
    if path == "triton":
        from . import triton_kernels
        return triton_kernels
    from . import cpu
    return cpu


def _cdt(z: torch.Tensor) -> torch.dtype:
    return torch.float64 if z.dtype == torch.float64 else torch.float32


def _kept_shapes(path: str, form: str, a: torch.Tensor, symmetric: bool):
    """Shapes of the two kept buffers DecorrCore's forward leaves on ``path`` (see module doc)."""
    n, d = a.shape
    if path == "cpu" and form == "cross":
        from .cpu import _col_block
        return ((d, d) if _col_block(d) >= d else (0,)), (0,)
    if path == "triton" and form == "gram":
        from .triton_kernels import _gram_fits
        if _gram_fits(a):
            return (n, n), ((0,) if symmetric else (n, n))
    return (0,), (0,)


def _shape_factors(kind: str, n: int, d: int):
    """(scale, weight factor) of ``kind``: Barlow Twins C = A^T B / N; VICReg C = x^T x / (N - 1)
    (unbiased covariance) with both terms averaged over the D features."""
    if kind == "barlow":
        return 1.0 / n, 1.0
    return 1.0 / (n - 1), 1.0 / d


def _core_args(params, kind: str, a: torch.Tensor):
    """DecorrCore's (scale, w_off, w_diag, eps) from ``params`` = [std_eps, w_off, w_diag, eps]."""
    _std_eps, w_off, w_diag, eps = params
    scale, factor = _shape_factors(kind, *a.shape)
    return scale, w_off * factor, w_diag * factor, eps


def _or_empty(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return t if t is not None else empty(like)


# spec of decorr_fwd: "std_mode kind form path name1 name2 consume_kept"; params: [std_eps, w_off, w_diag, eps]
# before the shape factors (see _shape_factors)
@torch.library.custom_op("fastrl::decorr_fwd", mutates_args=())
def decorr_fwd(z1: torch.Tensor, z2: Optional[torch.Tensor], params: list[float], spec: str
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                          torch.Tensor, torch.Tensor]:
    """(parts [2], A [N, D], B [N, D] or [0], rstd_A [D] or [0], rstd_B [D] or [0], diag(C) [D] or [0],
    kept_a, kept_b)."""
    std_mode, kind, form, path, name1, name2, _consume = spec.split()
    impl = _impl(path)
    views, rstds = [], []
    for z, name in ((z1, name1), (z2, name2)):
        if z is None:
            continue
        sctx = OpCtx()
        views.append(Standardize.forward(sctx, z, std_mode, params[0], impl, name))
        rstds.append(sctx.saved_tensors[1] if std_mode == "bn" else empty(views[-1]))
    a = views[0]
    b = views[1] if len(views) > 1 else None
    core = OpCtx()
    scale, w_off, w_diag, eps = _core_args(params, kind, a)
    parts = DecorrCore.forward(core, a, b, scale, w_off, kind, w_diag, eps, form, impl)
    kept = core.kept
    if form == "gram":
        kept_a, kept_b = kept if kept is not None else (None, None)
    else:
        kept_a, kept_b = kept, None
    diag = core.saved_tensors[2] if form == "gram" else None
    return (parts, a, _or_empty(b, a), rstds[0], (rstds[1] if b is not None else empty(a)), _or_empty(diag, a),
            _or_empty(kept_a, a), _or_empty(kept_b, a))


@decorr_fwd.register_fake
def _(z1, z2, params, spec):
    std_mode, _kind, form, path = spec.split()[:4]
    cdt = _cdt(z1)
    n, d = z1.shape
    a = z1.new_empty((n, d), dtype=cdt)
    ka, kb = _kept_shapes(path, form, a, z2 is None)
    return (z1.new_empty(2, dtype=cdt), a, z1.new_empty((n, d) if z2 is not None else (0,), dtype=cdt),
            z1.new_empty(d if std_mode == "bn" else 0, dtype=cdt),
            z1.new_empty(d if std_mode == "bn" and z2 is not None else 0, dtype=cdt),
            z1.new_empty(d if form == "gram" else 0, dtype=cdt), z1.new_empty(ka, dtype=cdt),
            z1.new_empty(kb, dtype=cdt))


# saved: [A, B, rstd_A, rstd_B, diag, kept_b] as returned by decorr_fwd; spec and params as there
@torch.library.custom_op("fastrl::decorr_bwd", mutates_args=("kept_a",))
def decorr_bwd(grad: torch.Tensor, saved: list[torch.Tensor], kept_a: torch.Tensor, params: list[float], spec: str
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(dz1 [N, D], dz2 [N, D] or [0]) in the compute dtype (fp32 / fp64) for ``grad`` [2] of the parts;
    ``kept_a`` (the CPU cross form's C) is overwritten when the spec's ``consume_kept`` is 1, else copied
    first."""
    std_mode, kind, form, path, _name1, _name2, consume = spec.split()
    a, b, rstd_a, rstd_b, diag, kept_b = saved
    scale, w_off, w_diag, eps = _core_args(params, kind, a)
    b = present(b)
    ka, kb = present(kept_a), present(kept_b)
    if form == "cross" and ka is not None and consume != "1":
        ka = ka.clone()
    kept = (None if ka is None else (ka, kb)) if form == "gram" else ka
    core = OpCtx(saved_tensors=(a, b, diag) if form == "gram" else (a, b),
                 cfg=(scale, w_off, kind, w_diag, eps, form, _impl(path)), kept=kept)
    ga, gb = DecorrCore.backward(core, grad)[:2]
    out = []
    for g, view, rstd in ((ga, a, rstd_a), (gb, b, rstd_b)):
        if g is not None:  # in place on DecorrCore's fresh gradient; the cast to the input dtype follows outside
            out.append(Standardize.backward(OpCtx(saved_tensors=(view, rstd), mode=std_mode, in_dtype=g.dtype), g)[0])
    return out[0], (out[1] if len(out) > 1 else empty(out[0]))


@decorr_bwd.register_fake
def _(grad, saved, kept_a, params, spec):
    a, b = saved[:2]
    return torch.empty_like(a), torch.empty_like(b)


def _setup(ctx, inputs, output):
    z1, z2, params, spec = inputs
    # only the parts are differentiable; no zero gradients are built for the other outputs
    ctx.mark_non_differentiable(*output[1:])
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(*output[1:6], output[7])
    # not a saved tensor: the first (eager) backward overwrites the CPU cross form's C in place
    ctx.kept_a = output[6]
    ctx.cfg = (params, spec, z1.dtype, None if z2 is None else z2.dtype)


def _backward(ctx, grad, *_unused):
    params, spec, dtype_a, dtype_b = ctx.cfg
    kept_a = ctx.kept_a
    if spec.split()[2] == "cross" and spec.endswith(" 1"):  # C consumed: a second backward recomputes it
        ctx.kept_a = empty(kept_a)
    dz1, dz2 = decorr_bwd(grad, list(ctx.saved_tensors), kept_a, params, spec)
    return dz1.to(dtype_a), (dz2.to(dtype_b) if dtype_b is not None else None), None, None


decorr_fwd.register_autograd(_backward, setup_context=_setup)


def decorr_parts(z1: torch.Tensor, z2: torch.Tensor | None, std_mode: str, std_eps: float, w_off: float, kind: str,
                 w_diag: float, eps: float, form: str, path: str, names: tuple) -> torch.Tensor:
    """[off-diagonal, diagonal] parts of C = scale * A^T B for the standardised views.

    Parameters
    ----------
    z1 : torch.Tensor [N, D]
    z2 : torch.Tensor [N, D] or None
        None: the symmetric case B = A.
    std_mode : {"bn", "center"}
        Standardisation (:class:`.core.Standardize`) with ``std_eps``.
    w_off, kind, w_diag, eps, form
        As in :class:`.core.DecorrCore` (``form`` already resolved: "gram" or "cross"); ``kind``
        also sets scale = 1/N ("barlow") or 1/(N - 1) with both weights divided by D ("hinge").
    path : {"cpu", "triton"}
    names : tuple of str
        Argument names of the views (one per view), for the NaN/inf error.

    Returns
    -------
    torch.Tensor [2]
        float32 (float64 for float64 inputs).
    """
    spec = f"{std_mode} {kind} {form} {path} {names[0]} {names[-1]} {int(not compiling())}"
    params = [float(std_eps), float(w_off), float(w_diag), float(eps)]
    return decorr_fwd(z1, z2, params, spec)[0]
