"""Contrastive losses: both paths (chunked CPU, Triton) against the fp64
references and, when installed, lightly's NTXentLoss and open_clip's ClipLoss."""
from __future__ import annotations

import pytest
import torch

import fastrl.losses.contrastive.cpu as cpu_path
from dist_utils import require_peer
from fastrl.losses import (ClipLoss, InfoNCELoss, MoCoLoss, MoCoQueue, NTXentLoss, alignment, clip_loss,
                           info_nce, moco_loss, momentum_update, nt_xent, uniformity)
from fastrl.losses.contrastive import reference as ref

SHAPES = [(1, 3), (7, 20), (33, 20)]
TEMPS = [0.01, 0.3, 1.0]
# (loss, grad) tolerances: ~3x the largest error against fp64 measured over these
# tests on both paths (fp32: 2.4e-7 / 1.2e-5 at temperature 0.01; fp16: 1.3e-4 / 1.3e-3;
# bf16: 5.1e-4 / 8.8e-3; the references see the rounded inputs)
TOL = {torch.float32: (8e-7, 4e-5), torch.float16: (4e-4, 4e-3), torch.bfloat16: (1.5e-3, 2.7e-2)}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """16-row chunks so the CPU path's multi-chunk and online column merge run."""
    monkeypatch.setattr(cpu_path, "CHUNK_ELEMENTS", 64)


def _inputs(n, d, dtype, seed, device="cpu", k=0):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(2)]
    queue = torch.randn(k, d, generator=g, dtype=torch.float64) if k else None
    xs = [x.to(dtype) for x in xs]  # the reference sees the rounded inputs
    return [x.to(device) for x in xs], queue


def _losses(name, temp):
    """(fastrl fn, reference fn) taking (a, b, temperature-or-scale tensor, queue)."""
    table = {
        "nt_xent": (lambda a, b, t, q: nt_xent(a, b, t), lambda a, b, t, q: ref.nt_xent_reference(a, b, t)),
        "clip": (lambda a, b, t, q: clip_loss(a, b, 1 / t), lambda a, b, t, q: ref.clip_loss_reference(a, b, 1 / t)),
        "info_nce": (lambda a, b, t, q: info_nce(a, b, t), lambda a, b, t, q: ref.info_nce_reference(a, b, t)),
        "info_nce_queue": (lambda a, b, t, q: info_nce(a, b, t, queue=q),
                           lambda a, b, t, q: ref.info_nce_reference(a, b, t, queue=q)),
        "moco": (lambda a, b, t, q: moco_loss(a, b, q, t), lambda a, b, t, q: ref.moco_reference(a, b, q, t)),
        "uniformity": (lambda a, b, t, q: uniformity(a, temp), lambda a, b, t, q: ref.uniformity_reference(a, temp)),
    }
    return table[name]


def _run(fn, a, b, temp, queue, dtype, gout):
    a = a.detach().clone().requires_grad_()
    b = b.detach().clone().requires_grad_()
    cdt = torch.float64 if dtype == torch.float64 else torch.float32
    t = torch.tensor(temp, dtype=cdt, device=a.device, requires_grad=True)
    q = queue.to(device=a.device, dtype=dtype) if queue is not None else None
    loss = fn(a, b, t, q)
    grads = torch.autograd.grad(loss * gout, [a, b, t], allow_unused=True)
    return loss.detach().double().cpu(), [None if g is None else g.double().cpu() for g in grads]


def _compare(name, backend_device, n, d, temp, dtype, rtol_loss, rtol_grad, seed=0):
    if name == "uniformity" and n < 2:
        return
    (a, b), queue = _inputs(n, d, dtype, seed, backend_device, k=5 if name in ("info_nce_queue", "moco") else 0)
    ours, theirs = _losses(name, temp)
    loss, grads = _run(ours, a, b, temp, queue, dtype, 0.37)
    rloss, rgrads = _run(theirs, a.double().cpu(), b.double().cpu(), temp, queue, torch.float64, 0.37)
    assert torch.isfinite(loss)
    assert abs(float(loss - rloss)) <= rtol_loss * max(abs(float(rloss)), 1.0), (float(loss), float(rloss))
    for g, rg, what in zip(grads, rgrads, ("a", "b", "temperature")):
        if rg is None:
            assert g is None or float(g.abs().max()) == 0.0, what
            continue
        assert g is not None, what
        err = float((g - rg).abs().max())
        # N = 1: every gradient is 0 up to rounding of logits ~ 1/temp
        floor = 1e-2 * (1.0 / temp ** 2 if n == 1 else 1.0)
        assert err <= rtol_grad * max(float(rg.abs().max()), floor), (what, err, float(rg.abs().max()))


