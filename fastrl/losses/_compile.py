"""torch.compile support shared by the fused losses and the MAE ops.

Every fused core (contrastive LSE, SigLIP sum, decorrelation, MAE loss and
gathers) is registered with :func:`torch.library.custom_op`, so that
``torch.compile`` sees one opaque node per core (with ``register_fake`` for its
shapes and ``register_autograd`` for its recompute backward) instead of
tracing into, and breaking on, the host-side code of the kernels. The op's
implementation runs the same ``torch.autograd.Function`` ``forward`` /
``backward`` code as eager mode, through :class:`OpCtx`, so both modes compute
the same values with the same kernels.

Input checks that read tensor values on the host (NaN/inf scans, ``scale > 0``
on a tensor, logit ranges) would split the compiled graph. Under compile they
are recorded by :class:`DeferredChecks` and run by one op, ``fastrl::checked``,
on the loss: the error (the same ``ValueError`` naming the argument) is raised
when the compiled step runs, before the loss is returned. In eager mode they
run immediately, exactly as before.
"""
from __future__ import annotations

from typing import Callable

import torch


def compiling() -> bool:
    """True while torch.compile (dynamo) traces the calling code."""
    return torch.compiler.is_compiling()


class OpCtx:
    """Stand-in for autograd's ``ctx``: lets a custom op run an autograd.Function's
    ``forward`` or ``backward`` unchanged (saved tensors and attributes are kept
    as plain Python state; ``needs_input_grad`` is given by the caller)."""

    def __init__(self, needs_input_grad=(), saved_tensors=(), **attrs):
        self.needs_input_grad = tuple(needs_input_grad)
        self.saved_tensors = tuple(saved_tensors)
        self.__dict__.update(attrs)

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def mark_non_differentiable(self, *tensors):  # pragma: no cover - API completeness
        pass


def empty(like: torch.Tensor) -> torch.Tensor:
    """A 0-element tensor standing for "no tensor" in a custom op's outputs."""
    return like.new_empty(0)


def present(t: torch.Tensor | None) -> torch.Tensor | None:
    """Inverse of :func:`empty`: None for a 0-element placeholder."""
    return None if t is None or t.numel() == 0 and t.dim() == 1 else t


_CHECKS: dict[str, Callable] = {}


def register_check(kind: str):
    """Register ``fn(*tensors, *params)`` (raises on bad input) as a deferrable check."""
    def deco(fn):
        _CHECKS[kind] = fn
        return fn
    return deco


class DeferredChecks:
    """Host-syncing input checks: run at once in eager mode, recorded while compiling.

    ``checks.add(kind, tensors, *params)`` runs ``_CHECKS[kind](*tensors, *params)``
    now unless torch.compile is tracing; then :meth:`apply` attaches every recorded
    check to the result through the ``fastrl::checked`` op (one node, no graph break).
    """

    def __init__(self):
        self.active = compiling()
        self._tensors: list[torch.Tensor] = []
        self._spec: list[str] = []

    def add(self, kind: str, tensors, *params) -> None:
        if not self.active:
            _CHECKS[kind](*tensors, *params)
            return
        start = len(self._tensors)
        self._tensors.extend(tensors)
        self._spec.append(repr((kind, start, len(tensors), params)))

    def apply(self, out: torch.Tensor) -> torch.Tensor:
        if not self._spec:
            return out
        return checked(out, self._tensors, "\n".join(self._spec))


@torch.library.custom_op("fastrl::checked", mutates_args=())
def checked(out: torch.Tensor, tensors: list[torch.Tensor], spec: str) -> torch.Tensor:
    """``out`` (copied) after the recorded checks of ``spec`` passed on ``tensors``."""
    import ast
    for line in spec.splitlines():
        kind, start, n, params = ast.literal_eval(line)
        _CHECKS[kind](*tensors[start:start + n], *params)
    return out.clone()


@checked.register_fake
def _(out, tensors, spec):
    return torch.empty_like(out)


def _checked_setup(ctx, inputs, output):
    ctx.n = len(inputs[1])


def _checked_backward(ctx, grad):
    return grad, [None] * ctx.n, None


checked.register_autograd(_checked_backward, setup_context=_checked_setup)
