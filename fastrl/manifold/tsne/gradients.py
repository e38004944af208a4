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

from fastrl._dispatch import warn_fallback
from fastrl._validation import check_int32_points
from fastrl.manifold.tsne.timing import NULL_TIMER
from fastrl.neighbors.cpu_kernel import cpu_kernel, gather_mode, supported_cpu_kernels
from fastrl.neighbors.knn import _core, _n_jobs

N_INTERP = 3  # Lagrange nodes per box (fixed in the compiled spreading code)
FFT_DTYPE = np.float32  # precision of the grid transforms
BOX_QUANTUM = 1.02  # box widths are powers of this (kernel-FFT cache hits)
MAX_BOXES = 1000  # cap on boxes per axis: time and memory stay bounded however wide the embedding


def max_boxes_for(n: int, min_num_intervals: int = 50) -> int:
    """Grid cap for N points: ``clip(2 sqrt(N), min_num_intervals, MAX_BOXES)``
    boxes per axis (a 70k-point MNIST embedding spans ~100-200 units: under
    its cap of 529). :class:`~fastrl.manifold.tsne.optimizer.SparseObjective`
    takes Barnes-Hut's repulsion when a span needs more boxes than this."""
    return int(min(MAX_BOXES, max(min_num_intervals, 2 * np.sqrt(n))))


def fft_fits(Y: np.ndarray, min_num_intervals: int = 50, ints_in_interval: float = 1.0) -> bool:
    """Whether the span of ``Y`` fits the capped grid at ``ints_in_interval``.

    When it does not, the caller runs Barnes-Hut instead of the FFT
    repulsion: that change of path warns once per process
    (:class:`~fastrl._dispatch.FallbackWarning`, key ``"tsne.fft_grid_cap"``)
    and is listed in ``fastrl.backend_info()["fallbacks"]``.
    """
    span = float(Y.max() - Y.min())
    cap = max_boxes_for(Y.shape[0], min_num_intervals)
    fits = span / ints_in_interval <= cap
    if not fits:
        warn_fallback("tsne.fft_grid_cap",
                      f"fastrl: t-SNE asked for FFT-interpolated repulsion (method='fft'), but the embedding spans "
                      f"{span:.4g} units, more than the grid's cap of {cap} boxes of width {ints_in_interval:g} "
                      f"for N={Y.shape[0]}; Barnes-Hut repulsion runs instead while the span stays above the cap",
                      stacklevel=4)
    return fits


SIMD_ATTRACTIVE_MAX_REF = 2**30  # csrc/tsne_forces.cpp: the SIMD loop gathers with doubled int32 offsets
SIMD_ATTRACTIVE_KERNELS = ("avx2", "avx512")


def _cpu_kernel_choice() -> tuple[str, bool]:
    """The SIMD kernel the compiled core runs and whether the user chose it
    (``FASTRL_CPU_KERNEL`` or ``use_cpu_kernel``) rather than it being the best this CPU runs."""
    name = cpu_kernel()
    return (supported_cpu_kernels()[-1], False) if name == "auto" else (name, True)


