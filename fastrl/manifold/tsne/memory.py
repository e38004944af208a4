"""Peak-memory estimate of a t-SNE fit, checked against the machine's free memory before any work.

:func:`estimate_fit_memory` adds up, in bytes, with N points of D features
(itemsize ``s``: 4 for float32 input, else 8), ``k`` neighbours, P stored with
at most ``2 N k`` entries (``(P + P^T) / 2N`` of a kNN graph, ``4 + v`` bytes each:
int32 column + a value of ``v`` = 8 bytes, or 4 where P is compact: from
``COMPACT_P_MIN_N`` points on, off the device), ``d`` output dimensions:

* ``data``: the validated input, ``N D s`` (held through the whole fit); a
  sparse X counts the bytes it stores, plus its dense copy ``N D s`` for
  features (the PCA initialisation and the compiled kNN densify them), not
  for precomputed distances (a sparse kNN distance matrix stays sparse);
* ``init``: PCA initialisation, a float64 copy of X and its centred copy, ``2 N D 8``;
* ``knn``: the kNN graph (int64 ids + float64 distances) and the work arrays of
  its construction (as much again), ``2 N k 16``;
* ``affinities``: the int32 kNN ids and the conditional P, stored like P's values (``N k (4 + v)``), the
  symmetrisation's transposed graph (``N k 4``, ``N k 8`` from 2^31 edges on)
  and the joint P;
* ``optimizer``: P, the largest of its arrays again while the re-ordering
  permutes it array by array (``2 N k max(4, v)``, only when re-ordering), the embedding, momentum, gains,
  gradients, FFT charges and potentials (``32 N d 8``) and, with FFT
  repulsion, the interpolation grids at the largest grid the N points may
  use (``g = 3 max_boxes_for(N)``, ``m = next_fast_len(2g - 1)``: the charge grid
  ``3 g^2 4``, two complex64 spectra ``2 x 3 m (m/2 + 1) 8``, the kernels'
  spectra ``2 m (m/2 + 1) 4`` and the potentials ``3 g m 4``);
* ``method="exact"``: the kNN graph over all N - 1 neighbours (``N^2 24``, as much for the affinities),
  then dense P and the gradient's N x N temporaries (``8 N^2 8``).

The peak is ``data + max(init, knn, affinities, optimizer)`` (the stages run
one after the other); :func:`check_fit_memory` raises
:class:`~fastrl._validation.InsufficientMemoryError` when it exceeds the available memory
(``MemAvailable`` of ``/proc/meminfo``, psutil where /proc is missing, and a
cgroup v2 limit when lower). Set ``MEMORY_CHECK = False`` in this module to
skip the check.
"""
from __future__ import annotations

import scipy.sparse

from fastrl._validation import InsufficientMemoryError, check_memory_fits  # noqa: F401 (re-exported)
from fastrl.manifold.tsne import affinities as _aff  # its COMPACT_P_MIN_N read at each call (the fit's rule)

MEMORY_CHECK = True  # False: TSNE.fit skips the check (the estimate may be off for unusual inputs)


def _cgroup_free() -> int | None:
    """Bytes left under a cgroup v2 memory limit, or None without one."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return max(int(limit) - int(f.read().strip()), 0)
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes of memory available to new allocations, or None when unknown.

    ``MemAvailable`` of ``/proc/meminfo`` (Linux), else psutil's
    ``virtual_memory().available`` when psutil is installed; lowered to what a
    cgroup v2 memory limit leaves.

    Returns
    -------
    int or None
    """
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        try:
            import psutil
            avail = int(psutil.virtual_memory().available)
        except ImportError:
            return None
    free = _cgroup_free()
    return avail if free is None else min(avail, free)


