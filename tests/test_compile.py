"""torch.compile of a training step (linear layer -> loss -> backward) against eager mode.

Each fused core is one registered custom op (``fastrl::lse_fwd``, ``fastrl::siglip_fwd``,
``fastrl::decorr_fwd``, ...) and host-syncing input checks run inside ``fastrl::checked``
(or inside the core's op), so the CPU path traces without graph breaks (fullgraph=True). Tolerance: compiled and eager run the same kernels, but inductor
fuses and reorders the elementwise parts around them (normalisation, the linear
layer's backward), so results agree to float32 rounding (rtol 1e-5), not bit for bit.
"""
import pytest
import torch
import torch._dynamo as dynamo

from fastrl import use_backend
from fastrl.losses import (BarlowTwinsLoss, ClipLoss, InfoNCELoss, MoCoLoss, NegativeCosineSimilarity, NTXentLoss,
                           SigLipLoss, SimSiamLoss, SymNegCosineSimilarityLoss, VICRegLoss, alignment,
                           barlow_twins_loss, uniformity, vicreg_loss)

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
        # N < D: the gram form; form="cross" runs the D x D blocks (C kept for the backward)
        "BarlowTwinsLoss": lambda: (lambda a, b: BarlowTwinsLoss()(a, b)),
        "barlow_twins_loss-cross": lambda: (lambda a, b: barlow_twins_loss(a, b, form="cross")),
        "VICRegLoss": lambda: (lambda a, b: VICRegLoss()(a, b)),
        "vicreg_loss-cross": lambda: (lambda a, b: vicreg_loss(a, b, form="cross")),
        "SimSiamLoss": lambda: (lambda a, b: SimSiamLoss()(a, b, a, b)),
        "NegativeCosineSimilarity": lambda: (lambda a, b: NegativeCosineSimilarity()(a, b)),
        "SymNegCosineSimilarityLoss": lambda: (lambda a, b: SymNegCosineSimilarityLoss()((a, b), (a, b))),
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
            assert explained.graph_break_count == 0, explained.break_reasons
            dynamo.reset()
        torch.manual_seed(1)
        lin = torch.nn.Linear(D, D)
        step = _step(lin, _cases()[name]())
        with use_backend("cpu"):
            if compiled:
                step = torch.compile(step, backend="inductor", fullgraph=True)
            loss = step(x1, x2)
            loss.backward()
        results.append((loss.detach(), lin.weight.grad.clone(), lin.bias.grad.clone()))
    for e, c in zip(*results):
        # float32 rounding scales with the largest entry: uniformity's weight gradient reaches ~6,
        # where eager and compiled each sit ~5e-6 from the float64 result (inductor's ISA varies by CPU)
        torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-6 * max(1.0, e.abs().max().item()))
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


def test_compiled_decorrelation_checks_raise_naming_the_argument():
    """Barlow Twins' NaN check runs inside fastrl::decorr_fwd, the cosine losses' inside
    fastrl::checked: each raises the eager ValueError from the compiled step (fullgraph)."""
    a, b = torch.randn(N, D), torch.randn(N, D)
    bad = b.clone()
    bad[2, 3] = float("nan")
    cases = [(lambda x, y: BarlowTwinsLoss()(x, y), "z2 contains NaN or inf"),
             (lambda x, y: VICRegLoss()(y, x), "z1 contains NaN or inf"),
             (lambda x, y: NegativeCosineSimilarity()(x, y), "z contains NaN or inf"),
             (lambda x, y: SimSiamLoss()(x, y, x, x), "p2 contains NaN or inf")]
    with use_backend("cpu"):
        for loss_fn, message in cases:
            dynamo.reset()
            fn = torch.compile(loss_fn, backend="eager", fullgraph=True)
            assert torch.isfinite(fn(a, b))
            with pytest.raises(ValueError, match=message):
                fn(a, bad)


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


