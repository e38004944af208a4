"""Barlow Twins, VICReg and SimSiam losses: both paths against the official
formulas (fp64), lightly (when installed), half precision and bad input."""
from __future__ import annotations

import pytest
import torch

from dist_utils import require_peer
from fastrl.losses import (BarlowTwinsLoss, NegativeCosineSimilarity, SimSiamLoss, VICRegLoss, barlow_twins_loss,
                           negative_cosine_similarity, simsiam_loss, vicreg_loss, vicreg_terms)
from fastrl.losses.decorrelation.reference import (barlow_twins_reference, negative_cosine_reference,
                                                   simsiam_reference, vicreg_reference, vicreg_terms_reference)

SHAPES = [(2, 5), (33, 5), (2, 1000), (33, 1000)]
FORMS = ["gram", "cross"]


def _views(n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64) * 2.0 + 0.5
    z2 = 0.6 * z1 + torch.randn(n, d, generator=g, dtype=torch.float64)
    return z1.to(dtype), z2.to(dtype)


def _grads(fn, z1, z2, gout, device="cpu", dtype=None):
    a = z1.detach().to(device=device, dtype=dtype or z1.dtype).requires_grad_()
    b = z2.detach().to(device=device, dtype=dtype or z2.dtype).requires_grad_()
    loss = fn(a, b)
    (loss * gout).backward()
    return loss.detach().double().cpu(), a.grad.double().cpu(), b.grad.double().cpu()


def _rel(x, ref):
    return float((x - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def _check_against_fp64(fn, ref, z1, z2, device, peer=None):
    """fp32 loss within 1.2e-6 of the fp64 official formula (measured <= 4.1e-7
    over these tests on both paths); fp32 gradients within 3e-6 relative to the
    largest entry (measured <= 9.6e-7), or no worse than 3x the official formula
    itself in fp32 where the gradient is ill-conditioned (N = 2: batch-normalised
    values are +-1 whatever the input, so the true gradient is ~eps-sized)."""
    gout = torch.tensor(-1.7, dtype=torch.float64)
    l64, ga64, gb64 = _grads(ref, z1, z2, gout)
    l32, ga32, gb32 = _grads(fn, z1, z2, gout, device=device, dtype=torch.float32)
    assert abs(float(l32 - l64)) <= 1.2e-6 * abs(float(l64)), (float(l32), float(l64))
    _, pa, pb = _grads(peer or ref, z1, z2, gout, dtype=torch.float32)
    for g, p, r in ((ga32, pa, ga64), (gb32, pb, gb64)):
        assert _rel(g, r) <= max(3e-6, 3 * _rel(p, r)), (_rel(g, r), _rel(p, r))


def _skip_slow_interpreter(backend, form, d):
    if backend == "triton" and form == "cross" and d >= 1000 and not torch.cuda.is_available():
        pytest.skip("D x D tiles at D=1000 are too slow for the interpreter (run with -m slow: "
                    "test_triton_cross_form_large_d); gram form covers D=1000 on Triton by default")


LOSSES = {"barlow": (barlow_twins_loss, barlow_twins_reference), "vicreg": (vicreg_loss, vicreg_reference)}


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_matches_official(backend, device, name, n, d, form):
    _skip_slow_interpreter(backend, form, d)
    fn, ref = LOSSES[name]
    z1, z2 = _views(n, d, seed=n * 7 + d + len(name))
    _check_against_fp64(lambda a, b: fn(a, b, form=form), ref, z1, z2, device)


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 33])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_triton_cross_form_large_d(name, n):
    """The D x D-tile kernels at D = 1000 (slow under the interpreter)."""
    from fastrl import use_backend
    from fastrl._dispatch import interpreting, triton_available
    if not triton_available() or not (interpreting() or torch.cuda.is_available()):
        pytest.skip("triton path not runnable here")
    fn, ref = LOSSES[name]
    z1, z2 = _views(n, 1000, seed=n + 5)
    with use_backend("triton"):
        _check_against_fp64(lambda a, b: fn(a, b, form="cross"), ref, z1, z2,
                            "cpu" if interpreting() else "cuda")


@pytest.mark.parametrize("form", ["auto", "gram", "cross"])
def test_vicreg_terms_and_weights(backend, device, form):
    z1, z2 = _views(21, 19, seed=3)
    ref = vicreg_terms_reference(z1, z2, eps=1e-4)
    got = vicreg_terms(z1.float().to(device), z2.float().to(device), form=form)
    for g, r in zip(got, ref):
        assert abs(float(g) - float(r)) <= 1e-5 * abs(float(r)) + 1e-7
    # a view with small variance makes the hinge active on some columns only
    z1[:, :7] *= 0.3
    loss = vicreg_loss(z1.float().to(device), z2.float().to(device), 3.0, 5.0, 0.7, eps=1e-3, form=form)
    ref = vicreg_reference(z1, z2, 3.0, 5.0, 0.7, eps=1e-3)
    assert abs(float(loss) - float(ref)) <= 1e-5 * abs(float(ref))