def _fft_bytes(n: int) -> int:
    """The one-grid FFT repulsion's arrays at the grid cap (float32 transforms): the charge grid
    [g, M], its row and full half spectra, the two potentials' spectra (kept), their inverse's row
    pass and the potentials [2, g, M], the kernel spectra [3, M, M/2 + 1] and their quadrant temporaries."""
    from fastrl.manifold.tsne.gradients import N_INTERP, ONE_GRID_REFINE, _even_fast_len, max_boxes_for
    g = N_INTERP * int(ONE_GRID_REFINE * max_boxes_for(n))
    m = _even_fast_len(2 * g - 1)
    half = m * (m // 2 + 1)
    return (g * m * 4 + g * (m // 2 + 1) * 8 + half * 8 + 2 * half * 8 + 2 * g * (m // 2 + 1) * 8
            + 2 * g * m * 4 + 3 * half * 4 + 4 * (m // 2 + 1) ** 2 * 8)


def estimate_fit_memory(n: int, n_features: int, *, n_components: int = 2, n_neighbors: int = 90,
                        method: str = "fft", itemsize: int = 8, reorder: bool = False,
                        pca: bool = True, data_bytes: int | None = None, compact: bool | None = None) -> dict:
    """Estimated peak memory of a t-SNE fit, in bytes, and its parts (formula in the module docstring).

    Parameters
    ----------
    n : int
        Number of points N.
    n_features : int
        Input dimension D (N for precomputed distances).
    n_components : int
        Output dimension d.
    n_neighbors : int
        kNN size k (``3 * perplexity``; ignored for ``"exact"``: N - 1).
    method : {"fft", "barnes_hut", "exact", "device"}
        ``"device"`` counts the host side of a device fit (as ``"barnes_hut"``).
    itemsize : int
        Bytes per input value after validation (4: float32, else 8).
    reorder : bool
        Whether the optimiser re-orders the points (a second P while it does).
    pca : bool
        Whether the PCA initialisation runs.
    data_bytes : int, optional
        Bytes the input holds, when not ``N * D * itemsize`` (a sparse matrix).
    compact : bool, optional
        P's values in float32; default: from ``COMPACT_P_MIN_N`` points on,
        except for ``"device"`` (the fit's rule).

    Returns
    -------
    dict
        ``{"peak": int, "data": int, "init": int, "knn": int, "affinities": int, "optimizer": int}``.
    """
    n, D, d = int(n), int(n_features), int(n_components)
    per_point = 32 * n * d * 8
    parts = {"data": n * D * int(itemsize) if data_bytes is None else int(data_bytes),
             "init": 2 * n * D * 8 if pca else 0}
    if method == "exact":
        parts["knn"] = n * n * 24
        parts["affinities"] = n * n * 24
        parts["optimizer"] = 8 * n * n * 8 + per_point
    else:
        k = int(min(max(n_neighbors, 1), n - 1))
        if compact is None:
            compact = method != "device" and n >= _aff.COMPACT_P_MIN_N
        v = 4 if compact else 8
        p_bytes = 2 * n * k * (4 + v) + (n + 1) * 8
        pos = 4 if n * k < 2**31 else 8
        parts["knn"] = 2 * n * k * 16
        parts["affinities"] = n * k * (4 + v + pos) + p_bytes
        parts["optimizer"] = (p_bytes + (2 * n * k * max(4, v) if reorder else 0) + per_point
                              + (_fft_bytes(n) if method == "fft" else 0))
    parts["peak"] = parts["data"] + max(parts["init"], parts["knn"], parts["affinities"], parts["optimizer"])
    return parts


def check_fit_memory(n: int, n_features: int, *, what: str = "TSNE.fit", **kwargs) -> dict:
    """Raise :class:`~fastrl._validation.InsufficientMemoryError` when the
    estimated peak memory of a fit (:func:`estimate_fit_memory`, same keyword
    arguments) exceeds :func:`available_memory`; nothing is allocated.

    Parameters
    ----------
    n, n_features : int
        Size of the input (N, D).
    what : str
        The caller, for the message.

    Returns
    -------
    dict
        The estimate.
    """
    est = estimate_fit_memory(n, n_features, **kwargs)
    if MEMORY_CHECK:
        stages = ", ".join(f"{key} {v / 2**30:.3g} GiB" for key, v in est.items() if key != "peak" and v)
        check_memory_fits(est["peak"], available_memory(), "X", f"{what} with N={n} points of D={n_features} features",
                          f"estimate: {stages}; the peak is data + the largest stage. Subsample X, reduce its "
                          "dimension or lower the perplexity")
    return est


def check_input_memory(X, perplexity, *, what: str, n_components: int = 2, method: str = "fft",
                       precomputed: bool = False, **kwargs) -> dict | None:
    """:func:`check_fit_memory` from the shape and dtype of ``X`` alone (nothing
    is read or converted); None, without a check, when ``X`` has no 2-D shape
    or ``perplexity`` is invalid (the caller's own checks then raise).

    Parameters
    ----------
    X : array-like, shape (N, D), or (N, N) distances when ``precomputed``
    perplexity : float or list of float
    what : str
    n_components : int
    method : str
    precomputed : bool
    **kwargs
        ``reorder``, ``pca`` of :func:`estimate_fit_memory`.

    Returns
    -------
    dict or None
    """
    from fastrl.manifold.tsne.affinities import n_neighbors_for
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] < 2 or shape[1] < 1:
        return None
    n = int(shape[0])
    try:
        k = n_neighbors_for(perplexity, n)
    except (TypeError, ValueError):
        return None
    itemsize = 4 if str(getattr(X, "dtype", "")).endswith("float32") else 8
    D = n if precomputed else int(shape[1])
    data_bytes = None
    if scipy.sparse.issparse(X):  # what it stores; features are densified (PCA init, compiled kNN), distances not
        stored = sum(getattr(X, a).nbytes for a in ("data", "indices", "indptr") if hasattr(X, a))
        data_bytes = stored + (0 if precomputed else n * D * itemsize)
    return check_fit_memory(n, D, what=what, n_components=int(n_components), n_neighbors=k, method=method,
                            itemsize=itemsize, data_bytes=data_bytes, **kwargs)


__all__ = ["estimate_fit_memory", "check_fit_memory", "check_input_memory", "available_memory",
           "InsufficientMemoryError", "MEMORY_CHECK"]