def attractive_simd(n_ref: int, dim: int, eval_kl: bool, kernel: str | None = None,
                    forced: bool | None = None) -> bool:
    """Whether the compiled attractive forces run their SIMD kernel (the
    condition of ``csrc/tsne_forces.cpp``), warning once when they fall back.

    The SIMD kernel covers 2-D embeddings, the KL evaluation included (its
    terms with a lane-wise log); other dimensions take the scalar loop by
    design. It gives way to the scalar loop, which is a change of path and
    warns once per process (:class:`~fastrl._dispatch.FallbackWarning`,
    listed in ``fastrl.backend_info()["fallbacks"]``), when

    * ``n_ref >= 2**30`` reference points (its gathers use doubled int32
      offsets), key ``"tsne.attractive_simd_n_ref"``;
    * the kernel in use is ``"base"`` without the user asking for it (a CPU or
      build without AVX2+FMA), key ``"tsne.attractive_simd_isa"``.

    Parameters
    ----------
    n_ref : int
        Number of reference points (columns of P).
    dim : int
        Embedding dimension.
    eval_kl : bool
        Whether the KL divergence is evaluated in the same pass (no bearing
        on the choice since the SIMD kernel has a KL pass; kept for callers).
    kernel : str, optional
        The CPU kernel in use (``"base"``, ``"avx2"``, ``"avx512"``); default: the compiled core's.
    forced : bool, optional
        Whether the user chose ``kernel`` (``FASTRL_CPU_KERNEL`` or ``use_cpu_kernel``); default: as set now.

    Returns
    -------
    bool
        True when the SIMD kernel runs.
    """
    if dim != 2:
        return False
    if n_ref >= SIMD_ATTRACTIVE_MAX_REF:
        warn_fallback("tsne.attractive_simd_n_ref",
                      f"fastrl: t-SNE attractive forces over {n_ref} reference points run the scalar loop instead "
                      f"of the SIMD kernel: its gathers use doubled int32 offsets, so it takes fewer than 2**30 "
                      f"points", stacklevel=4)
        return False
    if kernel is None or forced is None:
        k, f = _cpu_kernel_choice()
        kernel, forced = (k if kernel is None else kernel), (f if forced is None else forced)
    if kernel in SIMD_ATTRACTIVE_KERNELS:
        return True
    if not forced:
        warn_fallback("tsne.attractive_simd_isa",
                      f"fastrl: t-SNE attractive forces run the scalar loop instead of the SIMD kernel: the CPU "
                      f"kernel in use is {kernel!r} (the SIMD kernel needs AVX2+FMA in this CPU and this build)",
                      stacklevel=4)
    return False


WIDE_SPAN = 1e30  # beyond this the grid transforms run in float64 (float32 charges would overflow)


class CSRParts:
    """A sparse P converted once to the compiled core's CSR layout (int64
    indptr, int32 indices, float64 or float32 data) and checked once (the hot
    loop then skips the per-call index scan).

    ``dtype=np.float32`` stores the affinities in half the bytes (8 instead
    of 12 per edge streamed by the attractive pass, with the int32 column id);
    the forces and the KL are still computed and summed in float64, from the
    float32 values. ``dtype=None`` (the default) keeps a float32 P float32
    and stores any other as float64.
    """

    def __init__(self, P, n_cols: int | None = None, *, dtype=None):
        if dtype is None:  # float32 values stay float32 (compact P), anything else becomes float64
            dtype = np.float32 if getattr(P, "dtype", None) == np.float32 else np.float64
        if np.dtype(dtype) not in (np.float64, np.float32):
            raise ValueError(f"dtype must be float64 or float32, got {np.dtype(dtype)}")
        check_int32_points(np.shape(P)[-1], "P", "the t-SNE gradient (int32 CSR column ids)")
        P = sp.csr_matrix(P)
        if not P.has_sorted_indices:
            P.sort_indices()
        self.shape = P.shape
        self.indptr = np.ascontiguousarray(P.indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(P.indices, dtype=np.int32)
        self.data = np.ascontiguousarray(P.data, dtype=dtype)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= P.shape[1]):
            raise ValueError("P has column indices out of range")
        if self.data.size and not (np.isfinite(self.data).all() and self.data.min() >= 0):
            raise ValueError("P must hold finite non-negative affinities")


def _csr_parts(P) -> CSRParts:
    return P if isinstance(P, CSRParts) else CSRParts(P)


def _as_embedding(Y) -> np.ndarray:
    return np.ascontiguousarray(Y, dtype=np.float64)


