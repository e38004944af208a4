"""torch.compile of the MAE ops (patchify_and_mask, random_masking, mae_loss) against eager mode.

The Numba kernels are registered custom ops (``fastrl::mae_rand_``, ``fastrl::mae_shuffle``,
``fastrl::mae_gather_patches``, ``fastrl::mae_loss_fwd``, see fastrl/masking/ops.py), so the CPU
path traces with 0 graph breaks (before: dynamo crashed tracing into a Numba dispatcher that had
not compiled yet, and broke the graph 6 and 7 times once it had). Masks and ids are identical to
eager mode for the same seed (the noise is drawn by the op from torch's global generator, not by
inductor's RNG); loss and gradients agree to float32 rounding (inductor fuses the linear layer
around the ops: rtol 1e-5, as tests/test_compile.py), float64 to 1e-12.
"""
import pytest
import torch
import torch._dynamo as dynamo

from fastrl import use_backend
from fastrl.masking import MAELoss, mae_loss, patchify, patchify_and_mask, random_masking

B, C, H, W, P = 3, 3, 12, 16, 4
L, D = (H // P) * (W // P), P * P * C


def _explain(fn, *args):
    dynamo.reset()
    with use_backend("cpu"):
        out = dynamo.explain(fn)(*args)
    dynamo.reset()
    return out


def _run(fn, args, compiled, seed=7, fullgraph=True):
    """``fn(*args)`` then backward of its first output, after ``torch.manual_seed(seed)``."""
    with use_backend("cpu"):
        if compiled:
            dynamo.reset()
            fn = torch.compile(fn, backend="inductor", fullgraph=fullgraph)
        torch.manual_seed(seed)
        out = fn(*args)
        out[0].backward()
    return out


def _close(got, want, dtype=torch.float32):
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got, want, **tol)


def test_patchify_and_mask_step_compiles_without_breaks():
    lin = torch.nn.Linear(D, D)
    imgs = torch.randn(B, C, H, W)

    def step(im):
        x, mask, ids = patchify_and_mask(im, P, 0.75)
        return lin(x).square().mean(), mask, ids

    explained = _explain(step, imgs)
    assert explained.graph_break_count == 0, explained.break_reasons
    results = []
    for compiled in (False, True):
        lin.zero_grad(set_to_none=True)
        im = imgs.clone().requires_grad_()  # the gather's backward (scatter into the images) is traced too
        loss, mask, ids = _run(step, (im,), compiled)
        results.append((loss.detach(), mask, ids, lin.weight.grad.clone(), im.grad.clone()))
    (le, me, ie, gwe, gie), (lc, mc, ic, gwc, gic) = results
    assert torch.equal(mc, me) and torch.equal(ic, ie)  # the same draw from the same seed
    assert me.sum() == B * (L - int(L * 0.25))
    _close(lc, le)
    _close(gwc, gwe)
    _close(gic, gie)
    assert torch.equal(patchify(gie, P).abs().sum(-1) > 0, me == 0)  # only the kept patches get a gradient


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", [True, False])
def test_mae_loss_step_compiles_without_breaks(dtype, norm):
    torch.manual_seed(0)
    imgs = torch.randn(B, C, H, W, dtype=dtype)
    x = torch.randn(B, L, D, dtype=dtype)
    mask = (torch.rand(B, L) < 0.75).float()
    mask[:, 0] = 1.0
    lin = torch.nn.Linear(D, D).to(dtype)

    def step(x, imgs, mask):
        return (mae_loss(lin(x), imgs, mask, P, norm),)

    explained = _explain(step, x, imgs, mask)
    assert explained.graph_break_count == 0, explained.break_reasons
    results = []
    for compiled in (False, True):
        lin.zero_grad(set_to_none=True)
        (loss,) = _run(step, (x, imgs, mask), compiled)
        assert loss.dtype == dtype
        results.append((loss.detach(), lin.weight.grad.clone(), lin.bias.grad.clone()))
    for c, e in zip(results[1], results[0]):
        _close(c, e, dtype)
    assert results[0][1].abs().sum() > 0


def test_full_mae_step_fullgraph():
    """patchify_and_mask -> encoder -> mae_loss -> backward in one graph, module forms included."""
    enc = torch.nn.Linear(D, D)
    loss_fn = MAELoss(P, norm_pix_loss=True)
    imgs = torch.randn(B, C, H, W)

    def step(im):
        x, mask, ids = patchify_and_mask(im, P, 0.5)
        h = enc(x)
        full = torch.cat([h, h.new_zeros(B, L - h.shape[1], D)], 1)
        pred = torch.gather(full, 1, ids.unsqueeze(-1).expand(B, L, D))  # MAE's unshuffle
        return loss_fn(pred, im, mask), mask

    assert _explain(step, imgs).graph_break_count == 0
    out = []
    for compiled in (False, True):
        enc.zero_grad(set_to_none=True)
        loss, mask = _run(step, (imgs,), compiled, seed=3)
        out.append((loss.detach(), mask, enc.weight.grad.clone()))
    assert torch.equal(out[1][1], out[0][1])
    _close(out[1][0], out[0][0])
    _close(out[1][2], out[0][2])


