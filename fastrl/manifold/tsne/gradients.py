"""t-SNE gradient pieces over a sparse P (compiled core): attractive forces,
Barnes-Hut and FFT-interpolated repulsion, and their sum.

Convention (openTSNE / FIt-SNE): with ``u_ij = (1 + d_ij^2/dof)^-1`` and
``w_ij = u_ij^dof``, the KL gradient is ``4 (A_i - R_i / Z)`` where
``A_i = sum_j p_ij u_ij (y_i - y_j)``, ``R_i = sum_j w_ij u_ij (y_i - y_j)`` and
``Z = sum_{i != j} w_ij``. The functions here return ``A`` and ``(R, Z)``; the
optimizer steps along ``A - R / Z`` (the gradient over 4), as openTSNE does, so
its learning rates carry over.
"""
from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.sparse as sp

from fastrl.neighbors.knn import _core, _n_jobs

N_INTERP = 3  # Lagrange nodes per box (fixed in the compiled spreading code)


def _csr_parts(P):
    P = sp.csr_matrix(P)
    return (np.ascontiguousarray(P.indptr, dtype=np.int64), np.ascontiguousarray(P.indices, dtype=np.int32),
            np.ascontiguousarray(P.data, dtype=np.float64))


def _as_embedding(Y) -> np.ndarray:
    return np.ascontiguousarray(Y, dtype=np.float64)


def attractive_forces(P, Y, *, dof: float = 1.0, exaggeration: float = 1.0, Y_ref=None, eval_kl: bool = False,
                      n_jobs=None):
    """Attractive forces ``A_i = exaggeration * sum_j p_ij u_ij (y_i - y_j)``.

    Parameters
    ----------
    P : scipy.sparse matrix, shape (N, N_ref)
        Affinities (CSR; int32 column indices).
    Y : ndarray, shape (N, d)
        Points the forces act on.
    dof : float
    exaggeration : float
    Y_ref : ndarray, shape (N_ref, d), optional
        The points the columns of P refer to (default ``Y``).
    eval_kl : bool
        Also return ``sum_ij p_ij log(p_ij / w_ij)``.

    Returns
    -------
    forces : ndarray of float64, shape (N, d)
    kl_part : float
        Only when ``eval_kl``.
    """
    indptr, cols, data = _csr_parts(P)
    Y = _as_embedding(Y)
    Yr = Y if Y_ref is None else _as_embedding(Y_ref)
    out = np.empty_like(Y)
    kl = _core().tsne_attractive(indptr, cols, data, Y, Yr, float(dof), float(exaggeration), bool(eval_kl), out,
                                 _n_jobs(n_jobs))
    return (out, kl) if eval_kl else out


def bh_repulsion(Y, *, theta: float = 0.5, dof: float = 1.0, Y_ref=None, per_point: bool = False, n_jobs=None):
    """Barnes-Hut estimate of the unnormalised repulsion (2-D embeddings).

    Parameters
    ----------
    Y : ndarray, shape (N, 2)
    theta : float
        Opening angle; 0 is exact.
    dof : float
    Y_ref : ndarray, shape (N_ref, 2), optional
        Repel ``Y`` from these fixed points instead of from itself.
    per_point : bool
        Return the per-point normalisers ``Z_i = sum_j w_ij`` instead of their sum.

    Returns
    -------
    R : ndarray of float64, shape (N, 2)
    Z : float, or ndarray of shape (N,) when ``per_point``
    """
    Y = _as_embedding(Y)
    same = Y_ref is None
    Yr = Y if same else _as_embedding(Y_ref)
    out = np.empty_like(Y)
    z = np.empty(Y.shape[0]) if per_point else None
    total = _core().tsne_bh_repulsive(Yr, Y, same, float(theta), float(dof), out, z, _n_jobs(n_jobs))
    return out, (z if per_point else total)


def _kernel_fft(h: float, g: int, m: int, dof: float, workers: int):
    """rFFTs of the two kernels sampled on the circulant M x M embedding of a
    g x g grid of spacing h: ``K_rep = u^(dof+1)`` and ``K_z = u^dof``."""
    t = np.arange(m)
    off = np.where(t < g, t, t - m).astype(np.float64)
    valid = (np.abs(off) < g).astype(np.float64)
    d2 = (h * h) * (off[:, None] ** 2 + off[None, :] ** 2)
    u = 1.0 / (1.0 + d2 / dof)
    mask = valid[:, None] * valid[None, :]
    kz = u * mask if dof == 1.0 else (u ** dof) * mask
    krep = kz * u
    return scipy.fft.rfft2(np.stack([krep, kz]), workers=workers)


