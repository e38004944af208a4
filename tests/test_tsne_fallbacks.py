"""Changes of path in t-SNE and kNN are never silent: each warns once per
process (FallbackWarning, naming what was asked, what runs instead and why)
and is listed in backend_info()["fallbacks"]; and int32 point ids are guarded
(N >= 2**31 is refused with a ValueError at every door, before any work).
The conditions are tested through their check functions, without allocating
such sizes."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fastrl import _dispatch
from fastrl._dispatch import FallbackWarning, backend_info
from fastrl._validation import INT32_POINT_LIMIT, check_int32_points
from fastrl.manifold import TSNE
from fastrl.manifold.tsne import gradients, joint_probabilities, kl_gradient, symmetrize, transform_affinities
from fastrl.manifold.tsne.affinities import sparse_from_knn
from fastrl.manifold.tsne.gradients import CSRParts, SIMD_ATTRACTIVE_MAX_REF, attractive_forces, attractive_simd
from fastrl.manifold.tsne.optimizer import SparseObjective
from fastrl.neighbors import knn_graph, use_cpu_kernel
from fastrl.neighbors.cpu_kernel import supported_cpu_kernels


@pytest.fixture
def fresh_fallbacks():
    """An empty fallback record for the test; the process's record is restored afterwards."""
    saved = _dispatch.fallbacks()
    _dispatch._reset_fallbacks()
    yield
    _dispatch._reset_fallbacks()
    with _dispatch._fallbacks_lock:
        _dispatch._fallbacks.update(saved)


def _fallback_warnings(record):
    return [str(w.message) for w in record if issubclass(w.category, FallbackWarning)]


def _problem(n=60, seed=0):
    X = np.random.default_rng(seed).normal(size=(n, 5)).astype(np.float32)
    return X, joint_probabilities(X, 5.0)


# ----------------------------------------------------------------------------- FFT grid cap -> Barnes-Hut
def test_fft_grid_cap_fallback_warns_once_and_is_recorded(fresh_fallbacks):
    _, P = _problem()
    Y = np.random.default_rng(1).normal(size=(60, 2))
    obj = SparseObjective(P, "fft")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        obj(Y, 1.0, False)  # a span within the cap (50 boxes of width 1): FFT, silent
        assert _fallback_warnings(rec) == [] and "tsne.fft_grid_cap" not in backend_info()["fallbacks"]
        wide = Y * 100.0
        obj(wide, 1.0, True)
        obj(wide, 1.0, False)
        kl_gradient(P, wide, method="fft")
    msgs = _fallback_warnings(rec)
    assert len(msgs) == 1, msgs  # once per process, however many calls
    assert obj.bh_fallbacks == 2
    msg = msgs[0]
    for part in ("method='fft'", "cap of 50 boxes", "N=60", "Barnes-Hut repulsion runs instead"):
        assert part in msg, msg
    assert backend_info()["fallbacks"]["tsne.fft_grid_cap"] == msg
    # method="barnes_hut" asked for Barnes-Hut: no change of path
    _dispatch._reset_fallbacks()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        SparseObjective(P, "barnes_hut")(wide, 1.0, False)
    assert _fallback_warnings(rec) == []


def test_verbose_fit_reports_the_change_of_path(fresh_fallbacks, capsys):
    X, _ = _problem(300, seed=13)
    init = np.random.default_rng(0).normal(0, 1e4, size=(300, 2))
    with pytest.warns(FallbackWarning, match="FFT-interpolated repulsion"):
        TSNE(method="fft", init=init, max_iter=3, early_exaggeration_iter=1, random_state=0, verbose=1).fit(X)
    out = capsys.readouterr().out
    assert "Barnes-Hut repulsion in 3 of 3 gradient evaluations" in out
    assert "[t-SNE] Change of path in this process: fastrl: t-SNE asked for FFT" in out