def test_random_masking_compiles_and_two_draws_stay_distinct():
    """Two draws in one graph are two ops (``mae_rand_`` mutates its buffer: never merged by CSE),
    and each equals its eager counterpart."""
    x = torch.randn(B, L, D)

    def step(x):
        a = random_masking(x, 0.75)
        b = random_masking(x, 0.75)
        return a[0].sum() + b[0].sum(), a[1], b[1], a[2], b[2]

    assert _explain(step, x).graph_break_count == 0
    with use_backend("cpu"):
        torch.manual_seed(11)
        eager = step(x)
        dynamo.reset()
        torch.manual_seed(11)
        compiled = torch.compile(step, backend="inductor", fullgraph=True)(x)
    assert not torch.equal(eager[1], eager[2])
    torch.manual_seed(11)  # the op draws torch.rand's numbers, as before it existed
    assert torch.equal(random_masking(x, 0.75, noise=torch.rand(B, L))[1], eager[1])
    for c, e in zip(compiled[1:], eager[1:]):
        assert torch.equal(c, e)
    _close(compiled[0], eager[0])


def test_generator_costs_one_graph_break_and_stays_reproducible():
    """A torch.Generator cannot enter a graph: the draw runs eagerly (the one break), same numbers."""
    imgs = torch.randn(B, C, H, W)

    def step(im, g):
        x, mask, ids = patchify_and_mask(im, P, 0.75, generator=g)
        return x.sum(), mask, ids

    explained = _explain(step, imgs, torch.Generator().manual_seed(5))
    assert explained.graph_break_count == 1, explained.break_reasons
    with use_backend("cpu"):
        eager = step(imgs, torch.Generator().manual_seed(5))
        dynamo.reset()
        compiled = torch.compile(step, backend="inductor")(imgs, torch.Generator().manual_seed(5))
    for c, e in zip(compiled[1:], eager[1:]):
        assert torch.equal(c, e)
    _close(compiled[0], eager[0])


def test_compiled_value_checks_raise_naming_the_argument():
    """The noise, mask and NaN checks run inside the ops, when the compiled step runs."""
    imgs = torch.randn(B, C, H, W)
    pred = torch.randn(B, L, D)
    mask = torch.ones(B, L)
    dynamo.reset()
    mask_fn = torch.compile(lambda im, n: patchify_and_mask(im, P, 0.5, noise=n)[0], backend="eager", fullgraph=True)
    loss_fn = torch.compile(lambda x, im, m: mae_loss(x, im, m, P), backend="eager", fullgraph=True)
    with use_backend("cpu"):
        noise = torch.rand(B, L)
        assert mask_fn(imgs, noise).shape == (B, L // 2, D)
        noise[1, 2] = float("nan")
        with pytest.raises(ValueError, match="noise contains NaN or inf"):
            mask_fn(imgs, noise)
        assert torch.isfinite(loss_fn(pred, imgs, mask))
        bad = mask.clone()
        bad[0, 1] = -1.0
        with pytest.raises(ValueError, match="mask must be >= 0"):
            loss_fn(pred, imgs, bad)
        bad = pred.clone()
        bad[2, 0, 5] = float("inf")
        with pytest.raises(ValueError, match="pred contains NaN or inf"):
            loss_fn(bad, imgs, mask)


def test_triton_path_compiles_fullgraph():
    """The Triton gathers and the Triton loss (interpreter on a CPU machine) trace as the same ops."""
    pytest.importorskip("triton")
    from fastrl._dispatch import interpreting
    if not interpreting() or torch.cuda.is_available():
        pytest.skip("needs TRITON_INTERPRET=1 on a CPU-only machine")
    enc = torch.nn.Linear(D, D)
    imgs = torch.randn(B, C, H, W)

    def step(im):
        x, mask, ids = patchify_and_mask(im, P, 0.5)
        h = enc(x)
        full = torch.cat([h, h.new_zeros(B, L - h.shape[1], D)], 1)
        pred = torch.gather(full, 1, ids.unsqueeze(-1).expand(B, L, D))
        rows = random_masking(pred, 0.5)[0]  # the Triton row gather
        return mae_loss(pred, im, mask, P) + rows.square().mean(), mask

    out = []
    for compiled in (False, True):
        enc.zero_grad(set_to_none=True)
        with use_backend("triton"):
            fn = torch.compile(step, backend="aot_eager", fullgraph=True) if compiled else step
            torch.manual_seed(2)
            loss, mask = fn(imgs)
            loss.backward()
        out.append((loss.detach(), mask, enc.weight.grad.clone()))
    assert torch.equal(out[1][1], out[0][1])
    _close(out[1][0], out[0][0])
    _close(out[1][2], out[0][2])
