"""knn_graph's CUDA path (fastrl/neighbors/torch_knn.py and
knn._knn_graph_device), run here on CPU tensors: the same torch code on any
device. Exact results and tie order against the compiled path and the float64
oracle, block sizing from the (monkeypatched) free-memory query, and the
parameters of method="approx"."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fastrl.neighbors import knn_graph, knn_reference
from fastrl.neighbors import torch_knn as tk
from fastrl.neighbors.knn import _knn_graph_device


def _data(kind: str, rng) -> np.ndarray:
    if kind == "gauss":
        return rng.standard_normal((257, 19)).astype(np.float32)
    if kind == "ties":  # integer data far from the origin: many exact ties at the k boundary
        return (rng.integers(0, 3, (300, 6)) + 1000.0).astype(np.float32)
    if kind == "dups":  # every point has 6 exact copies
        X = np.repeat(rng.standard_normal((40, 6)).astype(np.float32), 7, axis=0)
        rng.shuffle(X)
        return X
    X = rng.standard_normal((200, 8)).astype(np.float32)  # "zero rows" (cosine)
    X[::17] = 0.0
    return X


@pytest.fixture
def count_rescans(monkeypatch):
    calls = []
    real = tk._rescan

    def spy(*args, **kwargs):
        calls.append(args[2].numel())
        return real(*args, **kwargs)
    monkeypatch.setattr(tk, "_rescan", spy)
    return calls


@pytest.mark.parametrize("kind,metric", [("gauss", "euclidean"), ("gauss", "cosine"), ("ties", "euclidean"),
                                         ("dups", "euclidean"), ("dups", "cosine"), ("zeros", "cosine")])
@pytest.mark.parametrize("block", [None, 7])
def test_device_path_matches_compiled_and_oracle(rng, kind, metric, block, count_rescans):
    X = _data(kind, rng)
    k = 10
    idx, dist = tk.torch_knn(torch.from_numpy(X), torch.from_numpy(X), k, metric, True, block=block) \
        if block else _knn_graph_device(torch.from_numpy(X), k, "exact", metric, None, None, None, None)
    assert idx.dtype == torch.int64 and dist.dtype == torch.float32 and idx.shape == (len(X), k)
    idx, dist = idx.numpy(), dist.numpy()
    ref_idx, ref_dist = knn_reference(X, X, k, metric=metric, exclude_self=True)
    cpu_idx, cpu_dist = knn_graph(X, k, method="exact", metric=metric)
    assert not np.any(idx == np.arange(len(X))[:, None])
    # cosine: the compiled path's distances come from float32 unit rows (1e-7 for
    # exact copies), this path's from float64 unit rows
    np.testing.assert_allclose(dist, cpu_dist, rtol=1e-6, atol=1e-7 if metric == "euclidean" else 5e-7)
    if metric == "euclidean":  # the float64 oracle's (distance, index) order exactly, boundary included
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(idx, cpu_idx)
        np.testing.assert_array_equal(dist, ref_dist.astype(np.float32))
    else:
        np.testing.assert_allclose(dist, ref_dist, rtol=1e-6, atol=1e-7)
        tied = np.isclose(ref_dist, ref_dist[:, -1:], rtol=1e-6, atol=1e-7)
        assert np.all((idx == ref_idx) | tied)
    if kind == "ties":
        assert count_rescans, "rows tied beyond the candidates must take the exact rescan"
    if kind == "dups":
        assert np.all(dist[:, :6] <= (0.0 if metric == "euclidean" else 1e-15))
        assert np.all(np.diff(idx[:, :6], axis=1) > 0)  # copies in increasing index order


def test_device_path_bf16_and_float64_input(rng):
    X = rng.standard_normal((120, 9))
    want = knn_graph(X.astype(np.float32), 5, method="exact")
    got = _knn_graph_device(torch.from_numpy(X), 5, "auto", "euclidean", None, None, None, None)
    np.testing.assert_array_equal(got[0].numpy(), want[0])
    Xb = torch.from_numpy(X).to(torch.bfloat16)
    got = _knn_graph_device(Xb, 5, "exact", "euclidean", None, None, None, None)
    np.testing.assert_array_equal(got[0].numpy(), knn_graph(Xb.float().numpy(), 5, method="exact")[0])


def test_query_block_from_free_device_memory(monkeypatch):
    """The block is sized from torch.cuda.mem_get_info (half the free memory);
    4096 rows of a 1M-point index would need 64 GB of scores."""
    free = {"bytes": 16 << 30}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 80 << 30))
    cuda = torch.device("cuda", 0)
    n, kk, d = 1_000_000, 19, 50
    rows = tk.query_block(n, kk, d, cuda)
    assert 1 <= rows < tk.MAX_BLOCK_ROWS
    assert rows * (16 * n + 24 * kk * d) <= free["bytes"] // 2 < (rows + 1) * (16 * n + 24 * kk * d + 64)
    free["bytes"] = 1 << 20  # nearly full device: one row at a time, never zero
    assert tk.query_block(n, kk, d, cuda) == 1
    free["bytes"] = 1 << 40  # plenty: capped
    assert tk.query_block(10_000, kk, d, cuda) == tk.MAX_BLOCK_ROWS

    def no_query(device=None):
        raise AssertionError("CPU tensors must not query CUDA memory")
    monkeypatch.setattr(torch.cuda, "mem_get_info", no_query)
    assert tk.query_block(n, kk, d, torch.device("cpu")) == tk.CPU_BLOCK_BYTES // (16 * n + 24 * kk * d + 64)


def test_torch_knn_uses_the_memory_query(rng, monkeypatch):
    """torch_knn takes its block from free_bytes: with room for ~3 rows it
    still returns the exact graph, in many blocks."""
    X = rng.standard_normal((90, 7)).astype(np.float32)
    asked, blocks = [], []
    monkeypatch.setattr(tk, "free_bytes", lambda device: asked.append(device) or 2 * 3 * (16 * 90 + 24 * 9 * 7 + 64))
    real_topk = torch.topk
    monkeypatch.setattr(torch, "topk", lambda x, *a, **kw: blocks.append(x.shape[0]) or real_topk(x, *a, **kw))
    idx, dist = tk.torch_knn(torch.from_numpy(X), torch.from_numpy(X), 5, "euclidean", True)
    assert asked and max(blocks) == 3 and len(blocks) == 30
    np.testing.assert_array_equal(idx.numpy(), knn_reference(X, X, 5, exclude_self=True)[0])


@pytest.mark.parametrize("n_trees,n_iters", [(None, None), (2, 1)])
def test_device_approx_runs_nndescent_with_its_parameters(rng, monkeypatch, n_trees, n_iters):
    """method="approx" on a device tensor warns once and runs NN-descent on a
    host copy with random_state, n_trees, n_iters and n_jobs (so the result is
    the CPU path's, bit for bit, with one thread), returned on X's device."""
    import fastrl._dispatch as dispatch
    monkeypatch.setattr(dispatch, "_fallbacks", {})
    X = rng.standard_normal((800, 12)).astype(np.float32)
    T = torch.from_numpy(X)
    with pytest.warns(dispatch.FallbackWarning, match="NN-descent has no GPU implementation"):
        idx, dist = _knn_graph_device(T, 8, "approx", "euclidean", 1, 3, n_trees, n_iters)
    assert isinstance(idx, torch.Tensor) and idx.device == T.device and dist.dtype == torch.float32
    want = knn_graph(X, 8, method="approx", n_jobs=1, random_state=3, n_trees=n_trees, n_iters=n_iters)
    np.testing.assert_array_equal(idx.numpy(), want[0])
    np.testing.assert_array_equal(dist.numpy(), want[1])
    other = _knn_graph_device(T, 8, "approx", "euclidean", 1, 4, n_trees, n_iters)[0].numpy()
    assert not np.array_equal(other, want[0])  # the seed is used
    assert "neighbors.knn_graph.approx_on_device" in dispatch.fallbacks()


def test_device_path_bad_input(rng):
    T = torch.from_numpy(rng.standard_normal((20, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="k must be < N"):
        _knn_graph_device(T, 20, "exact", "euclidean", None, None, None, None)
    with pytest.raises(ValueError, match="n_jobs"):
        _knn_graph_device(T, 3, "exact", "euclidean", 1 << 20, None, None, None)
    with pytest.raises(ValueError, match="2-D"):
        _knn_graph_device(T[0], 3, "exact", "euclidean", None, None, None, None)
    bad = T.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        _knn_graph_device(bad, 3, "exact", "euclidean", None, None, None, None)
    with pytest.raises(TypeError, match="complex"):
        _knn_graph_device(T.to(torch.complex64), 3, "exact", "euclidean", None, None, None, None)
    with pytest.raises(ValueError, match="n_trees"):
        knn_graph(T.numpy(), 3, method="approx", n_trees=0)
    with pytest.raises(ValueError, match="n_iters"):
        knn_graph(T.numpy(), 3, method="approx", n_iters=-1)