@pytest.mark.parametrize("loss_fn", [lambda a, b: barlow_twins_loss(a, b, form="cross"),
                                     lambda a, b: vicreg_loss(a, b, form="cross")], ids=["barlow", "vicreg"])
def test_compiled_decorrelation_backward_twice(loss_fn):
    """The CPU cross form keeps C for the backward; a compiled backward graph run twice
    (retain_graph=True) must not reuse the C that the first one overwrote (inductor reinplaces
    the op's mutation into the saved C; its donated buffers would refuse retain_graph)."""
    dynamo.reset()
    torch.manual_seed(1)
    lin = torch.nn.Linear(D, D)
    step = torch.compile(_step(lin, loss_fn), backend="inductor", fullgraph=True)
    x1, x2 = torch.randn(N, D), torch.randn(N, D)
    with use_backend("cpu"), torch._functorch.config.patch(donated_buffer=False):
        loss = step(x1, x2)
        loss.backward(retain_graph=True)
        first = lin.weight.grad.clone()
        loss.backward()
    torch.testing.assert_close(lin.weight.grad, 2 * first, rtol=1e-5, atol=1e-6)


def test_decorr_bwd_consumes_kept_c_only_in_eager():
    """The kept C (CPU cross form) is overwritten by an eager backward ("... 1") and copied
    first under compile ("... 0"); both give the same gradients."""
    from fastrl.losses.decorrelation import ops
    z1, z2 = torch.randn(2 * D, D), torch.randn(2 * D, D)
    params = [1e-5, 5e-3, 1.0, 0.0]
    grads = []
    for consume in ("0", "1"):
        spec = f"bn barlow cross cpu z1 z2 {consume}"
        out = ops.decorr_fwd(z1, z2, params, spec)
        kept = out[6]
        assert kept.shape == (D, D)
        before = kept.clone()
        grads.append(ops.decorr_bwd(torch.tensor([1.0, 1.0]), [*out[1:6], out[7]], kept, params, spec))
        assert torch.equal(kept, before) == (consume == "0")
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g0, g1)


def test_compiled_decorrelation_batch_sizes_share_a_graph():
    """1/N and 1/D are applied inside fastrl::decorr_fwd: after the first recompile the graph
    is dynamic in N (no specialisation per batch size) and matches eager for each N."""
    from torch._dynamo.utils import counters
    dynamo.reset()
    counters.clear()
    lin = torch.nn.Linear(D, D)
    loss_fn = BarlowTwinsLoss()
    step = torch.compile(_step(lin, loss_fn), backend="eager", fullgraph=True)
    with use_backend("cpu"):
        for n in (9, 10, 11, 12, 13):  # all N < D: the gram form
            x1, x2 = torch.randn(n, D), torch.randn(n, D)
            torch.testing.assert_close(step(x1, x2), loss_fn(lin(x1), lin(x2)), rtol=1e-5, atol=1e-6)
    assert counters["stats"]["unique_graphs"] <= 2


def test_decorr_op_triton_compiled():
    """fastrl::decorr_fwd on the triton path (interpreter) inside a compiled step: the eager
    triton values, gram form (Grams kept) and cross form."""
    pytest.importorskip("triton")
    from fastrl._dispatch import interpreting
    if not interpreting():
        pytest.skip("needs TRITON_INTERPRET=1 on a CPU-only machine")
    for n, loss_fn in ((N, BarlowTwinsLoss()), (2 * D, VICRegLoss())):
        torch.manual_seed(0)
        x1, x2 = torch.randn(n, D), torch.randn(n, D)
        results = []
        for compiled in (False, True):
            dynamo.reset()
            torch.manual_seed(1)
            lin = torch.nn.Linear(D, D)
            step = _step(lin, loss_fn)
            with use_backend("triton"):
                if compiled:
                    step = torch.compile(step, backend="aot_eager", fullgraph=True)
                loss = step(x1, x2)
                loss.backward()
            results.append((loss.detach(), lin.weight.grad.clone()))
        for e, c in zip(*results):
            torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-6)
