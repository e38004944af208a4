"""The t-SNE attractive loops of the compiled core: every SIMD build this CPU
runs, with hardware gathers and with scalar loads (FASTRL_GATHER /
fastrl.use_gather), and the portable loop, against a float64 numpy
reference; and the switch choosing between them."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import scipy.sparse as sp

import fastrl
from fastrl.manifold.tsne import attractive_forces
from fastrl.neighbors import cpu_kernel as ck

_C = pytest.importorskip("fastrl._C")

GATHERS = ("hw", "scalar")


def _loops():
    """(cpu_kernel, gather, loop name) for every distinct loop this CPU runs."""
    seen, out = set(), []
    for kern in ck.supported_cpu_kernels():
        for gather in GATHERS:
            name = _C.tsne_attractive_loop(kern, gather)
            if name not in seen:
                seen.add(name)
                out.append((kern, gather, name))
    return out


LOOPS = _loops()


def _graph(n, n_ref, seed):
    """CSR P whose rows have 0, 1, ..., 19 edges in turn (empty rows, rows
    shorter than the 4- and 8-wide vectors, several vectors plus a tail)."""
    rng = np.random.default_rng(seed)
    deg = np.arange(n) % 20
    indptr = np.concatenate([[0], np.cumsum(deg)]).astype(np.int64)
    indices = rng.integers(0, n_ref, size=indptr[-1]).astype(np.int32)
    data = rng.random(indptr[-1])
    return indptr, indices, data


def _reference(indptr, indices, data, Y, Yref, dof, exaggeration):
    rows = np.repeat(np.arange(Y.shape[0]), np.diff(indptr))
    diff = Y[rows] - Yref[indices]
    pu = data / (1.0 + (diff ** 2).sum(1) / dof)
    ref = np.zeros_like(Y)
    np.add.at(ref, rows, pu[:, None] * diff)
    return exaggeration * ref


@pytest.mark.parametrize("kern,gather,loop", LOOPS, ids=[loop for _, _, loop in LOOPS])
@pytest.mark.parametrize("n,n_ref,same,dof,exaggeration", [
    (37, 37, True, 1.0, 1.0),
    (41, 53, False, 0.7, 12.0),  # Yref != Y, more reference points than rows
    (203, 11, False, 1.0, 4.0),  # few reference points: repeated neighbours
])
def test_every_loop_matches_the_float64_reference(kern, gather, loop, n, n_ref, same, dof, exaggeration):
    rng = np.random.default_rng(n)
    indptr, indices, data = _graph(n, n_ref, seed=n_ref)
    Y = rng.normal(scale=5.0, size=(n, 2))
    Yref = Y if same else rng.normal(scale=5.0, size=(n_ref, 2))
    want = _reference(indptr, indices, data, Y, Yref, dof, exaggeration)
    out = np.full_like(Y, np.nan)
    kl = _C.tsne_attractive(indptr, indices, data, Y, Yref, dof, exaggeration, False, out, 2, True,
                            cpu_kernel=kern, gather=gather)
    assert kl == 0.0
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-14, err_msg=loop)
    assert np.all(out[np.diff(indptr) == 0] == 0.0)  # empty rows: no force
    # the public function with the switches set runs the same loop
    P = sp.csr_matrix((data, indices, indptr), shape=(n, n_ref))
    with fastrl.use_cpu_kernel(kern), fastrl.use_gather(gather):
        assert fastrl.backend_info()["tsne_attractive"] == loop
        got = attractive_forces(P, Y, dof=dof, exaggeration=exaggeration, Y_ref=None if same else Yref)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=loop)


@pytest.mark.parametrize("kern,gather,loop", LOOPS, ids=[loop for _, _, loop in LOOPS])
@pytest.mark.parametrize("dim,eval_kl", [(2, False), (2, True), (3, False)])
def test_float32_P_is_read_as_is_and_summed_in_float64(kern, gather, loop, dim, eval_kl):
    # float32 P (half the bytes per edge): every loop, the KL pass and other dimensions
    n, n_ref = 45, 61
    rng = np.random.default_rng(9)
    indptr, indices, data = _graph(n, n_ref, seed=5)
    data32 = data.astype(np.float32)
    Y, Yref = rng.normal(scale=5.0, size=(n, dim)), rng.normal(scale=5.0, size=(n_ref, dim))
    # the reference takes the float32 values exactly, in float64
    want = _reference(indptr, indices, data32.astype(np.float64), Y, Yref, 0.8, 3.0)
    out = np.full_like(Y, np.nan)
    kl = _C.tsne_attractive(indptr, indices, data32, Y, Yref, 0.8, 3.0, eval_kl, out, 2, True,
                            cpu_kernel=kern, gather=gather)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-14, err_msg=loop)
    if eval_kl:
        p = data32.astype(np.float64)
        rows = np.repeat(np.arange(n), np.diff(indptr))
        u = 1.0 / (1.0 + ((Y[rows] - Yref[indices]) ** 2).sum(1) / 0.8)
        np.testing.assert_allclose(kl, (p * (np.log(p) - 0.8 * np.log(u))).sum(), rtol=1e-12)
    # and it is not a float64 copy: the forces differ from float64 P by float32 rounding
    out64 = np.empty_like(Y)
    _C.tsne_attractive(indptr, indices, data, Y, Yref, 0.8, 3.0, eval_kl, out64, 2, True,
                       cpu_kernel=kern, gather=gather)
    assert not np.array_equal(out, out64)
    np.testing.assert_allclose(out, out64, rtol=0, atol=1e-6 * np.abs(out64).max())


@pytest.mark.parametrize("kern,gather,loop", LOOPS, ids=[loop for _, _, loop in LOOPS])
@pytest.mark.parametrize("dof", [1.0, 0.6])
def test_kl_pass_of_every_loop_matches_the_float64_reference(kern, gather, loop, dof):
    # the SIMD loops take their logs lane by lane: affinities over 600 orders of magnitude
    # (subnormal ones included), zeros (no term) and distances from 0 to ~1e150
    n = 211
    rng = np.random.default_rng(17)
    indptr, indices, _ = _graph(n, n, seed=4)
    rows = np.repeat(np.arange(n), np.diff(indptr))
    # each row in its own band (so that its KL checks the logs there): 1e-310 (subnormal) .. 1
    band = rng.uniform(-310, 0, size=n)
    band[1:40:4] = rng.uniform(-310, -308.5, size=10)  # 10 rows of subnormal affinities (< 2.2e-308)
    data = 10.0 ** band[rows] * rng.uniform(0.5, 1.5, size=indptr[-1])
    data[::13] = 0.0
    Y = rng.normal(size=(n, 2)) * (10.0 ** rng.uniform(-3, 150, size=(n, 1)))
    out = np.empty_like(Y)
    kl = _C.tsne_attractive(indptr, indices, data, Y, Y, dof, 1.0, True, out, 2, True, cpu_kernel=kern,
                            gather=gather)
    q = 1.0 + ((Y[rows] - Y[indices]) ** 2).sum(1) / dof
    p = data
    terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) + dof * np.log(q)), 0.0)
    np.testing.assert_allclose(kl, terms.sum(), rtol=1e-13, err_msg=loop)
    # per row (the order of the sums aside)
    with np.errstate(divide="ignore"):
        want_rows = np.bincount(rows, weights=terms, minlength=n)
    for i in range(n):  # the per-row sums through one-row slices of P
        sl = slice(indptr[i], indptr[i + 1])
        ip = np.array([0, indptr[i + 1] - indptr[i]], dtype=np.int64)
        one = _C.tsne_attractive(ip, indices[sl].copy(), data[sl].copy(), Y[i:i + 1].copy(), Y, dof, 1.0, True,
                                 np.empty((1, 2)), 1, True, cpu_kernel=kern, gather=gather)
        assert one == pytest.approx(want_rows[i], rel=1e-13, abs=0), (loop, i)


def test_csr_parts_in_float32():
    from fastrl.manifold.tsne.gradients import CSRParts
    n = 70
    indptr, indices, data = _graph(n, n, seed=8)
    P = sp.csr_matrix((data, indices, indptr), shape=(n, n))
    Y = np.random.default_rng(3).normal(size=(n, 2))
    parts = CSRParts(P, dtype=np.float32)
    assert parts.data.dtype == np.float32 and parts.indices.dtype == np.int32
    p32 = sp.csr_matrix((parts.data.astype(np.float64), indices, indptr), shape=(n, n))
    got, kl = attractive_forces(parts, Y, exaggeration=2.0, eval_kl=True)
    want, kl_want = attractive_forces(p32, Y, exaggeration=2.0, eval_kl=True)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(kl, kl_want, rtol=1e-12)
    with pytest.raises(ValueError, match="dtype must be float64 or float32"):
        CSRParts(P, dtype=np.float16)


def test_gather_modes_give_identical_forces():
    # the two ways of filling the lanes put the same values in the same lanes
    n = 300
    indptr, indices, data = _graph(n, n, seed=3)
    P = sp.csr_matrix((data, indices, indptr), shape=(n, n))
    Y = np.random.default_rng(4).normal(size=(n, 2))
    for kern in ck.supported_cpu_kernels():
        outs = []
        for gather in GATHERS:
            with fastrl.use_cpu_kernel(kern), fastrl.use_gather(gather):
                outs.append(attractive_forces(P, Y))
        np.testing.assert_array_equal(outs[0], outs[1], err_msg=kern)


def _expected_auto_gather():
    """'scalar' or 'hw' as the rule of csrc/cpu_features.h reads /proc/cpuinfo."""
    info = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if not line.strip():
                break
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    if info.get("vendor_id") not in ("AuthenticAMD", "HygonGenuine"):
        return "hw"
    return "scalar" if int(info["cpu family"]) <= 0x19 else "hw"  # AMD Zen 1-4: measured slower gathers


@pytest.mark.skipif(not (sys.platform.startswith("linux") and os.path.exists("/proc/cpuinfo")
                         and "avx2" in ck.supported_cpu_kernels()), reason="x86-64 Linux with AVX2")
def test_auto_follows_the_cpu_family():
    want = _expected_auto_gather()
    assert _C.gather_mode_name("auto") == want
    with fastrl.use_cpu_kernel("avx2"), fastrl.use_gather("auto"):
        assert fastrl.backend_info()["gather"] == want
        assert fastrl.backend_info()["tsne_attractive"] == f"avx2-{want}"


@pytest.mark.skipif("avx2" not in ck.supported_cpu_kernels(), reason="needs the AVX2 build")
def test_use_gather_switches_the_loop_and_nests():
    with fastrl.use_cpu_kernel("avx2"):
        with fastrl.use_gather("hw"):
            assert fastrl.backend_info()["tsne_attractive"] == "avx2-hw"
            assert fastrl.backend_info()["gather"] == "hw"
            with fastrl.use_gather("scalar") as name:
                assert name == "scalar"
                assert fastrl.backend_info()["tsne_attractive"] == "avx2-scalar"
            assert fastrl.backend_info()["tsne_attractive"] == "avx2-hw"
        with fastrl.use_cpu_kernel("base"), fastrl.use_gather("scalar"):
            assert fastrl.backend_info()["tsne_attractive"] == "base"  # the portable loop has no gathers
    # thread-local: another thread keeps its own mode
    seen = {}
    with fastrl.use_gather("hw"):
        t = threading.Thread(target=lambda: seen.update(g=ck.gather_mode()))
        t.start()
        t.join()
        assert ck.gather_mode() == "hw"
    assert seen["g"] == ck.check_gather(ck._GATHER_ENV_VALUE)


def test_bad_gather_names_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="use_gather must be one of 'auto', 'hw', 'scalar'; got 'avx'"):
        with fastrl.use_gather("avx"):
            pass
    with pytest.raises(ValueError, match="use_gather must be one of"):
        with fastrl.use_gather(None):
            pass
    monkeypatch.setattr(ck, "_GATHER_ENV_VALUE", "fast")
    with pytest.raises(ValueError, match="FASTRL_GATHER must be one of .* got 'fast'"):
        fastrl.backend_info()
    with fastrl.use_gather("HW "):  # a block overrides the bad variable; names are normalised
        assert ck.gather_mode() == "hw"
    indptr, indices, data = _graph(5, 5, seed=0)
    Y = np.zeros((5, 2))
    with pytest.raises(ValueError, match="gather must be one of"):
        _C.tsne_attractive(indptr, indices, data, Y, Y, 1.0, 1.0, False, np.empty_like(Y), 1, True,
                           cpu_kernel="auto", gather="fast")


@pytest.mark.skipif("avx2" not in ck.supported_cpu_kernels(), reason="needs the AVX2 build")
def test_fastrl_gather_is_read_once_at_import():
    code = ("import os, fastrl\n"
            "a = fastrl.backend_info()['tsne_attractive']\n"
            "os.environ['FASTRL_GATHER'] = 'scalar'\n"
            "print(a, fastrl.backend_info()['tsne_attractive'])\n")
    env = {**os.environ, "FASTRL_GATHER": "hw", "FASTRL_CPU_KERNEL": "avx2"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["avx2-hw", "avx2-hw"]