NAMES = ["nt_xent", "clip", "info_nce", "info_nce_queue", "moco", "uniformity"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("temp", TEMPS)
def test_fp32_matches_fp64_reference(backend, device, name, n, d, temp):
    _compare(name, device, n, d, temp, torch.float32, *TOL[torch.float32])


@pytest.mark.parametrize("name", NAMES)
def test_fp64_cpu_path_exact(name):
    _compare(name, "cpu", 33, 20, 0.1, torch.float64, 1e-12, 1e-10)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(backend, device, name, dtype):
    _compare(name, device, 33, 20, 0.2, dtype, *TOL[dtype])


@pytest.mark.parametrize("name", NAMES)
def test_odd_shapes_cpu(name):
    _compare(name, "cpu", 333, 100, 0.07, torch.float32, *TOL[torch.float32])


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_odd_shapes_triton(name):
    from conftest import triton_device, triton_runnable
    if not triton_runnable():
        pytest.skip("triton not runnable here")
    from fastrl import use_backend
    with use_backend("triton"):
        _compare(name, triton_device(), 333, 100, 0.07, torch.float32, *TOL[torch.float32])


@pytest.mark.parametrize("spread", [-1.0, float("inf")])
@pytest.mark.parametrize("name", ["nt_xent", "clip"])
def test_cpu_shift_strategies(monkeypatch, name, spread):
    """Both the shared-shift (one exp) and the per-row/column-shift branches."""
    monkeypatch.setattr(cpu_path, "SPREAD", spread)
    _compare(name, "cpu", 33, 20, 1.0, torch.float32, *TOL[torch.float32])


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_info_nce_reductions(backend, device, reduction):
    (a, b), queue = _inputs(7, 20, torch.float32, 3, device, k=4)
    q = queue.float().to(device)
    out = info_nce(a, b, 0.2, queue=q, reduction=reduction)
    want = ref.info_nce_reference(a.double().cpu(), b.double().cpu(), 0.2, queue=queue, reduction=reduction)
    assert out.shape == want.shape
    torch.testing.assert_close(out.double().cpu(), want, rtol=1e-5, atol=1e-6)


def test_alignment_matches_explicit_sum():
    """Oracle: a Python loop over rows with math.fsum (no torch norm)."""
    import math
    (a, b), _ = _inputs(33, 20, torch.float64, 4)
    rows = [[float(u) - float(v) for u, v in zip(ra, rb)] for ra, rb in zip(a.tolist(), b.tolist())]
    for alpha in (1, 2, 3.5):
        want = math.fsum(math.sqrt(math.fsum(t * t for t in r)) ** alpha for r in rows) / len(rows)
        assert abs(float(alignment(a, b, alpha)) - want) <= 1e-12 * want
        assert abs(float(alignment(a.float(), b.float(), alpha)) - want) <= 3e-6 * want


def _peer_parity(ours, theirs, a, b, param, gout):
    """Loss and gradients (inputs and the scalar ``param``) of two callables ``f(a, b, param)``."""
    outs = []
    for f, dev in ((ours, a.device), (theirs, "cpu")):
        x, y = a.to(dev).clone().requires_grad_(), b.to(dev).clone().requires_grad_()
        p = torch.tensor(param, device=dev, requires_grad=True)
        loss = f(x, y, p)
        (loss * gout).backward()
        outs.append([loss.detach().cpu()] + [t.grad.cpu() for t in (x, y, p) if t.grad is not None])
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-6)
    assert len(outs[0]) == len(outs[1])
    for g1, g2 in zip(outs[0][1:], outs[1][1:]):
        torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-4 * max(float(g2.abs().max()), 1e-3))


@pytest.mark.parametrize("n,d", [(7, 20), (33, 3)])
def test_lightly_ntxent_parity(backend, device, n, d):
    peer = require_peer("lightly")
    (a, b), _ = _inputs(n, d, torch.float32, 5, device)
    for temp in (0.01, 0.5, 1.0):
        _peer_parity(lambda x, y, t: NTXentLoss(temp)(x, y), lambda x, y, t: peer(temp)(x, y), a, b, temp, 2.5)


@pytest.mark.parametrize("n,d", [(7, 20), (33, 3)])
def test_open_clip_parity(backend, device, n, d):
    peer = require_peer("open_clip")
    (a, b), _ = _inputs(n, d, torch.float32, 6, device)
    a, b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    for scale in (1.0, 14.3, 100.0):
        _peer_parity(lambda x, y, s: ClipLoss()(x, y, s), lambda x, y, s: peer()(x, y, s), a, b, scale, 0.3)


def test_peer_parity_odd_shape_cpu():
    lightly, open_clip = require_peer("lightly"), require_peer("open_clip")
    (a, b), _ = _inputs(333, 100, torch.float32, 7)
    torch.testing.assert_close(nt_xent(a, b, 0.1), lightly(0.1)(a, b), rtol=1e-5, atol=1e-6)
    an, bn = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    torch.testing.assert_close(clip_loss(an, bn, 50.0), open_clip()(an, bn, 50.0), rtol=1e-5, atol=1e-6)


