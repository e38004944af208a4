"""GPU readiness of the contrastive kernels, proven under the interpreter (and natively
on CUDA, where the ``gpu``-marked tests run): fp16 backward underflow, fp32 dot
precisions, the bounded autotuning space and its fixed-config switch, the column
mask of ``lse_core`` on both paths, and the stored-logits path."""
from __future__ import annotations

import functools
import itertools

import pytest
import torch
import torch.nn.functional as F

from fastrl._dispatch import autotune_enabled, backend_info, fp32_precision, interpreting, use_backend
from fastrl.losses.contrastive import clip_loss, info_nce, lse_core, nt_xent

from conftest import triton_device, triton_runnable

needs_triton = pytest.mark.skipif(not triton_runnable(), reason="triton path not runnable here")
# native kernels on a CUDA device (benchmarks/gpu_check.sh runs them with -m "gpu or not slow")
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available() or interpreting(),
                                   reason="needs a CUDA device (native Triton kernels)")


def _tk():
    from fastrl.losses.contrastive import triton_kernels
    return triton_kernels


def _leaf(x, dev, dtype=None):
    return x.detach().to(dev, dtype or x.dtype).clone().requires_grad_()


def _clip_grad_errors(n, d, dtype, backend, grad_scale=1.0, tiles=None, ref_device="cpu"):
    """Relative max error of the clip_loss feature gradients against fp64 (CPU path on ref_device)."""
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    b = F.normalize(a + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)

    def grads(be, dt, dev):
        x, y = _leaf(a, dev, dt), _leaf(b, dev, dt)
        with use_backend(be), _tk().tile_config(tiles):
            (clip_loss(x, y, 10.0) * grad_scale).backward()
        return x.grad.double().cpu(), y.grad.double().cpu()

    ref = grads("cpu", torch.float64, ref_device)
    out = grads(backend, dtype, triton_device() if backend == "triton" else ref_device)
    return [float((o - r).abs().max() / r.abs().max()) for o, r in zip(out, ref)]


# fp16 gradient error against fp64 measured on the CPU path: 7.8e-4 (N=4096), 1.0e-3 (N=512, g x 0.01)
@needs_triton
def test_fp16_backward_no_underflow_n4096():
    # g = 1/(2N): P = softmax * g fell below fp16's smallest subnormal before the fix (4.7e-3 error)
    tiles = dict(BLOCK_M=1024, BLOCK_N=1024)  # few big tiles: the interpreter pays per tile
    errs_cpu = _clip_grad_errors(4096, 16, torch.float16, "cpu")
    errs = _clip_grad_errors(4096, 16, torch.float16, "triton", tiles=tiles)
    assert max(errs_cpu) < 2.5e-3
    assert max(errs) < 2.5e-3, errs


@needs_triton
@pytest.mark.parametrize("scaled", [True, False])
def test_fp16_backward_underflow_small_gradient(monkeypatch, scaled):
    # the same underflow at N=512 with the loss scaled by 0.01; the unscaled P is the old kernel
    monkeypatch.setattr(_tk(), "grad_rows", functools.partial(_tk().grad_rows, scale_fp16_p=scaled))
    errs = _clip_grad_errors(512, 16, torch.float16, "triton", grad_scale=0.01, tiles=dict(BLOCK_M=256, BLOCK_N=256))
    if scaled:
        assert max(errs) < 3e-3, errs
    else:  # documents that the test detects the bug: the unscaled P loses the small terms
        assert max(errs) > 5e-3, errs


def _core_outputs(backend, q, k, scale, **kw):
    dev = triton_device() if backend == "triton" else "cpu"
    qq = _leaf(q, dev)
    kk = qq if kw.get("symmetric") else _leaf(k, dev)
    sc = _leaf(scale, dev)
    with use_backend(backend):
        r, c = lse_core(qq, kk, sc, **kw)
        loss = (r * torch.linspace(-2, 1, r.numel(), device=dev)).sum()
        if c is not None:
            loss = loss + (c * torch.linspace(-1, 2, c.numel(), device=dev)).sum()
        loss.backward()
    outs = [r, c, qq.grad, None if kw.get("symmetric") else kk.grad, sc.grad]
    return [None if o is None else o.detach().double().cpu() for o in outs]


@needs_triton
@pytest.mark.parametrize("mask_offset,want_col,symmetric",
                         [c for c in itertools.product([None, 0, 3, -2], [False, True], [False, True])
                          if not (c[1] and c[2])])
