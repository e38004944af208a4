"""scikit-learn-compatible t-SNE estimator (scikit-learn 1.9's parameters, openTSNE's speed tricks)."""
from __future__ import annotations

import sys
import warnings

import numpy as np
import scipy.sparse as sp

from fastrl._validation import (as_float_array, check_choice, check_device, check_int, check_int32_points,
                                check_positive)
from fastrl.manifold.classical._utils import TransformerBase, check_input_matrix, not_fitted_error
from fastrl.manifold.tsne import affinities as _aff
from fastrl.manifold.tsne.affinities import (check_perplexity, dense_from_knn, multiscale_affinities,
                                             n_neighbors_for, symmetrize, transform_affinities)
from fastrl.manifold.tsne.locality import Reordering, reorder_wanted
from fastrl.manifold.tsne.memory import check_input_memory
from fastrl.manifold.tsne.optimizer import (ExactObjective, GradientDescent, SparseObjective, TransformObjective,
                                            run_phase)
from fastrl.manifold.tsne.timing import NULL_TIMER, PhaseTimer, log_fit_end, progress_bar

METHODS = ("auto", "exact", "barnes_hut", "fft")
KERNELS = ("student_t", "gaussian")
BARNES_HUT_MAX_N = 10_000  # "auto": Barnes-Hut below this size, FFT interpolation above
EXACT_LIMIT_N = 20_000     # dense O(N^2) memory beyond this is refused
BH_MAX_DIM = 3             # Barnes-Hut: compiled quadtree (1-D, 2-D), Numba octree (3-D)


def _check_fraction(value, name: str, *, low: float = 0.0, high: float = 1.0):
    check_positive(value, name, allow_tensor=False, strict=False)
    if not low <= float(value) <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return float(value)

def pca_init(X: np.ndarray, n_components: int, std: float = 1e-4) -> np.ndarray:
    """Leading principal components of ``X`` rescaled so the first has standard
    deviation ``std`` (openTSNE's initialisation); signs fixed so that each
    component's largest-magnitude loading is positive (deterministic).

    Parameters
    ----------
    X : ndarray, shape (N, D)
    n_components : int

    Returns
    -------
    ndarray of float64, shape (N, n_components)
    """
    from fastrl.manifold.classical import pca
    X = X.toarray() if sp.issparse(X) else X
    X = np.asarray(X, dtype=np.float64)
    k = min(n_components, *X.shape)
    E = pca(X, k, method="covariance")
    if k < n_components:  # D < n_components: pad with zeros
        E = np.pad(E, ((0, 0), (0, n_components - k)))
    s = E[:, 0].std()
    return np.ascontiguousarray(E / (s if s > 0 else 1.0) * std)