def attractive_forces(P, Y, *, dof: float = 1.0, exaggeration: float = 1.0, Y_ref=None, eval_kl: bool = False,
                      n_jobs=None):
    """Attractive forces ``A_i = exaggeration * sum_j p_ij u_ij (y_i - y_j)``.

    Parameters
    ----------
    P : scipy.sparse matrix or CSRParts, shape (N, N_ref)
        Affinities (converted and checked once when given as :class:`CSRParts`).
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
    parts = _csr_parts(P)
    Y = _as_embedding(Y)
    Yr = Y if Y_ref is None else _as_embedding(Y_ref)
    if parts.shape != (Y.shape[0], Yr.shape[0]):
        raise ValueError(f"P has shape {parts.shape}; expected (len(Y), len(Y_ref)) = {(Y.shape[0], Yr.shape[0])}")
    attractive_simd(Yr.shape[0], Y.shape[1], eval_kl)  # warns once if the SIMD kernel gives way to the scalar loop
    out = np.empty_like(Y)
    kl = _core().tsne_attractive(parts.indptr, parts.indices, parts.data, Y, Yr, float(dof), float(exaggeration),
                                 bool(eval_kl), out, _n_jobs(n_jobs), False, cpu_kernel=cpu_kernel(),
                                 gather=gather_mode())
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


def _kernel_fft(h: float, g: int, m: int, dof: float, workers: int, dtype=FFT_DTYPE):
    """Spectra, in the layout of ``rfft2`` of an M x M array (M even, >= 2g - 1),
    of the kernels of the one-grid repulsion sampled at the node offsets
    ``o = h (r, c)`` of a g x g grid and embedded circulantly:
    ``K_x = o_x u^(dof+1)`` and ``K_y = o_y u^(dof+1)`` (odd along x resp. y,
    even along the other axis: imaginary spectra, returned as their imaginary
    parts ``I_x``, ``I_y``) and ``K_z = u^dof`` (even: a real spectrum).

    A sequence of period M even about 0 has the DFT of DCT-I over its first
    M/2 + 1 terms, an odd one ``-i`` DST-I over its terms 1..M/2 - 1, so each
    spectrum is a 2-D DCT/DST of one (M/2 + 1)^2 quadrant: a quarter of the
    points of the full transform. Returns ``[I_x, I_y, K_z]``, shape (3, M, M/2 + 1).
    """
    if m % 2:
        raise ValueError(f"the kernel transform length must be even, got {m}")
    half = m // 2
    t = np.arange(half + 1, dtype=np.float64)
    a = np.where(t < g, t * h, 0.0)  # node offsets; zero past the grid (masked below)
    inside = t < g
    with np.errstate(over="ignore"):
        u = 1.0 / (1.0 + (a[:, None] ** 2 + a[None, :] ** 2) / dof)
    u *= inside[:, None] & inside[None, :]
    kz = u if dof == 1.0 else u ** dof
    kx = (a[None, 1:half] * (kz * u)[:, 1:half]).astype(dtype)
    kz = kz.astype(dtype)
    out = np.empty((3, m, half + 1), dtype=dtype)
    dct1, dst1 = scipy.fft.dct, scipy.fft.dst
    # I_x: even along rows (DCT-I), odd along columns (-DST-I on offsets 1..M/2-1); K_x's columns
    # o_x = 0 and M/2 and nothing else have a zero spectrum there
    ix = -dst1(dct1(kx, type=1, axis=0, workers=workers), type=1, axis=1, workers=workers)
    out[0, :half + 1, 0] = out[0, :half + 1, half] = 0.0
    out[0, :half + 1, 1:half] = ix
    # K_y is K_x transposed (u is symmetric in the two offsets): I_y's quadrant is I_x's transposed
    out[1, 0] = out[1, half] = 0.0
    out[1, 1:half, :] = ix.T
    out[2, :half + 1] = dct1(dct1(kz, type=1, axis=0, workers=workers), type=1, axis=1, workers=workers)
    # rows M/2 + 1 .. M - 1: even spectra mirror, the odd one (I_y) changes sign
    out[0, half + 1:] = out[0, half - 1:0:-1]
    out[1, half + 1:] = -out[1, half - 1:0:-1]
    out[2, half + 1:] = out[2, half - 1:0:-1]
    return out


def _even_fast_len(n: int) -> int:
    """The smallest even 5-smooth length >= n (the kernel spectra's DCT/DST need an even M)."""
    m = scipy.fft.next_fast_len(n, real=True)
    while m % 2:
        m = scipy.fft.next_fast_len(m + 1, real=True)
    return m


def _quantize_up(x: float, base: float) -> float:
    return float(base ** np.ceil(np.log(x) / np.log(base)))


def fft_grid(Y: np.ndarray, min_num_intervals: int = 50, ints_in_interval: float = 1.0,
             max_boxes: int | None = None):
    """Interpolation grid covering the square bounding box of ``Y``.

    ``n_boxes >= max(min_num_intervals, span / ints_in_interval)`` boxes per
    axis, capped at ``MAX_BOXES`` (rounded up to ``min_num_intervals * 1.05^j``) and a box width
    rounded up to a power of ``BOX_QUANTUM``, so that consecutive iterations
    usually share one grid and the kernel's FFT is reused; the grid is
    centred on the points' bounding box.

    Returns
    -------
    (lo, h, n_boxes) : lower grid edge, node spacing (box width / 3), boxes per axis
    """
    lo, hi = float(Y.min()), float(Y.max())
    span = max(hi - lo, 1e-8)
    cap = MAX_BOXES if max_boxes is None else max_boxes
    n_boxes = min(max(min_num_intervals, span / ints_in_interval), max(cap, min_num_intervals))
    n_boxes = int(np.ceil(min_num_intervals * _quantize_up(n_boxes / min_num_intervals, 1.05) - 1e-9))
    box = _quantize_up(span / n_boxes * (1 + 1e-9), BOX_QUANTUM)
    lo = 0.5 * (lo + hi) - 0.5 * n_boxes * box
    return lo, box / N_INTERP, n_boxes


# The one-grid form below interpolates potentials of odd kernels, which vary
# faster than the three-grid form's: on the MNIST embedding at spans 10-194 its
# mean error at equal boxes is 1.22-1.65x. Boxes 1/1.2 the width and 1.1x the
# minimum count bring it to 0.87-1.03x the three-grid error (mean, 2000 points
# against the exact sums; 99th percentile 0.74-0.98x) for half the transforms.
ONE_GRID_REFINE = 1.2
ONE_GRID_MIN_BOXES = 1.1


def fft_repulsion(Y, *, dof: float = 1.0, min_num_intervals: int = 50, ints_in_interval: float = 1.0, n_jobs=None,
                  cache: dict | None = None, timer=None):
    """FFT-accelerated interpolation estimate of the repulsion (after Linderman et al. 2019).

    The square bounding box of ``Y`` is cut into boxes (see :func:`fft_grid`;
    1/``ONE_GRID_REFINE`` of ``ints_in_interval`` wide, at least
    ``ONE_GRID_MIN_BOXES * min_num_intervals`` of them, so that the error
    matches FIt-SNE's three-grid form at the given settings) with 3 equispaced
    Lagrange nodes each. One charge grid (the points' weights) is convolved
    by FFT with the odd kernels ``o u^(dof+1)`` (``o`` the offset, x and y),
    whose potentials interpolated back at ``y_i`` are the repulsion
    numerator ``R_i = sum_j u_ij^(dof+1) (y_i - y_j)`` directly: one forward
    and two inverse transforms instead of three of each. The normaliser
    ``Z = sum_i sum_j w_ij - N`` needs no inverse transform: by Parseval it is
    ``sum_f |G(f)|^2 K_z(f) / M^2`` with ``G`` the charge grid's spectrum.
    Transforms run in single precision and skip the all-zero half of the
    padded grid (row transforms on the g filled rows only; the spreading
    writes those rows at the transform length, so they need no padded copy).

    Parameters
    ----------
    Y : ndarray, shape (N, 2)
    dof : float
    min_num_intervals : int
    ints_in_interval : float
    n_jobs : int, optional
    cache : dict, optional
        Reused across calls to keep the kernel FFT of an unchanged grid.
    timer : fastrl.manifold.tsne.timing.PhaseTimer, optional
        Gets the phases ``"fft_spread"``, ``"fft_transforms"`` (kernel and
        grid FFTs) and ``"fft_gather"``.

    Returns
    -------
    R : ndarray of float64, shape (N, 2)
    Z : float
    """
    timer = NULL_TIMER if timer is None else timer
    tic = timer.clock()
    Y = _as_embedding(Y)
    if Y.ndim != 2 or Y.shape[1] != 2:
        raise ValueError(f"fft_repulsion needs a 2-D embedding of shape (N, 2), got {Y.shape}")
    n = Y.shape[0]
    jobs = _n_jobs(n_jobs)
    min_boxes = int(np.ceil(ONE_GRID_MIN_BOXES * min_num_intervals))
    lo, h, n_boxes = fft_grid(Y, min_boxes, ints_in_interval / ONE_GRID_REFINE,
                              max_boxes=int(ONE_GRID_REFINE * max_boxes_for(n, min_num_intervals)))
    g = N_INTERP * n_boxes
    m = _even_fast_len(2 * g - 1)
    workers = 1 if m * m < 250_000 else (jobs if jobs > 0 else -1)
    wide = h * g > WIDE_SPAN
    dtype = np.float64 if wide else FFT_DTYPE
    key = (h, g, m, float(dof), wide)
    if cache is not None and cache.get("key") == key:
        fk = cache["fk"]
    else:
        fk = _kernel_fft(h, g, m, dof, workers, dtype)
        if cache is not None:
            cache.update(key=key, fk=fk)
    tic = timer.lap("fft_transforms", tic)
    # the charge grid (rows zero-padded to the transform length by the spreading) and the
    # potentials' spectra, kept across calls: fresh buffers of this size cost page faults each time
    bufs = cache.get("bufs") if cache is not None else None
    if bufs is None or bufs[0].shape != (1, g, m) or bufs[0].dtype != dtype:
        bufs = (np.empty((1, g, m), dtype=dtype), np.empty((2, m, m // 2 + 1), dtype=np.result_type(dtype, 1j)))
        if cache is not None:
            cache["bufs"] = bufs
    grid, both = bufs
    core = _core()
    core.tsne_fft_spread(Y, lo, h, n_boxes, None, grid, jobs)  # unit charges
    tic = timer.lap("fft_spread", tic)
    spec = scipy.fft.rfft(grid[0], axis=-1, workers=workers)
    spec = scipy.fft.fft(spec, n=m, axis=-2, workers=workers, overwrite_x=True)
    # the potentials' spectra i I_c G, and Z by Parseval over the half spectrum: one compiled pass
    zsum = core.tsne_fft_spectral(spec, fk, both, jobs)
    back = scipy.fft.ifft(both, axis=-2, workers=workers, overwrite_x=True)[:, :g]
    pot = scipy.fft.irfft(back, n=m, axis=-1, workers=workers)[:, :, :g]  # a view, read in place
    tic = timer.lap("fft_transforms", tic)
    R = np.empty((n, 2))
    core.tsne_fft_gather(Y, lo, h, n_boxes, pot, R, jobs)
    timer.lap("fft_gather", tic)
    Z = max(zsum - n, 1e-300)  # drop the self terms w_ii = 1 (Z -> 0 only when every pair is ~infinitely far)
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
    if method == "fft" and fft_fits(Y):
        R, Z = fft_repulsion(Y, dof=dof, n_jobs=n_jobs)
    elif method in ("fft", "barnes_hut"):
        R, Z = bh_repulsion(Y, theta=theta, dof=dof, n_jobs=n_jobs)
    else:
        raise ValueError(f"method must be 'fft' or 'barnes_hut', got {method!r}")
    return kl_part + np.log(Z), 4.0 * (A - R / Z)