def test_lse_core_backends_agree(mask_offset, want_col, symmetric):
    # issue 12: the Triton column LSE ignored mask_offset (column 0: 2.3861 against 1.9533)
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(40, 9, generator=g), torch.randn(40, 9, generator=g)
    scale = torch.tensor(1.3)
    kw = dict(mask_offset=mask_offset, want_col=want_col, symmetric=symmetric)
    ref = _core_outputs("cpu", q.double(), k.double(), scale.double(), **kw)
    for backend in ("cpu", "triton"):
        out = _core_outputs(backend, q, k, scale, **kw)
        for o, r in zip(out, ref):
            assert (o is None) == (r is None)
            if r is not None:
                torch.testing.assert_close(o, r, rtol=2e-5, atol=2e-5 * max(float(r.abs().max()), 1.0))


@needs_triton
def test_lse_core_column_mask_example():
    # the case: N = 8, col 0 of the masked logits (j == i + 1 excluded)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    s = q.double() @ k.double().T
    s[torch.arange(7), torch.arange(1, 8)] = float("-inf")
    want = torch.logsumexp(s, dim=0)
    with use_backend("triton"):
        _, c = lse_core(q.to(triton_device()), k.to(triton_device()), torch.tensor(1.0), mask_offset=1,
                        want_col=True)
    torch.testing.assert_close(c.double().cpu(), want, rtol=1e-5, atol=1e-5)


@needs_triton
@pytest.mark.parametrize("precision", ["tf32x3", "ieee", "tf32"])
def test_fp32_precisions(monkeypatch, precision):
    """Each precision reaches the kernel launches (``PREC``, the ``tl.dot`` input_precision),
    from FASTRL_FP32_PRECISION and from the ``precision`` argument (which wins over the
    variable). The interpreter computes every precision in IEEE, so the numeric check is
    tight there; on a GPU tf32 keeps 10 mantissa bits."""
    tk = _tk()
    seen = []
    launch = tk._launch

    def spy(kernel, tuned, grid_of, args, flags, *rest):
        seen.append(("bwd" if "GRAD_B" in flags else "fwd", flags["PREC"]))
        return launch(kernel, tuned, grid_of, args, flags, *rest)

    monkeypatch.setattr(tk, "_launch", spy)
    g = torch.Generator().manual_seed(2)
    a = F.normalize(torch.randn(45, 24, generator=g), dim=1)
    b = F.normalize(torch.randn(45, 24, generator=g), dim=1)
    ref = clip_loss(a.double(), b.double(), 20.0)
    tol = 2e-3 if precision == "tf32" and not triton_device() == "cpu" else 1e-5
    monkeypatch.setenv("FASTRL_FP32_PRECISION", precision)
    assert fp32_precision() == precision and backend_info()["fp32_precision"] == precision
    dev = triton_device()
    with use_backend("triton"):
        x, y = _leaf(a, dev), _leaf(b, dev)
        out_env = clip_loss(x, y, 20.0)
        out_env.backward()
        assert seen == [("fwd", precision), ("bwd", precision)], seen
        seen.clear()
        # the argument overrides the variable
        monkeypatch.setenv("FASTRL_FP32_PRECISION", next(p for p in ("ieee", "tf32") if p != precision))
        q = _leaf(a, dev)
        r, _ = lse_core(q, b.to(dev), torch.tensor(20.0), precision=precision)
        r.sum().backward()
        assert seen == [("fwd", precision), ("bwd", precision)], seen
    assert abs(float(out_env.detach()) - float(ref)) <= tol * abs(float(ref))
    want = torch.logsumexp(20.0 * a.double() @ b.double().T, dim=1)
    torch.testing.assert_close(r.detach().double().cpu(), want, rtol=tol, atol=tol)


def test_fp32_precision_validation(monkeypatch):
    monkeypatch.delenv("FASTRL_FP32_PRECISION", raising=False)
    assert fp32_precision() == "tf32x3"  # the fp32 GPU default
    with pytest.raises(ValueError, match="FASTRL_FP32_PRECISION"):
        fp32_precision("fp64")
    monkeypatch.setenv("FASTRL_FP32_PRECISION", "tf64")
    with pytest.raises(ValueError, match="tf64"):
        fp32_precision()


def test_autotune_switch(monkeypatch):
    monkeypatch.delenv("FASTRL_AUTOTUNE", raising=False)
    assert autotune_enabled() and backend_info()["autotune"] is True
    monkeypatch.setenv("FASTRL_AUTOTUNE", "0")
    assert not autotune_enabled() and backend_info()["autotune"] is False