def fft_repulsion(Y, *, dof: float = 1.0, min_num_intervals: int = 50, ints_in_interval: float = 1.0, n_jobs=None):
    """FFT-accelerated interpolation estimate of the repulsion (Linderman et al. 2019).

    The square bounding box of ``Y`` is cut into ``n_boxes = max(min_num_intervals,
    span / ints_in_interval)`` boxes per axis with 3 equispaced Lagrange nodes
    each; charges ``(1, y_x, y_y)`` are spread onto the node grid, convolved with
    the kernels ``w u`` and ``w`` by FFT, and interpolated back.

    Parameters
    ----------
    Y : ndarray, shape (N, 2)
    dof : float
    min_num_intervals : int
    ints_in_interval : float
    n_jobs : int, optional

    Returns
    -------
    R : ndarray of float64, shape (N, 2)
    Z : float
    """
    Y = _as_embedding(Y)
    if Y.ndim != 2 or Y.shape[1] != 2:
        raise ValueError(f"fft_repulsion needs a 2-D embedding of shape (N, 2), got {Y.shape}")
    n = Y.shape[0]
    jobs = _n_jobs(n_jobs)
    workers = jobs if jobs > 0 else -1
    lo, hi = float(Y.min()), float(Y.max())
    span = max(hi - lo, 1e-8)
    n_boxes = int(max(min_num_intervals, span / ints_in_interval))
    box = span / n_boxes * (1.0 + 1e-9)
    h = box / N_INTERP
    g = N_INTERP * n_boxes
    m = scipy.fft.next_fast_len(2 * g - 1, real=True)
    charges = np.empty((n, 3))
    charges[:, 0] = 1.0
    charges[:, 1:] = Y
    grid = np.empty((3, g, g))
    core = _core()
    core.tsne_fft_spread(Y, lo, h, n_boxes, charges, grid, jobs)
    fg = scipy.fft.rfft2(grid, s=(m, m), workers=workers)
    fk = _kernel_fft(h, g, m, dof, workers)
    prod = np.empty((4,) + fg.shape[1:], dtype=fg.dtype)
    np.multiply(fg, fk[0], out=prod[:3])
    np.multiply(fg[0], fk[1], out=prod[3])
    pot = scipy.fft.irfft2(prod, s=(m, m), workers=workers)[:, :g, :g]
    phi = np.empty((n, 4))
    core.tsne_fft_gather(Y, lo, h, n_boxes, np.ascontiguousarray(pot), phi, jobs)
    R = Y * phi[:, :1] - phi[:, 1:3]
    Z = float(phi[:, 3].sum()) - n  # drop the self terms w_ii = 1
    return R, Z


def kl_gradient(P, Y, *, method: str = "fft", dof: float = 1.0, theta: float = 0.5, exaggeration: float = 1.0,
                n_jobs=None):
    """t-SNE KL divergence and its gradient over a sparse joint P.

    Parameters
    ----------
    P : scipy.sparse matrix, shape (N, N)
        Joint affinities summing to 1.
    Y : ndarray, shape (N, 2)
    method : {"fft", "barnes_hut"}
    dof, theta, exaggeration : float
    n_jobs : int, optional

    Returns
    -------
    kl : float
        KL(P || Q) (of the unexaggerated P).
    grad : ndarray of float64, shape (N, 2)
        ``dKL/dY`` (with the factor 4).
    """
    A, kl_part = attractive_forces(P, Y, dof=dof, exaggeration=exaggeration, eval_kl=True, n_jobs=n_jobs)
    if method == "fft":
        R, Z = fft_repulsion(Y, dof=dof, n_jobs=n_jobs)
    elif method == "barnes_hut":
        R, Z = bh_repulsion(Y, theta=theta, dof=dof, n_jobs=n_jobs)
    else:
        raise ValueError(f"method must be 'fft' or 'barnes_hut', got {method!r}")
    return kl_part + np.log(Z), 4.0 * (A - R / Z)