def test_fp64_exact_and_forms_agree(backend, device):
    """fp64 inputs take the torch path (auto, cpu) and agree to rounding; a forced
    triton backend rejects them (its kernels take fp32/fp16/bf16 only, issue 23)."""
    z1, z2 = _views(40, 24, seed=5)
    gout = torch.tensor(0.3, dtype=torch.float64)
    if backend == "triton":
        with pytest.raises(ValueError, match="float64"):
            barlow_twins_loss(z1.to(device), z2.to(device), 0.02)
        return
    ref = _grads(lambda a, b: barlow_twins_reference(a, b, 0.02), z1, z2, gout)
    for form in ("gram", "cross"):
        got = _grads(lambda a, b: barlow_twins_loss(a, b, 0.02, form=form), z1, z2, gout, device=device)
        for g, r in zip(got, ref):
            assert _rel(g, r) < 1e-10


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["barlow", "vicreg"])
def test_half_precision_inputs(backend, device, dtype, name):
    """Half inputs are upcast once: the loss matches fp64 on the rounded inputs;
    gradients come back in the input dtype (one rounding)."""
    fn, ref = LOSSES[name]
    z1, z2 = _views(24, 40, seed=9)
    h1, h2 = z1.to(dtype), z2.to(dtype)
    gout = torch.tensor(1.3, dtype=torch.float64)
    l64, ga, gb = _grads(ref, h1.double(), h2.double(), gout)
    a = h1.to(device).requires_grad_()
    b = h2.to(device).requires_grad_()
    loss = fn(a, b)
    (loss * gout.float()).backward()
    assert loss.dtype == torch.float32 and a.grad.dtype == dtype
    # measured against fp64: loss <= 1.1e-7, grads <= 5.3e-4 (fp16) and 4.2e-3 (bf16); ~3x
    assert abs(float(loss.detach()) - float(l64)) <= 4e-7 * abs(float(l64))
    tol = 1.3e-2 if dtype == torch.bfloat16 else 1.6e-3
    assert _rel(a.grad.double().cpu(), ga) < tol and _rel(b.grad.double().cpu(), gb) < tol


@pytest.mark.parametrize("n,d", SHAPES)
def test_against_lightly(n, d):
    from benchmarks.losses_decorrelation import lightly_losses
    peers = lightly_losses()
    if len(peers) < 3:
        require_peer("lightly_vicreg")  # skips, or fails in CI
        pytest.fail(f"lightly's decorrelation losses did not load: got {sorted(peers)}")
    z1, z2 = _views(n, d, seed=n + 13 * d)
    _check_against_fp64(BarlowTwinsLoss(), lambda a, b: barlow_twins_reference(a, b, 5e-3), z1, z2, "cpu",
                        peer=peers["BarlowTwinsLoss"]())
    _check_against_fp64(VICRegLoss(), vicreg_reference, z1, z2, "cpu", peer=peers["VICRegLoss"]())
    p, z = _views(n, d, seed=1)
    got = NegativeCosineSimilarity()(p.float(), z.float())
    assert abs(float(got) - float(peers["NegativeCosineSimilarity"]()(p, z))) < 1e-6


def test_modules_defaults():
    assert BarlowTwinsLoss().lambda_param == 5e-3 and not BarlowTwinsLoss().gather_distributed
    v = VICRegLoss()
    assert (v.lambda_param, v.mu_param, v.nu_param, v.eps) == (25.0, 25.0, 1.0, 1e-4)
    z1, z2 = _views(9, 6, seed=2)
    assert abs(float(BarlowTwinsLoss()(z1, z2)) - float(barlow_twins_reference(z1, z2, 5e-3))) < 1e-10
    terms = v.terms(z1, z2)
    assert abs(float(v(z1, z2)) - float(25 * terms[0] + 25 * terms[1] + terms[2])) < 1e-10


def test_simsiam_and_negative_cosine():
    p1, p2 = _views(13, 7, seed=4)
    z1, z2 = _views(13, 7, seed=8)
    p1.requires_grad_()
    z2.requires_grad_()
    loss = SimSiamLoss()(p1, p2, z1, z2)
    ref = simsiam_reference(p1, p2, z1, z2)
    assert abs(float(loss) - float(ref)) < 1e-12 and float(simsiam_loss(p1, p2, z1, z2)) == float(loss)
    loss.backward()
    assert z2.grad is None and p1.grad is not None  # stop-gradient on z
    assert abs(float(negative_cosine_similarity(p1, z1)) - float(negative_cosine_reference(p1, z1))) < 1e-12
    assert abs(float(negative_cosine_similarity(p1, p1)) + 1.0) < 1e-12


