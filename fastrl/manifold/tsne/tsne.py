"""scikit-learn-compatible t-SNE estimator (openTSNE defaults and speed tricks)."""
from __future__ import annotations

import numpy as np

from fastrl._validation import as_float_array, check_choice, check_int, check_positive
from fastrl.manifold.tsne.affinities import (check_perplexity, dense_affinities, joint_probabilities,
                                             transform_affinities)
from fastrl.manifold.tsne.optimizer import (ExactObjective, GradientDescent, SparseObjective, TransformObjective,
                                            run_phase)

METHODS = ("auto", "exact", "barnes_hut", "fft")
KERNELS = ("student_t", "gaussian")
EXACT_MAX_N = 500        # "auto": exact O(N^2) gradient below this size
BARNES_HUT_MAX_N = 10_000  # "auto": Barnes-Hut below this size, FFT interpolation above
EXACT_LIMIT_N = 20_000     # dense O(N^2) memory beyond this is refused


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
    X = np.asarray(X, dtype=np.float64)
    k = min(n_components, *X.shape)
    E = pca(X, k, method="covariance")
    if k < n_components:  # D < n_components: pad with zeros
        E = np.pad(E, ((0, 0), (0, n_components - k)))
    s = E[:, 0].std()
    return np.ascontiguousarray(E / (s if s > 0 else 1.0) * std)