class TSNE(TransformerBase):
    """t-Distributed Stochastic Neighbour Embedding (and SNE / symmetric SNE),
    a drop-in for ``sklearn.manifold.TSNE`` (scikit-learn 1.9's parameters).

    Parameters
    ----------
    n_components : int
        Embedding dimension (Barnes-Hut: <= 3, an octree for 3; FFT: 2;
        ``transform``: <= 2).
    perplexity : float or list of float
        Effective number of neighbours, ``0 < perplexity < N`` on every
        method; the kNN graph has ``k = min(N - 1, 3 * perplexity)`` neighbours
        and a perplexity above ``k`` gives uniform rows. A list gives
        multiscale affinities (the mean of each scale's, k from the largest).
    early_exaggeration : float
        Factor on P during the first ``early_exaggeration_iter`` iterations.
    learning_rate : float or "auto"
        A number is scikit-learn's step on the full KL gradient. ``"auto"``:
        ``N / early_exaggeration / 4`` during early exaggeration (scikit-learn's
        value without its floor of 50), then ``N / 4`` (openTSNE's schedule:
        faster convergence on large N).
    max_iter : int
        Total iterations, early exaggeration included.
    n_iter_without_progress : int
        Stop after this many iterations without a lower KL (checked every 50).
    min_grad_norm : float
        Stop when the gradient norm falls to this value (checked every 50).
    metric : str or callable
        ``"euclidean"`` (squared distances in the Gaussian, as scikit-learn),
        ``"precomputed"`` (X is an (N, N) dense or sparse CSR distance matrix,
        used as given), or any metric of scikit-learn's
        ``pairwise_distances`` and callables (distances used as given).
        Euclidean and cosine run fastrl's compiled kNN; manhattan, chebyshev
        and minkowski a compiled brute force; the rest scikit-learn's chunked
        distances.
    metric_params : dict, optional
    init : {"pca", "random"} or ndarray of shape (N, n_components)
        ``"pca"``: PCA scaled to standard deviation 1e-4; ``"random"``:
        N(0, 1e-4^2). Arrays are used as given.
    verbose : int
        1: scikit-learn's progress lines; 2: also every 50 iterations and the
        reason of an early stop.
    random_state : int, numpy Generator or RandomState, optional
        Same seed, same thread count -> bitwise identical embedding.
    method : {"auto", "barnes_hut", "exact", "fft"}
        Repulsion: exact O(N^2), Barnes-Hut tree, or FFT-accelerated
        interpolation. ``"auto"`` (fastrl's default): Barnes-Hut below 10 000
        points, FFT above (2-D), exact for other dimensions (ask for
        ``"barnes_hut"`` to get the 3-D octree).
    angle : float
        Barnes-Hut opening angle.
    n_jobs : int, optional
        Threads (None or -1: all cores).
    early_exaggeration_iter : int, optional
        Default 250 (scikit-learn's ``_EXPLORATION_MAX_ITER``).
    dof : float
        Degrees of freedom of the Student-t output kernel (1 = t-SNE).
    neighbors : {"auto", "exact", "approx"}
        kNN method, see :func:`fastrl.neighbors.knn_graph`.
    kernel : {"student_t", "gaussian"}
        ``"gaussian"`` (only with ``method="exact"``) gives symmetric SNE.
    callbacks : callable or list of callables, optional
        ``callback(iteration, kl, embedding)`` every 50 iterations; returning
        True stops the optimisation.
    symmetric : bool
        False (with ``kernel="gaussian"``, ``method="exact"``) runs plain,
        asymmetric SNE (Hinton & Roweis 2002).
    initial_momentum, final_momentum : float
        Momentum during / after early exaggeration, in [0, 1].
    max_step_norm : float or None
        Per-point step clipping (openTSNE's default 5; None: off).
    device : str or torch.device, optional
        Run the optimisation on torch tensors on this device (Triton kernels;
        checked before any work). Needs the Student-t kernel and
        ``n_components <= 3``.
    theta : float, optional
        Deprecated alias of ``angle``.
    progress_bar : bool
        A tqdm progress bar over the iterations with the KL divergence, the
        phase (kNN graph, affinities, early exaggeration, optimisation) and
        tqdm's ETA of the iterations (a fastrl extra; ``fastrl tsne`` shows it
        unless ``--quiet``).
    reorder : {"auto", True, False}
        Memory locality (a fastrl extra, methods "fft" and "barnes_hut"):
        the optimiser keeps the points sorted along a Hilbert curve of the
        current embedding (first of the initialisation, again every 250
        iterations), P permuted with them, so that the attractive pass reads
        neighbours close in memory; results come back in the caller's order
        and equal those without re-ordering up to rounding. ``"auto"``: from
        60 000 points on (below, the embedding stays in cache and the
        permutations of P would not pay). From 100 000 points on, sparse CPU
        fits store P's values in float32 (8 bytes an edge with the int32
        column id, instead of 12; forces and KL still summed in float64).

    Attributes
    ----------
    embedding_ : ndarray of float32, shape (N, n_components)
    kl_divergence_ : float
        KL(P || Q) at the last iteration.
    n_iter_ : int
        Index of the last iteration (scikit-learn's convention: ``max_iter - 1``
        after a full run).
    learning_rate_ : float
        The learning rate of the early-exaggeration phase (scikit-learn units).
    n_features_in_ : int
    kl_history_ : list of (iteration, kl)
    method_ : str
        The method used.
    timings_ : dict
        Wall time of the fit phase by phase, in seconds (a fastrl extra):
        ``"knn"``, ``"affinities"``, ``"init"``, then per iteration summed
        ``"attractive"`` and ``"repulsion"`` (methods "fft", "barnes_hut";
        ``"gradient"`` for the exact and device paths), ``"update"`` (the
        step), ``"reorder"`` (when re-ordering), ``"checks"`` (KL checks,
        progress bar, callbacks); those are disjoint
        (:data:`fastrl.manifold.tsne.timing.PHASES`). On the FFT path also
        ``"fft_spread"``, ``"fft_transforms"``, ``"fft_gather"``: parts of
        ``"repulsion"``. ``"total"``: wall time of the whole fit;
        ``"n_iter"``: iterations run. On a GPU the per-iteration phases time
        the kernel launches (CUDA is asynchronous), not the kernels.
    """

    _EXPLORATION_MAX_ITER = 250
    _N_ITER_CHECK = 50

    def __init__(self, n_components=2, *, perplexity=30.0, early_exaggeration=12.0, learning_rate="auto",
                 max_iter=1000, n_iter_without_progress=300, min_grad_norm=1e-7, metric="euclidean",
                 metric_params=None, init="pca", verbose=0, random_state=None, method="auto", angle=0.5,
                 n_jobs=None, early_exaggeration_iter=None, dof=1.0, neighbors="auto", kernel="student_t",
                 callbacks=None, symmetric=True, initial_momentum=0.5, final_momentum=0.8, max_step_norm=5.0,
                 device=None, theta=None, progress_bar=False, reorder="auto"):
        self.n_components = n_components
        self.perplexity = perplexity
        self.early_exaggeration = early_exaggeration
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.n_iter_without_progress = n_iter_without_progress
        self.min_grad_norm = min_grad_norm
        self.metric = metric
        self.metric_params = metric_params
        self.init = init
        self.verbose = verbose
        self.random_state = random_state
        self.method = method
        self.angle = angle
        self.n_jobs = n_jobs
        self.early_exaggeration_iter = early_exaggeration_iter
        self.dof = dof
        self.neighbors = neighbors
        self.kernel = kernel
        self.callbacks = callbacks
        self.symmetric = symmetric
        self.initial_momentum = initial_momentum
        self.final_momentum = final_momentum
        self.max_step_norm = max_step_norm
        self.device = device
        self.theta = theta
        self.progress_bar = progress_bar
        self.reorder = reorder

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = self.metric == "precomputed"
        tags.input_tags.sparse = True
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float32"]  # as scikit-learn's: float32 output
        return tags

    # ------------------------------------------------------------------ checks
    def _angle(self) -> float:
        if self.theta is not None:
            warnings.warn("TSNE(theta=...) is deprecated; use angle= (scikit-learn's name)", FutureWarning,
                          stacklevel=3)
            return float(check_positive(self.theta, "theta", allow_tensor=False, strict=False))
        return float(check_positive(self.angle, "angle", allow_tensor=False, strict=False))

    def _check_params(self, n: int, on_device: bool = False) -> str:
        check_int(self.n_components, "n_components", low=1)
        check_positive(self.early_exaggeration, "early_exaggeration", allow_tensor=False)
        check_int(self.max_iter, "max_iter", low=1)
        check_int(self.n_iter_without_progress, "n_iter_without_progress", low=-1)
        check_positive(self.min_grad_norm, "min_grad_norm", allow_tensor=False, strict=False)
        if self.early_exaggeration_iter is not None:
            check_int(self.early_exaggeration_iter, "early_exaggeration_iter", low=0)
        check_choice(self.method, "method", METHODS)
        check_positive(self.dof, "dof", allow_tensor=False)
        check_choice(self.kernel, "kernel", KERNELS)
        check_choice(self.neighbors, "neighbors", ("auto", "exact", "approx"))
        _check_fraction(self.initial_momentum, "initial_momentum")
        _check_fraction(self.final_momentum, "final_momentum")
        if self.max_step_norm is not None:
            check_positive(self.max_step_norm, "max_step_norm", allow_tensor=False)
        if self.metric_params is not None and not isinstance(self.metric_params, dict):
            raise TypeError(f"metric_params must be a dict or None, got {type(self.metric_params).__name__}")
        if not (isinstance(self.learning_rate, str) and self.learning_rate == "auto"):
            if isinstance(self.learning_rate, str):
                raise ValueError(f"learning_rate must be 'auto' or a number > 0, got {self.learning_rate!r}")
            check_positive(self.learning_rate, "learning_rate", allow_tensor=False)
        self._angle()
        if not isinstance(self.reorder, (bool, np.bool_)) and not (isinstance(self.reorder, str)
                                                                  and self.reorder == "auto"):
            raise ValueError(f"reorder must be 'auto', True or False, got {self.reorder!r}")
        if n < 2:
            raise ValueError(f"X needs at least 2 samples for t-SNE, got n_samples={n}")
        check_perplexity(self.perplexity, n)
        d = self.n_components
        if self.method == "barnes_hut" and d > 3:
            raise ValueError("'n_components' should be inferior to 4 for the barnes_hut algorithm as it relies on "
                             "quad-tree or oct-tree.")
        exact_only = self.kernel == "gaussian" or not self.symmetric
        if not self.symmetric and self.kernel != "gaussian":
            raise ValueError("symmetric=False (plain SNE) needs kernel='gaussian'")
        method = self.method
        if method == "auto":
            if exact_only or d != 2:
                method = "exact"
            else:
                method = "barnes_hut" if n < BARNES_HUT_MAX_N else "fft"
        elif method != "exact" and exact_only:
            raise ValueError(f"method={method!r} needs the symmetric Student-t kernel; use method='exact' for SNE "
                             "and symmetric SNE")
        if method == "fft" and d != 2:
            raise ValueError(f"method='fft' needs n_components=2, got {d}; use 'barnes_hut' or 'exact'")
        if method == "barnes_hut" and d > BH_MAX_DIM:
            raise ValueError(f"method='barnes_hut' supports n_components <= {BH_MAX_DIM} in this build, got {d}; "
                             "use method='exact'")
        if method == "exact" and n > EXACT_LIMIT_N and not on_device:
            raise ValueError(f"method='exact' builds dense N x N matrices; N={n} exceeds {EXACT_LIMIT_N}. "
                             "Use method='barnes_hut' or 'fft' (n_components=2)")
        return method

    def _check_X(self, X):
        """Validated X (dense float32/64 or CSR; an (N, N) distance matrix for "precomputed")."""
        import torch
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        if self.metric == "precomputed":
            from fastrl.neighbors.metrics import check_precomputed
            if not sp.issparse(X):
                X = check_input_matrix(X, "X", accept_sparse=False)
            return check_precomputed(X)
        return check_input_matrix(X, "X")

    def _initial(self, X, rng: np.random.Generator) -> np.ndarray:
        n, d = X.shape[0], self.n_components
        if isinstance(self.init, str):
            check_choice(self.init, "init", ("pca", "random"))
            if self.init == "pca":
                return pca_init(X, d)
            return rng.normal(0.0, 1e-4, size=(n, d))
        Y = as_float_array(self.init, "init", dtype=np.float64)
        if Y.shape != (n, d):
            raise ValueError(f"init must have shape (N, n_components) = {(n, d)}, got {Y.shape}")
        big = float(np.abs(Y).max())
        if big > 1e30:  # the embedding is returned in float32 (max ~3.4e38); t-SNE embeddings span ~1e2
            raise ValueError(f"init has values up to {big:.3g}; they must be below 1e30 in magnitude (the "
                             "embedding is float32, and t-SNE embeddings span ~1e2): rescale init")
        return Y.copy()

    def _device(self, X):
        import torch
        if self.device is not None:
            return check_device(self.device)
        if isinstance(X, torch.Tensor) and X.is_cuda:
            return X.device
        return None

    def _lr(self, n: int, exaggeration: float) -> float:
        """Step on the gradient / 4 (the objectives' scale): 4 x scikit-learn's learning rate;
        "auto" is openTSNE's N / exaggeration."""
        if isinstance(self.learning_rate, str):
            return n / exaggeration
        return 4.0 * float(self.learning_rate)

    # -------------------------------------------------------------- affinities
    def _affinities(self, X, method: str, knn_seed: int, log, timer=NULL_TIMER, phase=None, p_dtype=np.float64):
        """P for ``method`` (dense for "exact") from X under ``self.metric``
        (phases "knn" and "affinities" timed on ``timer`` and announced to ``phase(name)``;
        sparse values stored as ``p_dtype``)."""
        phase = phase or (lambda name: None)
        import time

        from fastrl.neighbors import knn_graph
        from fastrl.neighbors.metrics import _knn_from_rows, canonical_metric, metric_knn_graph, pairwise
        n = X.shape[0]
        kind, name, params = canonical_metric(self.metric, self.metric_params)
        # scikit-learn: squared distances in the Gaussian for euclidean, the distances themselves otherwise
        # (the compiled calibration squares what it gets, hence the square roots)
        raw = not (kind == "fast" and name == "euclidean")
        tic = time.time()
        lap = timer.clock()
        phase("knn")
        k = n - 1 if method == "exact" else n_neighbors_for(self.perplexity, n)
        if log:
            log(f"[t-SNE] Computing {k} nearest neighbors...")
        if method == "exact" and not raw and not sp.issparse(X):
            idx, dist = knn_graph(X, k, method="exact", n_jobs=self.n_jobs)
        elif method == "exact":
            idx, dist = _knn_from_rows(pairwise(X, self.metric, self.metric_params, n_jobs=self.n_jobs), k, 0)
        elif kind == "fast":
            A = X.toarray() if sp.issparse(X) else X
            idx, dist = knn_graph(A, k, method=self.neighbors, metric=name, n_jobs=self.n_jobs,
                                  random_state=knn_seed)
        else:
            idx, dist = metric_knn_graph(X, k, self.metric, self.metric_params, n_jobs=self.n_jobs)
        if raw:
            dist = np.sqrt(np.asarray(dist, dtype=np.float64))
        if log:
            log(f"[t-SNE] Computed neighbors for {n} samples in {time.time() - tic:.3f}s...")
        lap = timer.lap("knn", lap)
        phase("affinities")
        if method == "exact":
            P = dense_from_knn(idx, dist, self.perplexity, symmetric=self.symmetric, n_jobs=self.n_jobs)
            beta = None
        else:
            # sparse_from_knn's steps, each input released once used (at 1M points and k = 90 the
            # distances, int32 ids and float32 conditional P are 0.36 GB each, not 0.72 for float64)
            idx = idx.astype(np.int32)  # N < 2^31 (checked at the door): half the bytes while P is built
            Pc, beta = multiscale_affinities(dist, self.perplexity, n_jobs=self.n_jobs, return_beta=True)
            del dist
            if p_dtype == np.float32:  # P is rounded to float32 anyway
                Pc = Pc.astype(np.float32)
            P = symmetrize(idx, Pc, n, n_jobs=self.n_jobs, dtype=p_dtype)
            del idx, Pc
        timer.lap("affinities", lap)
        if log:
            log(f"[t-SNE] Computed conditional probabilities for sample {n} / {n}")
            if beta is not None:
                log(f"[t-SNE] Mean sigma: {float(np.mean(np.sqrt(1.0 / np.maximum(beta, 1e-300)))):.6f}")
        return P

    # --------------------------------------------------------------------- fit
    def fit(self, X, y=None):
        """Embed ``X``.

        Before any work the peak memory of the fit is estimated from the
        shape of ``X`` (:func:`fastrl.manifold.tsne.memory.estimate_fit_memory`:
        the data, kNN graph, P, embedding and optimiser state, FFT grids) and
        a fit that would not fit in the available memory is refused.

        Parameters
        ----------
        X : ndarray or scipy.sparse matrix, shape (N, D), or (N, N) distances for metric="precomputed"
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        fastrl._validation.InsufficientMemoryError
            (a ``MemoryError`` and a ``ValueError``) when the estimate exceeds
            the available memory (``MemAvailable``).
        """
        self._fit(X)
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        """Fit and return ``embedding_`` (ndarray of float32, shape (N, n_components))."""
        self._fit(X)
        return self.embedding_

    def _fit(self, X):
        timer = PhaseTimer()
        device = self._device(X)  # checked before any work
        check_int32_points(X, "X", "TSNE (int32 point ids in the kNN graph and the affinities)")
        if isinstance(self.init, str) and self.init == "pca" and self.metric == "precomputed":
            raise ValueError('The parameter init="pca" cannot be used with metric="precomputed".')
        shape = getattr(X, "shape", None)
        early = shape is not None and len(shape) == 2 and shape[0] >= 2 and shape[1] >= 1
        if early:  # the memory check (before X is read or copied) needs the method
            method = self._check_params(int(shape[0]), on_device=device is not None)
            self._check_memory(X, "barnes_hut" if device is not None else method)
        X = self._check_X(X)
        n = X.shape[0]
        if not early:
            method = self._check_params(n, on_device=device is not None)
        if device is not None:
            if self.kernel != "student_t" or not self.symmetric or self.n_components > 3:
                raise ValueError("device= needs kernel='student_t', symmetric=True and n_components <= 3")
            method = "device"
        log = (lambda msg: print(msg, file=sys.stdout, flush=True)) if self.verbose else None
        rs = self.random_state
        if isinstance(rs, np.random.RandomState):
            rs = int(rs.randint(2**31 - 1))
        rng = np.random.default_rng(rs)
        progress, phase = progress_bar(self.progress_bar, self.max_iter, method)
        phase("init")
        lap = timer.clock()
        Y = self._initial(X, rng)
        timer.lap("init", lap)
        knn_seed = int(rng.integers(2**31 - 1))
        angle = self._angle()
        p_dtype = np.float32 if device is None and n >= _aff.COMPACT_P_MIN_N else np.float64
        P = self._affinities(X, "exact" if method == "exact" else "sparse", knn_seed, log, timer, phase, p_dtype)
        lap = timer.clock()
        if device is not None:
            import torch

            from fastrl.manifold.tsne.torch_path import TorchGradientDescent, TorchObjective
            objective = TorchObjective(P, device, dof=self.dof)
            Y = torch.as_tensor(Y, dtype=torch.float32, device=device)
            opt = TorchGradientDescent(Y)
        else:
            if method == "exact":
                objective = ExactObjective(P, kernel=self.kernel, symmetric=self.symmetric, dof=self.dof)
            else:
                objective = SparseObjective(P, method, dof=self.dof, theta=angle, n_jobs=self.n_jobs, timer=timer)
            opt = GradientDescent(Y, n_jobs=self.n_jobs)
        del P  # the objective holds it: the re-ordering's permuted copies replace it there (no stale copy here)
        timer.lap("init", lap)
        reorder = Reordering() if device is None and reorder_wanted(self.reorder, n, method) else None
        callbacks = [] if self.callbacks is None else (
            [self.callbacks] if callable(self.callbacks) else list(self.callbacks))
        history: list = []
        ee_iter = self._EXPLORATION_MAX_ITER if self.early_exaggeration_iter is None else self.early_exaggeration_iter
        ee_iter = min(ee_iter, self.max_iter)
        common = dict(callbacks=callbacks, history=history, max_step_norm=self.max_step_norm, progress=progress,
                      kl_every=self._N_ITER_CHECK, min_grad_norm=float(self.min_grad_norm),
                      log=log if self.verbose >= 2 else None,  # per-check lines at verbose >= 2, as scikit-learn
                      reorder=reorder, timer=timer)
        phase("early")
        it, stopped, kl = run_phase(Y, objective, opt, n_iter=ee_iter, start=0,
                                    learning_rate=self._lr(n, self.early_exaggeration),
                                    momentum=self.initial_momentum, exaggeration=float(self.early_exaggeration),
                                    n_iter_without_progress=self._EXPLORATION_MAX_ITER, **common)
        if log and kl is not None:
            log(f"[t-SNE] KL divergence after {it} iterations with early exaggeration: {kl:f}")
        if stopped != "callback":  # scikit-learn runs the second phase after any other early stop
            phase("final")
            it2, _, kl2 = run_phase(Y, objective, opt, n_iter=self.max_iter - it, start=it,
                                           learning_rate=self._lr(n, 1.0), momentum=self.final_momentum,
                                           exaggeration=1.0, n_iter_without_progress=self.n_iter_without_progress,
                                           **common)
            if kl2 is not None:
                it, kl = it2, kl2
        if progress is not None:
            progress.close()
        if kl is None:  # no iteration ran
            kl = float(objective(Y, 1.0, True)[0])
        if device is not None:
            Y = Y.detach().cpu().double().numpy()
        if reorder is not None:
            Y = reorder.to_caller(Y)
        self.timings_ = timer.as_dict(it)
        if log:
            log_fit_end(log, it, kl, objective, reorder, self.timings_)
        self.embedding_ = np.asarray(Y, dtype=np.float32)
        self.kl_divergence_ = float(kl)
        self.n_iter_ = max(it - 1, 0)
        self.kl_history_ = history
        self.method_ = "exact" if method == "device" else method
        self.learning_rate_ = self._lr(n, self.early_exaggeration) / 4.0
        self.n_features_in_ = X.shape[1]
        self._X = X
        self._Y64 = np.asarray(Y, dtype=np.float64)
        return self

    def _check_memory(self, X, method: str) -> None:
        """Refuse a fit whose estimated peak memory exceeds the available memory (before any allocation)."""
        check_input_memory(X, self.perplexity, what="TSNE.fit", n_components=self.n_components, method=method,
                           precomputed=self.metric == "precomputed",
                           reorder=reorder_wanted(self.reorder, int(X.shape[0]), method),
                           pca=isinstance(self.init, str) and self.init == "pca")

    # --------------------------------------------------------------- transform
    def transform(self, X, *, perplexity: float = 5.0, max_iter: int = 250, learning_rate: float = 0.1,
                  exaggeration: float = 1.5, momentum: float = 0.8, max_grad_norm: float | None = 0.25):
        """Place new points into the fitted embedding (openTSNE's recipe; a
        fastrl extra, scikit-learn's TSNE has no ``transform``).

        Affinities of each new point to its ``3 * perplexity`` nearest training
        points (:func:`fastrl.neighbors.knn_query`), initialisation at the
        median of those points' positions, then only the new points are
        optimised (Barnes-Hut repulsion from the fixed training embedding).

        Parameters
        ----------
        X : ndarray, shape (M, D)
        perplexity : float
        max_iter : int
        learning_rate, exaggeration : float
            > 0 and finite (openTSNE's units).
        momentum : float
            In [0, 1].
        max_grad_norm : float or None
            Per-point gradient clipping.

        Returns
        -------
        ndarray of float32, shape (M, n_components)
        """
        if not hasattr(self, "embedding_"):
            raise not_fitted_error("TSNE")
        if self.kernel != "student_t" or self.n_components > 2:
            raise ValueError("transform needs n_components <= 2 and kernel='student_t'")
        metric = self.metric if isinstance(self.metric, str) else None
        if metric not in ("euclidean", "cosine") or self.metric_params:
            raise ValueError(f"transform supports metric='euclidean' or 'cosine', the model uses {self.metric!r}")
        X = check_input_matrix(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but TSNE is expecting {self.n_features_in_} features "
                             "as input")
        check_int(max_iter, "max_iter", low=0)
        check_positive(learning_rate, "learning_rate", allow_tensor=False)
        check_positive(exaggeration, "exaggeration", allow_tensor=False)
        _check_fraction(momentum, "momentum")
        if max_grad_norm is not None:
            check_positive(max_grad_norm, "max_grad_norm", allow_tensor=False)
        X_in = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
        X = as_float_array(X_in, "X")
        X_train = np.asarray(self._X.toarray() if sp.issparse(self._X) else self._X, dtype=np.float64)
        P = transform_affinities(X_train, X, perplexity, metric=metric, n_jobs=self.n_jobs)
        m = X.shape[0]
        k = P.indptr[1] - P.indptr[0]
        cols = P.indices.reshape(m, k)
        ref = self._Y64 if self.n_components == 2 else np.hstack([self._Y64, np.zeros_like(self._Y64)])
        Y = np.ascontiguousarray(np.median(ref[cols], axis=1))  # 1-D: embedded on the line y = 0
        objective = TransformObjective(P, ref, dof=self.dof, theta=self._angle(), n_jobs=self.n_jobs)
        opt = GradientDescent(Y, n_jobs=self.n_jobs)
        run_phase(Y, objective, opt, n_iter=max_iter, start=0, learning_rate=learning_rate, momentum=momentum,
                  exaggeration=exaggeration, center=False, max_grad_norm=max_grad_norm, max_step_norm=None)
        # a new point equal to a training point takes that point's fitted position (so that
        # fit(X).transform(X) == fit_transform(X), scikit-learn's transformer contract)
        first = cols[np.arange(m), np.argmin(np.linalg.norm(X_train[cols] - X_in[:, None, :], axis=2), axis=1)]
        same = (X_train[first] == X_in).all(axis=1)
        Y[same] = ref[first[same]]
        Y = Y[:, :self.n_components]
        return Y.astype(np.float32)
