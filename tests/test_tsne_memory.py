"""t-SNE's peak-memory estimate: impossible sizes are refused before any allocation, normal ones pass."""
from __future__ import annotations

import time

import numpy as np
import pytest

import fastrl.manifold.tsne.memory as memory
import fastrl.opentsne as otsne
from fastrl._validation import InsufficientMemoryError, check_memory_fits
from fastrl.manifold import TSNE
from fastrl.manifold.tsne.memory import available_memory, estimate_fit_memory


def _huge(n=10**9, d=50):
    """n x d float32 zeros of one element (zero strides): nothing behind it to allocate."""
    return np.broadcast_to(np.zeros((1, 1), dtype=np.float32), (n, d))


def _small(n=120, d=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("fit", [lambda X: TSNE().fit(X), lambda X: otsne.TSNE().fit(X)],
                         ids=["fastrl.manifold.TSNE", "fastrl.opentsne.TSNE"])
def test_impossible_size_refused_without_allocating(fit):
    X = _huge()
    tic = time.perf_counter()
    with pytest.raises(InsufficientMemoryError, match=r"X: .*N=1000000000 .*GiB of memory, but only") as info:
        fit(X)
    assert time.perf_counter() - tic < 5.0  # refused from the shape: no pass over 5e10 values
    assert isinstance(info.value, MemoryError) and isinstance(info.value, ValueError)


def test_mocked_memory_refuses_a_small_fit_and_real_memory_passes(monkeypatch):
    X = _small()
    fitted = TSNE(max_iter=250, random_state=0).fit(X)  # the machine's memory: passes
    assert fitted.embedding_.shape == (120, 2) and np.isfinite(fitted.embedding_).all()
    need = estimate_fit_memory(120, 5, n_neighbors=90, method="barnes_hut", itemsize=4)["peak"]
    monkeypatch.setattr(memory, "available_memory", lambda: need - 1)
    with pytest.raises(MemoryError, match="N=120"):
        TSNE(max_iter=250, random_state=0).fit(X)
    monkeypatch.setattr(memory, "available_memory", lambda: need)  # exactly enough: passes
    assert np.array_equal(TSNE(max_iter=250, random_state=0).fit(X).embedding_, fitted.embedding_)
    monkeypatch.setattr(memory, "available_memory", lambda: 1)
    monkeypatch.setattr(memory, "MEMORY_CHECK", False)  # the switch off: no check
    assert TSNE(max_iter=250, random_state=0).fit(X).embedding_.shape == (120, 2)


def test_estimate_parts_and_scaling():
    small = estimate_fit_memory(10**5, 50, n_neighbors=90, method="barnes_hut", itemsize=4)
    big = estimate_fit_memory(10**6, 50, n_neighbors=90, method="barnes_hut", itemsize=4)
    assert small["peak"] == small["data"] + max(small[k] for k in ("init", "knn", "affinities", "optimizer"))
    assert big["peak"] == pytest.approx(10 * small["peak"], rel=1e-4)  # sparse methods: linear in N
    # P of 2 N k entries (8 bytes: int32 id, float32 value from COMPACT_P_MIN_N points on) in the
    # optimiser; its largest array again while re-ordering permutes it array by array
    re = estimate_fit_memory(10**6, 50, n_neighbors=90, method="barnes_hut", itemsize=4, reorder=True)
    assert re["optimizer"] - big["optimizer"] == 2 * 10**6 * 90 * 4
    re64 = estimate_fit_memory(10**6, 50, n_neighbors=90, method="barnes_hut", itemsize=4, reorder=True,
                               compact=False)
    assert re64["optimizer"] - re["optimizer"] == 2 * 10**6 * 90 * (4 + 4)
    fft = estimate_fit_memory(10**6, 50, n_neighbors=90, method="fft", itemsize=4)
    assert fft["optimizer"] > big["optimizer"]  # the FFT grids
    exact = [estimate_fit_memory(n, 50, method="exact")["peak"] for n in (1000, 2000)]
    assert exact[1] / exact[0] == pytest.approx(4.0, rel=0.01)  # dense: quadratic
    assert estimate_fit_memory(10**5, 50, pca=False)["init"] == 0


def test_available_memory_reads_the_machine():
    avail = available_memory()
    with open("/proc/meminfo") as f:
        meminfo = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    assert avail is not None and 0 < avail <= meminfo["MemTotal"]


def test_check_memory_fits_names_the_argument():
    check_memory_fits(10, 10, "X", "op")
    check_memory_fits(10**15, None, "X", "op")  # unknown: no check
    with pytest.raises(InsufficientMemoryError, match=r"^X: op needs about .* \(details\)$"):
        check_memory_fits(11, 10, "X", "op", "details")


def test_sparse_input_counts_its_stored_bytes(monkeypatch):
    """A sparse precomputed kNN distance matrix is not charged as a dense N x N one
    (N = 3000: the dense charge would be 72 MB); sparse features keep their dense copy."""
    import scipy.sparse as sp
    n, k = 3000, 90
    rows = np.repeat(np.arange(n), k)
    cols = (rows + np.tile(np.arange(1, k + 1), n)) % n
    X = sp.csr_matrix((np.random.default_rng(0).random(n * k) + 0.1, (rows, cols)), shape=(n, n))
    stored = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    est = memory.check_input_memory(X, 30, what="t", precomputed=True, pca=False)
    assert est["data"] == stored
    dense = memory.estimate_fit_memory(n, n, n_neighbors=90, pca=False)
    monkeypatch.setattr(memory, "available_memory", lambda: (est["peak"] + dense["peak"]) // 2)
    assert memory.check_input_memory(X, 30, what="t", precomputed=True, pca=False)["peak"] == est["peak"]
    with pytest.raises(InsufficientMemoryError):  # the same matrix as features: densified, so refused
        memory.check_input_memory(X, 30, what="t", pca=False)