class TSNE:
    """t-Distributed Stochastic Neighbour Embedding (and SNE / symmetric SNE).

    Parameters
    ----------
    n_components : int
        Embedding dimension (Barnes-Hut, FFT and ``transform`` need 2).
    perplexity : float
        Effective number of neighbours, ``0 < perplexity < N``; the kNN graph
        has ``k = min(N - 1, 3 * perplexity)`` neighbours.
    early_exaggeration : float
        Factor on P during the first ``early_exaggeration_iter`` iterations.
    early_exaggeration_iter : int
    learning_rate : float or "auto"
        ``"auto"``: ``N / exaggeration`` in each phase (openTSNE; the step is on
        the KL gradient divided by 4).
    max_iter : int
        Total iterations, early exaggeration included.
    method : {"auto", "exact", "barnes_hut", "fft"}
        Repulsion: exact O(N^2), Barnes-Hut quadtree, or FFT-accelerated
        interpolation. ``"auto"``: exact below 500 points, Barnes-Hut below
        10 000, FFT above (exact when ``n_components != 2``).
    theta : float
        Barnes-Hut opening angle.
    init : {"pca", "random"} or ndarray of shape (N, n_components)
        ``"pca"``: PCA scaled to standard deviation 1e-4; ``"random"``:
        N(0, 1e-4^2). Arrays are used as given.
    metric : {"euclidean", "cosine"}
    dof : float
        Degrees of freedom of the Student-t output kernel (1 = t-SNE).
    neighbors : {"auto", "exact", "approx"}
        kNN method, see :func:`fastrl.neighbors.knn_graph`.
    kernel : {"student_t", "gaussian"}
        ``"gaussian"`` (only with ``method="exact"``) gives symmetric SNE.
    random_state : int or numpy Generator, optional
        Same seed, same thread count -> bitwise identical embedding.
    n_jobs : int, optional
        Threads (None or -1: all cores).
    verbose : bool
        tqdm progress bar with the KL divergence.
    callbacks : callable or list of callables, optional
        ``callback(iteration, kl, embedding)`` every 50 iterations; returning
        True stops the optimisation.
    symmetric : bool
        False (with ``kernel="gaussian"``, ``method="exact"``) runs plain,
        asymmetric SNE (Hinton & Roweis 2002): conditional P and per-point Q,
        cost ``sum_i KL(P_i || Q_i)``.
    initial_momentum, final_momentum : float
        Momentum during / after early exaggeration.
    max_step_norm : float or None
        Per-point step clipping (openTSNE's default 5).
    device : str or torch.device, optional
        Run the optimisation on torch tensors on this device ("cuda": Triton
        kernels, attractive forces over the sparse P plus tiled exact
        repulsion). A CUDA tensor ``X`` selects its device. Affinities are
        computed on the CPU either way. Needs the Student-t kernel and
        ``n_components <= 3``.

    Attributes
    ----------
    embedding_ : ndarray of float64, shape (N, n_components)
    kl_divergence_ : float
        Final KL(P || Q).
    n_iter_ : int
    kl_history_ : list of (iteration, kl)
    method_ : str
        The method used.
    """

    def __init__(self, n_components=2, perplexity=30.0, early_exaggeration=12.0, early_exaggeration_iter=250,
                 learning_rate="auto", max_iter=750, method="auto", theta=0.5, init="pca", metric="euclidean",
                 dof=1.0, neighbors="auto", kernel="student_t", random_state=None, n_jobs=None, verbose=False,
                 callbacks=None, symmetric=True, initial_momentum=0.5, final_momentum=0.8, max_step_norm=5.0,
                 device=None):
        self.n_components = n_components
        self.perplexity = perplexity
        self.early_exaggeration = early_exaggeration
        self.early_exaggeration_iter = early_exaggeration_iter
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.method = method
        self.theta = theta
        self.init = init
        self.metric = metric
        self.dof = dof
        self.neighbors = neighbors
        self.kernel = kernel
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.callbacks = callbacks
        self.symmetric = symmetric
        self.initial_momentum = initial_momentum
        self.final_momentum = final_momentum
        self.max_step_norm = max_step_norm
        self.device = device

    # ------------------------------------------------- scikit-learn protocol
    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters (scikit-learn's estimator protocol)."""
        import inspect
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def set_params(self, **params):
        """Set constructor parameters; returns self."""
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for TSNE; valid: {sorted(valid)}")
            setattr(self, key, value)
        return self

    # ------------------------------------------------------------------ checks
    def _check_params(self, n: int, on_device: bool = False) -> str:
        check_int(self.n_components, "n_components", low=1)
        check_positive(self.early_exaggeration, "early_exaggeration", allow_tensor=False)
        check_int(self.early_exaggeration_iter, "early_exaggeration_iter", low=0)
        check_int(self.max_iter, "max_iter", low=1)
        check_choice(self.method, "method", METHODS)
        check_positive(self.theta, "theta", allow_tensor=False, strict=False)
        check_positive(self.dof, "dof", allow_tensor=False)
        check_choice(self.kernel, "kernel", KERNELS)
        check_choice(self.neighbors, "neighbors", ("auto", "exact", "approx"))
        check_choice(self.metric, "metric", ("euclidean", "cosine"))
        if not (isinstance(self.learning_rate, str) and self.learning_rate == "auto"):
            check_positive(self.learning_rate, "learning_rate", allow_tensor=False)
        if n < 4:
            raise ValueError(f"X needs at least 4 samples for t-SNE, got N={n}")
        check_perplexity(self.perplexity, n)
        method = self.method
        exact_only = self.kernel == "gaussian" or not self.symmetric or self.n_components != 2
        if not self.symmetric and self.kernel != "gaussian":
            raise ValueError("symmetric=False (plain SNE) needs kernel='gaussian'")
        if method == "auto":
            method = "exact" if exact_only or n < EXACT_MAX_N else ("barnes_hut" if n < BARNES_HUT_MAX_N else "fft")
        elif method != "exact" and exact_only:
            raise ValueError(f"method={method!r} needs n_components=2 and the symmetric Student-t kernel; "
                             "use method='exact' for SNE, symmetric SNE or other dimensions")
        if method == "exact" and n > EXACT_LIMIT_N and not on_device:
            raise ValueError(f"method='exact' builds dense N x N matrices; N={n} exceeds {EXACT_LIMIT_N}. "
                             "Use method='barnes_hut' or 'fft' (n_components=2)")
        return method

    def _initial(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, d = X.shape[0], self.n_components
        if isinstance(self.init, str):
            check_choice(self.init, "init", ("pca", "random"))
            if self.init == "pca":
                return pca_init(X, d)
            return rng.normal(0.0, 1e-4, size=(n, d))
        Y = as_float_array(self.init, "init", dtype=np.float64)
        if Y.shape != (n, d):
            raise ValueError(f"init must have shape (N, n_components) = {(n, d)}, got {Y.shape}")
        return Y.copy()

    def _device(self, X):
        import torch
        if self.device is not None:
            return torch.device(self.device)
        if isinstance(X, torch.Tensor) and X.is_cuda:
            return X.device
        return None

    def _lr(self, n: int, exaggeration: float) -> float:
        if isinstance(self.learning_rate, str):
            return n / exaggeration
        return float(self.learning_rate)

    # --------------------------------------------------------------------- fit
    def fit(self, X, y=None):
        """Embed ``X``.

        Parameters
        ----------
        X : ndarray, shape (N, D)
        y : ignored

        Returns
        -------
        self
        """
        device = self._device(X)
        X = as_float_array(X, "X")
        n = X.shape[0]
        method = self._check_params(n, on_device=device is not None)
        if device is not None:
            if self.kernel != "student_t" or not self.symmetric or self.n_components > 3:
                raise ValueError("device= needs kernel='student_t', symmetric=True and n_components <= 3")
            method = "exact"  # tiled exact repulsion on the device
        rng = np.random.default_rng(self.random_state)
        Y = self._initial(X, rng)
        knn_seed = int(rng.integers(2**31 - 1))
        if device is not None:
            import torch

            from fastrl.manifold.tsne.torch_path import TorchGradientDescent, TorchObjective
            P = joint_probabilities(X, self.perplexity, neighbors=self.neighbors, metric=self.metric,
                                    n_jobs=self.n_jobs, random_state=knn_seed)
            objective = TorchObjective(P, device, dof=self.dof)
            Y = torch.as_tensor(Y, dtype=torch.float32, device=device)
        elif method == "exact":
            P = dense_affinities(X, self.perplexity, symmetric=self.symmetric, metric=self.metric,
                                 n_jobs=self.n_jobs)
            objective = ExactObjective(P, kernel=self.kernel, symmetric=self.symmetric, dof=self.dof)
        else:
            P = joint_probabilities(X, self.perplexity, neighbors=self.neighbors, metric=self.metric,
                                    n_jobs=self.n_jobs, random_state=knn_seed)
            objective = SparseObjective(P, "fft" if method == "fft" else "barnes_hut", dof=self.dof,
                                        theta=self.theta, n_jobs=self.n_jobs)
        callbacks = [] if self.callbacks is None else (
            [self.callbacks] if callable(self.callbacks) else list(self.callbacks))
        opt = TorchGradientDescent(Y) if device is not None else GradientDescent(Y, n_jobs=self.n_jobs)
        history: list = []
        progress = None
        if self.verbose:
            from tqdm.auto import tqdm
            progress = tqdm(total=self.max_iter, desc=f"t-SNE ({method})", unit="it")
        ee_iter = min(self.early_exaggeration_iter, self.max_iter)
        common = dict(callbacks=callbacks, progress=progress, history=history, max_step_norm=self.max_step_norm)
        try:
            it, stopped = run_phase(Y, objective, opt, n_iter=ee_iter, start=0,
                                    learning_rate=self._lr(n, self.early_exaggeration),
                                    momentum=self.initial_momentum, exaggeration=float(self.early_exaggeration),
                                    **common)
            if not stopped:
                it, stopped = run_phase(Y, objective, opt, n_iter=self.max_iter - ee_iter, start=it,
                                        learning_rate=self._lr(n, 1.0), momentum=self.final_momentum,
                                        exaggeration=1.0, **common)
        finally:
            if progress is not None:
                progress.close()
        kl, _ = objective(Y, 1.0, True)
        if device is not None:
            Y = Y.detach().cpu().double().numpy()
        self.embedding_ = Y
        self.kl_divergence_ = float(kl)
        self.n_iter_ = it
        self.kl_history_ = history
        self.method_ = method
        self._X = X
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        """Fit and return ``embedding_`` (ndarray of float64, shape (N, n_components))."""
        return self.fit(X).embedding_

    # --------------------------------------------------------------- transform
    def transform(self, X, *, perplexity: float = 5.0, max_iter: int = 250, learning_rate: float = 0.1,
                  exaggeration: float = 1.5, momentum: float = 0.8, max_grad_norm: float | None = 0.25):
        """Place new points into the fitted embedding (openTSNE's recipe).

        Affinities of each new point to its ``3 * perplexity`` nearest training
        points (:func:`fastrl.neighbors.knn_query`), initialisation at the
        median of those points' positions, then only the new points are
        optimised (Barnes-Hut repulsion from the fixed training embedding).

        Parameters
        ----------
        X : ndarray, shape (M, D)
        perplexity : float
        max_iter : int
        learning_rate, exaggeration, momentum : float
        max_grad_norm : float or None
            Per-point gradient clipping.

        Returns
        -------
        ndarray of float64, shape (M, n_components)
        """
        if not hasattr(self, "embedding_"):
            raise RuntimeError("TSNE.transform needs a fitted model: call fit first")
        if self.n_components != 2 or self.kernel != "student_t":
            raise ValueError("transform needs n_components=2 and kernel='student_t'")
        X = as_float_array(X, "X")
        if X.shape[1] != self._X.shape[1]:
            raise ValueError(f"X has {X.shape[1]} features but the model was fitted on {self._X.shape[1]}")
        check_int(max_iter, "max_iter", low=0)
        P = transform_affinities(self._X, X, perplexity, metric=self.metric, n_jobs=self.n_jobs)
        m = X.shape[0]
        k = P.indptr[1] - P.indptr[0]
        cols = P.indices.reshape(m, k)
        Y = np.ascontiguousarray(np.median(self.embedding_[cols], axis=1))
        objective = TransformObjective(P, self.embedding_, dof=self.dof, theta=self.theta, n_jobs=self.n_jobs)
        opt = GradientDescent(Y, n_jobs=self.n_jobs)
        run_phase(Y, objective, opt, n_iter=max_iter, start=0, learning_rate=learning_rate, momentum=momentum,
                  exaggeration=exaggeration, center=False, max_grad_norm=max_grad_norm, max_step_norm=None)
        return Y