# ----------------------------------------------------------------------------- SIMD attractive -> scalar loop
def test_attractive_simd_condition(fresh_fallbacks):
    """csrc/tsne_forces.cpp: the SIMD kernel runs for 2-D embeddings (with or without the KL
    pass), with fewer than 2**30 reference points, on the avx2 / avx512 kernels."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert attractive_simd(SIMD_ATTRACTIVE_MAX_REF - 1, 2, False, "avx2", False)
        assert attractive_simd(10, 2, False, "avx512", True)
        assert attractive_simd(10, 2, True, "avx2", False)  # the KL evaluation too
        # the scalar loop by design (other dimensions), or because it was asked for
        assert not attractive_simd(10, 3, False, "avx512", False)
        assert not attractive_simd(10, 1, False, "avx2", False)
        assert not attractive_simd(10, 2, False, "base", True)
    assert _fallback_warnings(rec) == [] and backend_info()["fallbacks"] == {}
    assert SIMD_ATTRACTIVE_MAX_REF == 2**30
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for _ in range(2):
            assert not attractive_simd(SIMD_ATTRACTIVE_MAX_REF, 2, False, "avx512", False)
            assert not attractive_simd(10, 2, False, "base", False)  # a CPU or build without AVX2
    msgs = _fallback_warnings(rec)
    assert len(msgs) == 2, msgs
    assert "1073741824 reference points" in msgs[0] and "scalar loop instead of the SIMD kernel" in msgs[0]
    assert "'base'" in msgs[1] and "AVX2" in msgs[1]
    assert sorted(backend_info()["fallbacks"]) == ["tsne.attractive_simd_isa", "tsne.attractive_simd_n_ref"]


def test_attractive_forces_checks_the_kernel_at_the_door(fresh_fallbacks, monkeypatch):
    _, P = _problem()
    Y = np.random.default_rng(2).normal(size=(60, 2))
    want = attractive_forces(P, Y)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with use_cpu_kernel("base"):  # asked for: the scalar loop, silently, same forces
            np.testing.assert_allclose(attractive_forces(P, Y), want, rtol=1e-12, atol=1e-15)
        if "avx2" in supported_cpu_kernels():  # the best kernel of this CPU runs the SIMD loop
            attractive_forces(P, Y)
    assert _fallback_warnings(rec) == []
    # a CPU without AVX2 (the kernel "auto" picks is base): warned before the native call
    monkeypatch.setattr(gradients, "_cpu_kernel_choice", lambda: ("base", False))

    class NoCore:
        def tsne_attractive(self, *args, **kwargs):
            raise RuntimeError("native call")

    monkeypatch.setattr(gradients, "_core", lambda: NoCore())
    with pytest.warns(FallbackWarning, match="scalar loop instead of the SIMD kernel"):
        with pytest.raises(RuntimeError, match="native call"):
            attractive_forces(P, Y)
    assert "tsne.attractive_simd_isa" in backend_info()["fallbacks"]


# ----------------------------------------------------------------------------- int32 point ids
class _OnlyShape:
    """A shape and nothing else: a door that reads or converts the data before its size check
    fails on it with another error (never allocates 2**31 rows)."""

    def __init__(self, *shape):
        self.shape = shape


def test_check_int32_points():
    assert INT32_POINT_LIMIT == 2**31
    assert check_int32_points(2**31 - 1, "X", "op") == 2**31 - 1
    assert check_int32_points(np.int64(5), "X", "op") == 5
    assert check_int32_points(np.zeros((7, 2)), "X", "op") == 7
    assert check_int32_points([[1.0], [2.0]], "X", "op") == 2
    for big in (2**31, np.int64(2**40)):
        with pytest.raises(ValueError, match=r"^X has \d+ points, but op stores point ids as int32"):
            check_int32_points(big, "X", "op")
    # arrays of 2**31 rows that hold no memory: only the shape is read
    for big in (np.broadcast_to(np.float32(0), (2**31, 3)), torch.zeros(1, 1).expand(2**31, 4),
                sp.coo_matrix((2**31, 2)), _OnlyShape(2**31, 8)):
        with pytest.raises(ValueError, match=r"^X has 2147483648 points, but .* int32: at most 2147483647"):
            check_int32_points(big, "X", "knn_graph")


@pytest.mark.parametrize("door", [
    lambda big: knn_graph(big, 5, method="approx"),
    lambda big: knn_graph(big, 5),  # "auto" picks NN-descent at this size
    lambda big: joint_probabilities(big, 5.0),
    lambda big: transform_affinities(big, np.zeros((3, 8)), 5.0),
    lambda big: symmetrize(big, big),
    lambda big: sparse_from_knn(big, big, 5.0),
    lambda big: TSNE().fit(big),
    lambda big: TSNE(method="fft").fit_transform(big),
])
def test_int32_point_ids_refused_at_every_door(door):
    with pytest.raises(ValueError, match=r"has 2147483648 points, but .* stores point ids as int32"):
        door(_OnlyShape(2**31, 8))


def test_int32_point_ids_refused_by_the_gradient():
    with pytest.raises(ValueError, match=r"^P has 2147483648 points, but the t-SNE gradient"):
        CSRParts(_OnlyShape(4, 2**31))
    # exact kNN is not bounded by int32 ids: its check is not applied (the data error comes instead)
    with pytest.raises(ValueError, match="must be numeric"):
        knn_graph(_OnlyShape(2**31, 8), 5, method="exact")
