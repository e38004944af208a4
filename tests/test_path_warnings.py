"""Every change of path is visible (issue 23): a FallbackWarning once per process, the
same facts in ``backend_info()["fallbacks"]``, and a forced backend that cannot run raises.

CUDA is simulated on the CPU by a tensor subclass whose ``is_cuda`` is True (the ops
then run their torch path on the CPU data), so these tests need no GPU."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from fastrl import _dispatch, backend_info, use_backend
from fastrl._dispatch import FallbackWarning, fallbacks, use_triton, use_triton_no_fp64, warn_fallback
from fastrl.losses import barlow_twins_loss, clip_loss, info_nce, nt_xent, siglip_loss, vicreg_loss
from fastrl.losses.contrastive import lse_core

from conftest import triton_device, triton_runnable

needs_triton = pytest.mark.skipif(not triton_runnable(), reason="triton path not runnable here")


class FakeCuda(torch.Tensor):
    """A CPU tensor that reports ``is_cuda`` (the dispatch's device check)."""

    @property
    def is_cuda(self):
        return True


def _fake_cuda(*shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).as_subclass(FakeCuda)


@pytest.fixture(autouse=True)
def fresh_fallbacks():
    _dispatch._reset_fallbacks()
    yield
    _dispatch._reset_fallbacks()


def _fallback_warnings(fn, times=2):
    """Run ``fn`` ``times`` times; return the FallbackWarnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(times):
            fn()
    return [w for w in caught if issubclass(w.category, FallbackWarning)]


def _assert_once(fn, key, *words):
    got = _fallback_warnings(fn)
    assert len(got) == 1, [str(w.message) for w in got]
    msg = str(got[0].message)
    for word in words:
        assert word in msg, (word, msg)
    info = backend_info()["fallbacks"]
    assert info[key] == msg and fallbacks() == info
    return got[0]


def test_warn_fallback_once_and_recorded():
    w = _assert_once(lambda: warn_fallback("test.key", "asked X, runs Y because Z"), "test.key", "asked X")
    assert w.filename == __file__  # points at the caller outside fastrl
    warn_fallback("test.other", "second")
    assert set(backend_info()["fallbacks"]) == {"test.key", "test.other"}


# ------------------------------------------------------------------ auto: CUDA without triton
def test_auto_cuda_without_triton_warns(monkeypatch):
    monkeypatch.setattr(_dispatch, "triton_available", lambda: False)
    x = _fake_cuda(6, 4)
    with use_backend("auto"):
        _assert_once(lambda: use_triton(x), "dispatch.cuda_without_triton", "triton", "torch path", "auto")
        assert use_triton(x) is False
        # through a public loss: the warning points at the user's call
        _dispatch._reset_fallbacks()
        w = _assert_once(lambda: nt_xent(_fake_cuda(6, 4), _fake_cuda(6, 4, seed=1)),
                         "dispatch.cuda_without_triton", "triton")
        assert w.filename == __file__


def test_auto_quiet_when_nothing_changes(monkeypatch):
    monkeypatch.setattr(_dispatch, "triton_available", lambda: False)
    with use_backend("auto"):
        assert _fallback_warnings(lambda: use_triton(torch.ones(3))) == []  # CPU tensors: the CPU path is the plan
    with use_backend("cpu"):
        assert _fallback_warnings(lambda: use_triton(_fake_cuda(3))) == []  # asked for
    assert backend_info()["fallbacks"] == {}


# ------------------------------------------------------------------ float64 and the Triton kernels
def _fp64_calls():
    g = torch.Generator().manual_seed(3)
    a = F.normalize(torch.randn(8, 5, generator=g, dtype=torch.float64), dim=1)
    b = F.normalize(torch.randn(8, 5, generator=g, dtype=torch.float64), dim=1)
    return {
        "contrastive LSE": [lambda: nt_xent(a, b), lambda: clip_loss(a, b, 10.0), lambda: info_nce(a, b)],
        "siglip loss": [lambda: siglip_loss(a, b, 10.0, -10.0)],
        "decorrelation loss": [lambda: barlow_twins_loss(a, b), lambda: vicreg_loss(a, b)],
    }


@pytest.mark.parametrize("op", ["contrastive LSE", "siglip loss", "decorrelation loss"])
def test_forced_triton_rejects_float64(op):
    with use_backend("triton"):
        for call in _fp64_calls()[op]:
            with pytest.raises(ValueError, match=r"(?s)float64.*'triton'|'triton'.*float64") as err:
                call()
            assert op in str(err.value)
    assert backend_info()["fallbacks"] == {}


@pytest.mark.parametrize("op", ["contrastive LSE", "siglip loss", "decorrelation loss"])
def test_float64_other_backends_run(op):
    for name in ("auto", "cpu"):
        with use_backend(name):
            for call in _fp64_calls()[op]:
                out = call()
                assert out.dtype == torch.float64 and torch.isfinite(out)
    assert backend_info()["fallbacks"] == {}  # CPU tensors: nothing changed path


def test_auto_float64_on_cuda_warns(monkeypatch):
    monkeypatch.setattr(_dispatch, "triton_available", lambda: True)
    x = _fake_cuda(6, 4, dtype=torch.float64)
    with use_backend("auto"):
        _assert_once(lambda: use_triton_no_fp64("siglip loss", x), "siglip loss.float64_on_cuda", "float64",
                     "torch path")
        assert use_triton_no_fp64("siglip loss", x) is False
        # float32 on (fake) CUDA with triton: the Triton path, no warning
        assert _fallback_warnings(lambda: use_triton_no_fp64("siglip loss", _fake_cuda(6, 4)) or None) == []
        assert use_triton_no_fp64("siglip loss", _fake_cuda(6, 4)) is True


# ------------------------------------------------------------------ Triton-only options on the CPU path
def _core(**kw):
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(9, 4, generator=g), torch.randn(9, 4, generator=g)
    return lse_core(q, k, torch.tensor(1.5), **kw)


@pytest.mark.parametrize("kw,key", [(dict(precision="ieee"), "contrastive.precision_ignored"),
                                    (dict(store_logits=True), "contrastive.store_logits_ignored")])
def test_triton_options_ignored_on_cpu_path_warn(kw, key):
    with use_backend("cpu"):
        w = _assert_once(lambda: _core(**kw), key, next(iter(kw)), "CPU path", "ignored")
    assert w.filename == __file__


def test_triton_options_default_values_quiet():
    with use_backend("cpu"):
        assert _fallback_warnings(lambda: _core()) == []
        assert _fallback_warnings(lambda: _core(store_logits=False)) == []  # the CPU path does not store
    assert backend_info()["fallbacks"] == {}


@needs_triton
def test_triton_options_used_on_triton_path_quiet():
    g = torch.Generator().manual_seed(6)
    q, k = torch.randn(9, 4, generator=g).to(triton_device()), torch.randn(9, 4, generator=g).to(triton_device())
    with use_backend("triton"):
        assert _fallback_warnings(lambda: lse_core(q, k, torch.tensor(1.5), precision="ieee", store_logits=True)) == []
    assert backend_info()["fallbacks"] == {}


# ------------------------------------------------------------------ stored logits: torch.mm(out_dtype) failing
def test_stored_mm_out_dtype_failure_warns():
    from fastrl.losses.contrastive import stored
    a = _fake_cuda(5, 3, dtype=torch.float16)
    b = _fake_cuda(3, 4, dtype=torch.float16, seed=1)
    # aten::mm.dtype has no CPU kernel: on these (fake-CUDA) CPU tensors it fails like an old CUDA build
    got = _assert_once(lambda: stored._mm(a, b), "contrastive.stored_mm_out_dtype", "out_dtype", "float32",
                       "upcast")
    assert "float16" in str(got.message)
    out = stored._mm(a, b)
    assert out.dtype == torch.float32
    torch.testing.assert_close(torch.Tensor(out), torch.Tensor(a).float() @ torch.Tensor(b).float())


# ------------------------------------------------------------------ MAE: the fused patch gather under autograd
@pytest.mark.parametrize("backend_name", ["cpu", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_patchify_and_mask_fused_path_differentiable(backend_name, dtype):
    """``imgs.requires_grad`` used to skip the fused gather silently; now the fused path
    (Numba on CPU, Triton) runs and scatters the gradient back."""
    from fastrl.masking import patchify_and_mask
    if backend_name == "triton" and not triton_runnable():
        pytest.skip("triton path not runnable here")
    dev = triton_device() if backend_name == "triton" else "cpu"
    g = torch.Generator().manual_seed(7)
    imgs = torch.randn(2, 3, 8, 12, generator=g, dtype=dtype).to(dev).requires_grad_()
    noise = torch.rand(2, 6, generator=g).to(dev)
    with use_backend(backend_name):
        got = _fallback_warnings(lambda: patchify_and_mask(imgs, 4, 0.5, noise=noise), times=1)
        out, mask, _ = patchify_and_mask(imgs, 4, 0.5, noise=noise)
    assert got == [] and "mae_gather_patches" in type(out.grad_fn).__name__  # the fused gather op's backward
    weight = torch.randn(out.shape, generator=g, dtype=dtype).to(dev)
    (out * weight).sum().backward()
    # oracle: patchify by explicit loops, gather by the kept ids (smallest noise first)
    ref_imgs = imgs.detach().clone().requires_grad_()
    p, w = 4, 3
    ids = torch.argsort(noise, dim=1)[:, :3]
    rows = [[ref_imgs[b, :, (i // w) * p:(i // w + 1) * p, (i % w) * p:(i % w + 1) * p].permute(1, 2, 0).reshape(-1)
             for i in ids[b].tolist()] for b in range(2)]
    ref = torch.stack([torch.stack(r) for r in rows])
    torch.testing.assert_close(out.detach(), ref.detach(), rtol=0, atol=0)
    (ref * weight).sum().backward()
    torch.testing.assert_close(imgs.grad, ref_imgs.grad, rtol=0, atol=0)
    assert int(mask.sum()) == 6
