"""torch.compile of a training step (linear layer -> loss -> backward) against eager mode.

Each fused core is one registered custom op (``fastrl::lse_fwd``, ``fastrl::siglip_fwd``, ...)
and host-syncing input checks run inside ``fastrl::checked``, so the CPU path traces
without graph breaks. Tolerance: compiled and eager run the same kernels, but inductor
fuses and reorders the elementwise parts around them (normalisation, the linear
layer's backward), so results agree to float32 rounding (rtol 1e-5), not bit for bit.
"""
import pytest
import torch
import torch._dynamo as dynamo

from fastrl import use_backend
from fastrl.losses import ClipLoss, InfoNCELoss, MoCoLoss, NTXentLoss, SigLipLoss, alignment, uniformity

N, D = 8, 16


def _cases():
    scale = torch.tensor(10.0)
    return {
        "InfoNCELoss": lambda: (lambda a, b: InfoNCELoss()(a, b)),
        "NTXentLoss": lambda: (lambda a, b: NTXentLoss()(a, b)),
        "ClipLoss": lambda: (lambda a, b: ClipLoss()(a, b, scale)),
        "SigLipLoss": lambda: (lambda a, b: SigLipLoss()(a, b, scale, torch.tensor(-1.0))),
        "MoCoLoss": lambda: (lambda a, b, m=MoCoLoss(memory_bank_size=(32, D)): m(a, b.detach())),
        "alignment": lambda: (lambda a, b: alignment(a, b)),
        "uniformity": lambda: (lambda a, b: uniformity(a)),
    }


def _step(lin, loss_fn):
    def step(x1, x2):
        return loss_fn(lin(x1), lin(x2))
    return step


@pytest.mark.parametrize("name", list(_cases()))
def test_compiled_step_matches_eager(name):
    torch.manual_seed(0)
    x1, x2 = torch.randn(N, D), torch.randn(N, D)
    results = []
    for compiled in (False, True):
        dynamo.reset()
        if compiled:  # explain runs the step once (MoCo enqueues): a fresh layer and loss afterwards
            with use_backend("cpu"):
                explained = dynamo.explain(_step(torch.nn.Linear(D, D), _cases()[name]()))(x1, x2)
            assert explained.graph_break_count <= 1, explained.break_reasons
            dynamo.reset()
        torch.manual_seed(1)
        lin = torch.nn.Linear(D, D)
        step = _step(lin, _cases()[name]())
        with use_backend("cpu"):
            if compiled:
                step = torch.compile(step, backend="inductor")
            loss = step(x1, x2)
            loss.backward()
        results.append((loss.detach(), lin.weight.grad.clone(), lin.bias.grad.clone()))
    for e, c in zip(*results):
        torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-6)
    assert results[0][1].abs().sum() > 0  # the gradient is not trivially zero


def test_compiled_checks_raise_naming_the_argument():
    """The NaN scan and the scale check run inside the compiled step (fastrl::checked)."""
    dynamo.reset()
    fn = torch.compile(lambda a, b, s: ClipLoss()(a, b, s), backend="eager", fullgraph=True)
    a, b = torch.randn(N, D), torch.randn(N, D)
    with use_backend("cpu"):
        assert torch.isfinite(fn(a, b, torch.tensor(5.0)))
        bad = b.clone()
        bad[2, 3] = float("nan")
        with pytest.raises(ValueError, match="text_features contains NaN or inf"):
            fn(a, bad, torch.tensor(5.0))
        with pytest.raises(ValueError, match="logit_scale must be > 0"):
            fn(a, b, torch.tensor(-1.0))


def test_lse_op_triton_eager_dispatch():
    """The custom op on the triton path (interpreter), called eagerly: same values as the CPU path."""
    pytest.importorskip("triton")
    from fastrl._dispatch import interpreting
    if not interpreting():
        pytest.skip("needs TRITON_INTERPRET=1 on a CPU-only machine")
    torch.manual_seed(0)
    q = torch.randn(40, 8, requires_grad=True)
    k = torch.randn(40, 8, requires_grad=True)
    out = {}
    for backend in ("cpu", "triton"):
        with use_backend(backend):
            loss = ClipLoss()(q, k, torch.tensor(3.0))
            gq, gk = torch.autograd.grad(loss, (q, k))
        out[backend] = (loss.detach(), gq, gk)
    for c, t in zip(out["cpu"], out["triton"]):
        torch.testing.assert_close(t, c, rtol=1e-4, atol=1e-5)