def test_logit_bias_cancels():
    (a, b), _ = _inputs(7, 20, torch.float32, 8)
    bias = torch.tensor(-3.0, requires_grad=True)
    loss = clip_loss(a, b, 2.0, bias)
    torch.testing.assert_close(loss, ref.clip_loss_reference(a, b, 2.0, -3.0))
    loss.backward()
    assert float(bias.grad) == 0.0


def test_bad_inputs():
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="key"):
        info_nce(a, torch.randn(6, 4))
    with pytest.raises(ValueError, match="z2"):
        nt_xent(a, torch.randn(5, 3))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(a, b, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(a, b, -1.0)
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0.0)
    with pytest.raises(ValueError, match="logit_scale"):
        clip_loss(a, b, float("nan"))
    bad = a.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="query contains NaN"):
        info_nce(bad, b)
    with pytest.raises(ValueError, match="image_features contains NaN"):
        clip_loss(bad, b, 1.0)
    with pytest.raises(ValueError, match="queue"):
        info_nce(a, b, queue=torch.randn(8, 3))
    with pytest.raises(ValueError, match="queue"):
        moco_loss(a, b, torch.randn(8, 5))
    with pytest.raises(ValueError, match="empty"):
        nt_xent(a[:0], b[:0])
    with pytest.raises(ValueError, match="reduction"):
        info_nce(a, b, reduction="max")
    with pytest.raises(ValueError, match="x needs at least 2 rows"):
        uniformity(a[:1])
    with pytest.raises(ValueError, match="dtype"):
        info_nce(a, b.double())


def test_moco_queue_ring_buffer():
    q = MoCoQueue(5, 3)
    assert q.queue.shape == (5, 3)
    torch.testing.assert_close(q.queue.norm(dim=1), torch.ones(5))
    keys = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    q.enqueue(keys)
    torch.testing.assert_close(q.queue[:4], keys)
    q.enqueue(keys[:3] + 100)
    # wraps around: rows 4, 0, 1 were overwritten
    torch.testing.assert_close(q.queue[4], keys[0] + 100)
    torch.testing.assert_close(q.queue[:2], keys[1:3] + 100)
    torch.testing.assert_close(q.queue[2:4], keys[2:4])
    with pytest.raises(ValueError, match="keys"):
        q.enqueue(torch.randn(2, 4))


def test_moco_loss_module_uses_then_updates_queue(backend, device):
    (a, b), _ = _inputs(7, 20, torch.float32, 9, device)
    loss_fn = MoCoLoss(temperature=0.2, memory_bank_size=(11, 20)).to(device)
    bank = loss_fn.memory_bank.queue.clone()
    a = a.requires_grad_()
    loss = loss_fn(a, b)
    want = ref.moco_reference(a.detach().double().cpu(), b.double().cpu(), bank.double().cpu(), 0.2)
    torch.testing.assert_close(loss.double().cpu(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_fn.memory_bank.queue[:7].cpu(), torch.nn.functional.normalize(b, dim=1).cpu())
    # lightly semantics: NTXentLoss with a memory bank is MoCo
    lightly_like = NTXentLoss(0.2, memory_bank_size=11)
    assert isinstance(lightly_like.moco, MoCoLoss)


def test_info_nce_module_with_bank():
    (a, b), _ = _inputs(7, 20, torch.float32, 10)
    loss_fn = InfoNCELoss(temperature=0.3, memory_bank_size=16)
    a = a.requires_grad_()
    first = loss_fn(a, b)  # the bank is created on the first call (random unit rows)
    bank = loss_fn.memory_bank.queue.clone()
    second = loss_fn(a, b)
    torch.testing.assert_close(second.double(), ref.info_nce_reference(
        a.detach().double(), b.double(), 0.3, queue=bank.double()), rtol=1e-5, atol=1e-6)
    assert torch.isfinite(first)


def test_momentum_update():
    online, target = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    want = [0.9 * t.detach() + 0.1 * o.detach() for o, t in zip(online.parameters(), target.parameters())]
    momentum_update(online, target, 0.9)
    for w, t in zip(want, target.parameters()):
        torch.testing.assert_close(t.detach(), w)
    with pytest.raises(ValueError, match="m must"):
        momentum_update(online, target, 1.5)
    with pytest.raises(ValueError, match="shapes"):
        momentum_update(torch.nn.Linear(4, 3), torch.nn.Linear(3, 4), 0.5)


def test_chunked_forward_never_holds_full_matrix(monkeypatch):
    """Every logit block the CPU path builds has at most the chunk's rows."""
    seen = []
    orig = cpu_path._logits_block

    def spy(q, k, r0, r1, scale, off):
        seen.append(r1 - r0)
        return orig(q, k, r0, r1, scale, off)

    monkeypatch.setattr(cpu_path, "_logits_block", spy)
    (a, b), _ = _inputs(100, 8, torch.float32, 11)
    a.requires_grad_()
    clip_loss(a, b, 3.0).backward()
    assert seen and max(seen) <= 16 and len(seen) >= 2 * (100 // 16)