@needs_triton
def test_tuning_space_is_small_and_admits_wide_tiles():
    tk = _tk()
    assert len(tk.CONFIGS) <= 6
    for kernel in (tk._fwd_tuned, tk._bwd_tuned):
        assert len(kernel.configs) <= 6
        assert "BLOCK_D" in kernel.keys and "N_BUCKET" in kernel.keys
    kept = functools.partial(tk.kept_configs, smem_bytes=tk.smem_budget_for(tk.SMEM_LIMITS["sm_90"]))
    # Hopper's wgmma wants M a multiple of 64: at D = 512 (bf16) the forward keeps BLOCK_M 128
    # and 64, the backward (with its [BLOCK_M, D] fp32 accumulator) 64
    assert {128, 64} <= {c["BLOCK_M"] for c in kept(512, 2)}
    assert kept(512, 2, backward=True)[0]["BLOCK_M"] == 64
    # without register spills on sm_90 (ptxas, benchmarks/aot_sm90.py): the fp16 backward at
    # D = 128 keeps 64 x 32 and the 16 x 32 fallback; 128-row tiles spilled there
    assert [(c["BLOCK_M"], c["BLOCK_N"]) for c in kept(128, 2, backward=True)] == [(64, 32), (16, 32)]
    assert kept(128, 2)[0]["BLOCK_M"] == 128  # the fixed config at small D
    assert kept(8192, 4) == [tk.CONFIGS[-1]]  # never empty
    assert [tk.n_bucket(n) for n in (10, 1024, 1025, 5000, 65536, 10 ** 6)] == [1024, 1024, 4096, 16384, 65536,
                                                                                  65536]


@needs_triton
def test_fixed_config_when_autotune_off(monkeypatch):
    tk = _tk()
    monkeypatch.setenv("FASTRL_AUTOTUNE", "0")
    monkeypatch.setattr(tk, "interpreting", lambda: False)
    assert tk._fixed(512, 2) == tk.kept_configs(512, 2)[0]
    assert tk._fixed(512, 2, backward=True) == tk.kept_configs(512, 2, backward=True)[0]
    monkeypatch.setenv("FASTRL_AUTOTUNE", "1")
    assert tk._fixed(512, 2) is None  # autotune on a GPU


@needs_triton
@pytest.mark.parametrize("gpu", ["sm_90", "sm_80", "sm_89"])
def test_kept_configs_fit_each_gpu(gpu):
    """At Hopper's (227 KiB), Ampere's (163 KiB) and Ada's (99 KiB) shared memory, every
    kept config fits the budget unless it is the lone fallback when nothing fits."""
    tk = _tk()
    budget = tk.smem_budget_for(tk.SMEM_LIMITS[gpu])
    assert budget == tk.SMEM_LIMITS[gpu] - tk.SMEM_MARGIN
    for block_d, eb, backward in itertools.product((64, 128, 256, 512), (2, 4), (False, True)):
        kept = tk.kept_configs(block_d, eb, backward, smem_bytes=budget)
        fits = [c for c in tk.CONFIGS if tk._cost(c, block_d, eb, backward)[0] <= budget]
        if fits:
            assert all(c in fits for c in kept), (gpu, block_d, eb, backward, kept)
        else:
            assert kept == [tk.CONFIGS[-1]]
    # the fixed (first) config of the bf16 forward at D = 512, by _cost's (BLOCK_M + stages * BLOCK_N)
    # * 512 * 2 bytes: Hopper 128 x 32 (192 KiB <= 200), Ampere 64 x 32 (128 <= 136), Ada 16 x 32 (48 <= 72)
    first = tk.kept_configs(512, 2, smem_bytes=budget)[0]
    assert (first["BLOCK_M"], first["BLOCK_N"]) == {"sm_90": (128, 32), "sm_80": (64, 32), "sm_89": (16, 32)}[gpu]


@needs_triton
def test_smem_budget_reads_the_device(monkeypatch):
    import types
    tk = _tk()
    fallback = tk.smem_budget_for(tk.SMEM_FALLBACK)
    assert tk.smem_budget("cpu") == fallback
    if not torch.cuda.is_available():
        assert tk.smem_budget() == fallback
    # triton's driver first (max_shared_mem), then torch's device properties
    props = {"max_shared_mem": tk.SMEM_LIMITS["sm_80"]}
    fake = types.SimpleNamespace(runtime=types.SimpleNamespace(driver=types.SimpleNamespace(
        active=types.SimpleNamespace(utils=types.SimpleNamespace(get_device_properties=lambda i: props)))))
    monkeypatch.setattr(tk, "triton", fake)
    tk._device_smem_limit.cache_clear()
    try:
        assert tk.smem_budget(0) == tk.smem_budget_for(tk.SMEM_LIMITS["sm_80"])
        tk._device_smem_limit.cache_clear()
        monkeypatch.setattr(tk, "triton", types.SimpleNamespace())  # no driver: torch answers
        monkeypatch.setattr(torch.cuda, "get_device_properties",
                            lambda i: types.SimpleNamespace(shared_memory_per_block_optin=tk.SMEM_LIMITS["sm_89"]))
        assert tk.smem_budget(1) == tk.smem_budget_for(tk.SMEM_LIMITS["sm_89"])
        # the fixed config without autotuning follows the device's budget
        monkeypatch.setenv("FASTRL_AUTOTUNE", "0")
        monkeypatch.setattr(tk, "interpreting", lambda: False)
        ada = tk.kept_configs(512, 2, smem_bytes=tk.smem_budget_for(tk.SMEM_LIMITS["sm_89"]))[0]
        assert tk._fixed(512, 2, device=1) == ada
    finally:
        tk._device_smem_limit.cache_clear()