@pytest.mark.parametrize("fn", [barlow_twins_loss, vicreg_loss])
def test_bad_input(fn):
    z = torch.randn(8, 4)
    with pytest.raises(ValueError, match="z1 needs a batch of at least 2 rows"):
        fn(z[:1], z[:1])
    with pytest.raises(ValueError, match="z1 is an empty batch"):
        fn(z[:0], z[:0])
    with pytest.raises(ValueError, match="z1 and z2 must have the same shape"):
        fn(z, z[:, :3])
    bad = z.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="z2 contains NaN or inf"):
        fn(z, bad)
    bad[3, 1] = float("inf")
    with pytest.raises(ValueError, match="z1 contains NaN or inf"):
        fn(bad, z)
    with pytest.raises(ValueError, match="z1 must be 2-D"):
        fn(z[0], z[0])
    with pytest.raises(ValueError, match="same dtype"):
        fn(z, z.double())
    with pytest.raises(ValueError, match="form must be one of"):
        fn(z, z, form="dense")
    with pytest.raises(TypeError, match="z2 must be a torch.Tensor"):
        fn(z, z.numpy())
    with pytest.raises(ValueError, match="eps must be > 0"):
        fn(z, z, eps=0.0)


def test_bad_input_cosine():
    with pytest.raises(ValueError, match="p and z must have the same shape"):
        negative_cosine_similarity(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="lambda_ must be >= 0"):
        barlow_twins_loss(torch.randn(3, 4), torch.randn(3, 4), -1.0)
    with pytest.raises(ValueError, match="p1 and z2 must have the same shape"):
        simsiam_loss(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4), torch.randn(2, 4))


def test_negative_cosine_nan_named():
    p = torch.randn(4, 3)
    z = p.clone()
    z[1, 2] = float("nan")
    with pytest.raises(ValueError, match="z contains NaN or inf"):
        negative_cosine_similarity(p, z)
    with pytest.raises(ValueError, match="p contains NaN or inf"):
        NegativeCosineSimilarity()(z, p)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gram_form_never_builds_d_by_d(name):
    """CPU path, N < D: no op (forward or backward) outputs a D x D-sized tensor;
    the largest is an N x D view-sized buffer (the reference builds several D x D)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.numel = max(self.numel, t.numel())
            return out

    n, d = 6, 300
    z1, z2 = _views(n, d, seed=1, dtype=torch.float32)
    fn, ref = LOSSES[name]
    for f, bound in ((fn, n * d), (ref, d * d)):
        a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        with Largest() as mode:
            f(a, b).backward()
        assert (mode.numel <= bound) if f is fn else (mode.numel >= bound)


@pytest.mark.parametrize("form", FORMS)
def test_backward_twice_retain_graph(backend, device, form):
    """The CPU path's kept C is consumed by the first backward; a second one recomputes."""
    z1, z2 = _views(17, 9, seed=6, dtype=torch.float32)
    a, b = z1.to(device).requires_grad_(), z2.to(device).requires_grad_()
    loss = barlow_twins_loss(a, b, form=form) + vicreg_loss(a, b, form=form)
    loss.backward(retain_graph=True)
    first = a.grad.clone(), b.grad.clone()
    loss.backward()
    torch.testing.assert_close(a.grad, 2 * first[0])
    torch.testing.assert_close(b.grad, 2 * first[1])


def test_negative_cosine_empty_feature_dim_refused():
    # the cosine of zero-length vectors is undefined: F.cosine_similarity alone returns 0 here
    with pytest.raises(ValueError, match="empty feature dimension"):
        negative_cosine_similarity(torch.randn(4, 0), torch.randn(4, 0))
    with pytest.raises(ValueError, match="dim must be in"):
        negative_cosine_similarity(torch.randn(4, 3), torch.randn(4, 3), dim=2)


@pytest.mark.parametrize("n, d", [(64, 32), (12, 40)])  # cross (D x D) form and Gram form
@pytest.mark.parametrize("fn", [barlow_twins_loss, vicreg_loss])
def test_backward_under_bf16_autocast(backend, device, fn, n, d):
    # the losses take the fp32 inputs as given under autocast: loss and gradients
    # equal the fp32 run (the CPU path used to mix a bf16 C with fp32 views in backward)
    g = torch.Generator().manual_seed(n + d)
    z1, z2 = torch.randn(n, d, generator=g).to(device), torch.randn(n, d, generator=g).to(device)
    a1, a2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        loss = fn(a1, a2)
    (loss * 0.7).backward()
    b1, b2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    ref = fn(b1, b2)
    (ref * 0.7).backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(a1.grad, b1.grad)
    torch.testing.assert_close(a2.grad, b2.grad)