@needs_triton
def test_tile_config_is_thread_local_and_nests():
    import threading
    tk = _tk()
    cfg = dict(BLOCK_M=16, BLOCK_N=16)
    other = []
    with tk.tile_config(cfg):
        t = threading.Thread(target=lambda: other.append(tk._override()))
        t.start()
        t.join()
        with tk.tile_config(col_groups=3):
            assert tk._override() == {"cfg": cfg, "groups": 3}
        assert tk._override() == {"cfg": cfg}
    assert tk._override() == {} and other == [{}]


@needs_triton
def test_backward_keeps_the_forward_tile_config(monkeypatch):
    """autograd may run the backward on its device thread, which does not see the caller's
    thread-local tile_config: the backward launches use the forward's tiles."""
    tk = _tk()
    seen = []
    launch = tk._launch

    def spy(kernel, tuned, grid_of, args, flags, *rest):
        seen.append(("bwd" if "GRAD_B" in flags else "fwd", tk._fixed(16, 4)))
        return launch(kernel, tuned, grid_of, args, flags, *rest)

    monkeypatch.setattr(tk, "_launch", spy)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(40, 9, generator=g).to(triton_device()).requires_grad_()
    tiles = dict(BLOCK_M=16, BLOCK_N=32)
    with use_backend("triton"):
        with tk.tile_config(tiles):
            r, _ = lse_core(x, x, torch.tensor(1.0), mask_offset=0, symmetric=True)
        assert tk._override() == {}
        r.sum().backward()  # outside the block, as on another thread
    assert seen == [("fwd", tiles), ("bwd", tiles)], seen


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("loss", ["clip", "info_nce", "nt_xent"])
def test_stored_logits_path_matches(monkeypatch, dtype, loss):
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(37, 20, generator=g), torch.randn(37, 20, generator=g)
    fns = {"clip": lambda x, y: clip_loss(F.normalize(x, dim=1), F.normalize(y, dim=1), 14.0),
           "info_nce": lambda x, y: info_nce(x, y, 0.1), "nt_xent": lambda x, y: nt_xent(x, y, 0.5)}
    fn = fns[loss]

    def run(x, y, budget, backend="triton"):
        monkeypatch.setenv("FASTRL_LOGITS_BUDGET_MB", budget)
        dev = triton_device() if backend == "triton" else "cpu"
        x, y = _leaf(x, dev), _leaf(y, dev)
        with use_backend(backend):
            out = fn(x, y)
            (out * 1.7).backward()
        return [out.detach().double().cpu(), x.grad.double().cpu(), y.grad.double().cpu()]

    from fastrl.losses.contrastive import stored
    calls = []
    orig = stored.StoredLSE.forward
    monkeypatch.setattr(stored.StoredLSE, "forward", staticmethod(lambda *a: calls.append(1) or orig(*a)))
    ref = run(a.double(), b.double(), "0", backend="cpu")
    out = run(a.to(dtype), b.to(dtype), "64")
    assert calls, "the stored path did not run"
    tol = 1e-5 if dtype == torch.float32 else 3e-3
    for o, r in zip(out, ref):
        torch.testing.assert_close(o, r, rtol=tol, atol=tol * float(r.abs().max()))


def test_stored_logits_budget(monkeypatch):
    from fastrl.losses.contrastive import stored
    monkeypatch.delenv("FASTRL_LOGITS_BUDGET_MB", raising=False)
    assert not stored.fits(8, 8, torch.float32)  # off by default
    monkeypatch.setenv("FASTRL_LOGITS_BUDGET_MB", "1")
    assert stored.fits(512, 512, torch.float32) and not stored.fits(513, 512, torch.float32)
    monkeypatch.setenv("FASTRL_LOGITS_BUDGET_MB", "lots")
    with pytest.raises(ValueError, match="FASTRL_LOGITS_BUDGET_MB"):
        stored.fits(8, 8, torch.float32)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 2.5e-3), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("n", [2048, 16384])
def test_native_clip_gradient_large_n(dtype, tol, n):
    # on the GPU, with the tuned (or FASTRL_AUTOTUNE=0 fixed) tiles: the fp16 gradient at N = 16k
    # is the case that underflowed; the fp64 reference is the CPU path on the same device
    errs = _clip_grad_errors(n, 256, dtype, "triton", ref_device="cuda")
    assert max(errs) < tol, errs

