"""openTSNE's object model (``TSNE``, ``TSNEEmbedding``, ``PartialTSNEEmbedding``)
as a thin layer over fastrl's t-SNE components: the objectives, the
compiled gradient-descent step and the kNN graphs are fastrl's.

Learning rates are openTSNE's (a step on the KL gradient divided by 4,
``"auto"`` = N / exaggeration), as are the defaults.
"""
from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

from fastrl._validation import check_positive
from fastrl.manifold.tsne.optimizer import (ExactObjective, GradientDescent, SparseObjective, TransformObjective,
                                            run_phase)
from fastrl.opentsne import affinity as _affinity
from fastrl.opentsne import initialization as _init

log = logging.getLogger(__name__)

_BH = {"bh", "BH", "barnes-hut", "barnes_hut"}
_FFT = {"fft", "FFT", "interpolation"}


class OptimizationInterrupt(InterruptedError):
    """Raised when a callback returns True; carries the embedding so far."""

    def __init__(self, error, final_embedding):
        super().__init__()
        self.error = error
        self.final_embedding = final_embedding


def _callbacks(callbacks):
    if callbacks is None:
        return []
    if callable(callbacks) and not isinstance(callbacks, Iterable):
        return [callbacks]
    if isinstance(callbacks, Iterable):
        callbacks = list(callbacks)
        if any(not callable(c) for c in callbacks):
            raise ValueError("`callbacks` must contain callable objects!")
        return callbacks
    raise ValueError("`callbacks` must be a callable object!")


def _check_number(value, name, *, strict=True, allow_none=False):
    """A finite float > 0 (>= 0 with ``strict=False``); None passes with ``allow_none``."""
    if value is None and allow_none:
        return None
    return float(check_positive(value, name, allow_tensor=False, strict=strict))


def _kl_and_gradient(embedding, P, dof, reference_embedding, should_eval_error, n_jobs, repulsion):
    """openTSNE's objective contract on fastrl's forces: ``(KL(P || Q), gradient)``
    with the gradient without t-SNE's factor 4 and the KL 0.0 unless asked for."""
    from fastrl.manifold.tsne.gradients import attractive_forces, bh_repulsion
    Y = np.ascontiguousarray(embedding, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    d = Y.shape[1]
    ref = None if reference_embedding is None else np.ascontiguousarray(reference_embedding, dtype=np.float64)
    if ref is not None and ref.ndim == 1:
        ref = ref[:, None]
    if d == 1:  # on the line y = 0 (the tree code is 2-D)
        Y = np.hstack([Y, np.zeros_like(Y)])
        ref = None if ref is None else np.hstack([ref, np.zeros_like(ref)])
    P = sp.csr_matrix(P)
    if should_eval_error:
        A, kl_part = attractive_forces(P, Y, dof=dof, Y_ref=ref, eval_kl=True, n_jobs=n_jobs)
    else:
        A, kl_part = attractive_forces(P, Y, dof=dof, Y_ref=ref, n_jobs=n_jobs), 0.0
    if ref is not None:  # new points against fixed ones: one normaliser over all of them (openTSNE's)
        R, z = bh_repulsion(Y, theta=repulsion.get("theta", 0.5), dof=dof, Y_ref=ref, per_point=True, n_jobs=n_jobs)
        Z = float(z.sum())
    else:
        R, Z = repulsion["fn"](Y)
    A -= R / Z
    kl = float(kl_part + P.sum() * np.log(Z)) if should_eval_error else 0.0
    return kl, np.ascontiguousarray(A[:, :d]).reshape(np.shape(embedding))


def kl_divergence_bh(embedding, P, dof, bh_params, reference_embedding=None, should_eval_error=False, n_jobs=1, **_):
    """KL divergence and gradient with Barnes-Hut repulsion (openTSNE's objective function).

    Parameters
    ----------
    embedding : ndarray, shape (N, d), d <= 3
    P : scipy.sparse matrix, shape (N, N) (or (N, N_ref) with ``reference_embedding``)
        Affinities as given (exaggerated or not: the KL is ``sum p log(p / q)`` over them).
    dof : float
    bh_params : dict
        ``{"theta": float}``.
    reference_embedding : ndarray, shape (N_ref, d), optional
        Fixed points the new ``embedding`` is placed against.
    should_eval_error : bool
    n_jobs : int

    Returns
    -------
    kl : float
        0.0 unless ``should_eval_error``.
    gradient : ndarray of float64, shape (N, d)
        ``dKL/dY / 4`` (openTSNE's scale).
    """
    from fastrl.manifold.tsne.gradients import bh_repulsion
    theta = float(bh_params.get("theta", 0.5))

    def repulse(Y):
        if Y.shape[1] == 3:
            from fastrl.manifold.tsne.octree import bh_repulsion_nd
            return bh_repulsion_nd(Y, theta=theta, dof=dof)
        if Y.shape[1] != 2:
            raise RuntimeError(f"Barnes-Hut t-SNE supports 1 to 3 dimensions, got {Y.shape[1]}")
        return bh_repulsion(Y, theta=theta, dof=dof, n_jobs=n_jobs)

    return _kl_and_gradient(embedding, P, float(dof), reference_embedding, should_eval_error, n_jobs,
                            {"theta": theta, "fn": repulse})


def kl_divergence_fft(embedding, P, dof, fft_params, reference_embedding=None, should_eval_error=False, n_jobs=1,
                      **_):
    """KL divergence and gradient with FFT-interpolated repulsion (openTSNE's
    objective function); same contract as :func:`kl_divergence_bh`.

    ``fft_params``: ``min_num_intervals``, ``ints_in_interval`` (fastrl
    interpolates with 3 points per interval). As in fastrl's optimiser, a 1-D
    embedding, a span too wide for the grid and new points against a
    reference embedding use Barnes-Hut (``theta=0.5``); more than 2
    dimensions raise ``RuntimeError`` as in openTSNE.
    """
    from fastrl.manifold.tsne.gradients import bh_repulsion, fft_fits, fft_repulsion
    if np.ndim(embedding) == 2 and np.shape(embedding)[1] > 2:
        raise RuntimeError("Interpolation based t-SNE for >2 dimensions is currently unsupported (and generally a "
                           "bad idea)")
    grid = dict(min_num_intervals=int(fft_params.get("min_num_intervals", 50)),
                ints_in_interval=float(fft_params.get("ints_in_interval", 1)))

    def repulse(Y):
        if np.ndim(embedding) == 2 and np.shape(embedding)[1] == 2 and fft_fits(Y, **grid):
            return fft_repulsion(Y, dof=dof, n_jobs=n_jobs, **grid)
        return bh_repulsion(Y, theta=0.5, dof=dof, n_jobs=n_jobs)

    return _kl_and_gradient(embedding, P, float(dof), reference_embedding, should_eval_error, n_jobs,
                            {"theta": 0.5, "fn": repulse})


def _optimize(embedding, Y_ref, P, n_iter, params, optimizer, partial: bool):
    """One openTSNE ``gradient_descent`` call on fastrl's objectives (in place on ``embedding``)."""
    n_iter = int(n_iter)
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    n, d = embedding.shape
    exaggeration = params.get("exaggeration")
    exaggeration = 1.0 if exaggeration is None else _check_number(exaggeration, "exaggeration")
    lr = params.get("learning_rate", "auto")
    lr = n / exaggeration if (isinstance(lr, str) and lr == "auto") else _check_number(lr, "learning_rate")
    momentum = _check_number(params.get("momentum", 0.8), "momentum", strict=False)
    dof = _check_number(params.get("dof", 1), "dof")
    theta = _check_number(params.get("theta", 0.5), "theta", strict=False)
    max_grad_norm = _check_number(params.get("max_grad_norm"), "max_grad_norm", allow_none=True)
    max_step_norm = _check_number(params.get("max_step_norm", 5), "max_step_norm", allow_none=True)
    every = int(params.get("callbacks_every_iters", 50))
    if every < 1:
        raise ValueError(f"callbacks_every_iters must be >= 1, got {every}")
    if int(params.get("n_interpolation_points", 3)) != 3:
        warnings.warn("fastrl's FFT interpolation uses 3 points per interval; n_interpolation_points is ignored",
                      UserWarning, stacklevel=4)
    callbacks = _callbacks(params.get("callbacks"))
    method = params.get("negative_gradient_method", "auto")
    explicit = not (isinstance(method, str) and method == "auto")
    if not explicit:
        method = "bh" if n < 10_000 else "fft"
    if callable(method):
        method = getattr(method, "__name__", "")
        method = "fft" if "fft" in method else "bh"
    if method not in _BH | _FFT:
        raise ValueError(f"Unrecognized gradient method `{method}`. Please choose one of the supported methods or "
                         "provide a valid callback.")
    if explicit and not partial and method in _FFT and d > 2:  # openTSNE's errors and warnings for d > 2
        raise RuntimeError("Interpolation based t-SNE for >2 dimensions is currently unsupported (and generally a "
                           "bad idea)")
    if explicit and not partial and method in _BH and d > 3:
        warnings.warn("BH t-SNE for >3 dimensions is generally a bad idea (openTSNE will raise a RuntimeError in "
                      "the future); fastrl computes the exact gradient instead", FutureWarning, stacklevel=4)
    Y = np.ascontiguousarray(embedding, dtype=np.float64)
    if partial:
        ref = np.ascontiguousarray(Y_ref, dtype=np.float64)
        if d == 1:  # on the line y = 0 (the tree code is 2-D)
            Y, ref = np.hstack([Y, np.zeros_like(Y)]), np.hstack([ref, np.zeros_like(ref)])
        objective = TransformObjective(P, ref, dof=dof, theta=theta, n_jobs=params.get("n_jobs", 1))
    elif d <= 2:
        kind = "fft" if (method in _FFT and d == 2) else "barnes_hut"
        objective = SparseObjective(P, kind, dof=dof, theta=theta, n_jobs=params.get("n_jobs", 1),
                                    min_num_intervals=params.get("min_num_intervals", 50),
                                    ints_in_interval=params.get("ints_in_interval", 1))
    else:
        objective = ExactObjective(sp.csr_matrix(P).toarray(), dof=dof)
    if optimizer.gains is None or optimizer.gains.shape != Y.shape:
        optimizer.gains, optimizer.update = np.ones_like(Y), np.zeros_like(Y)
    opt = GradientDescent(Y, n_jobs=params.get("n_jobs", 1))
    opt.gains, opt.update = optimizer.gains, optimizer.update

    at_eval = {}  # the positions the last KL was evaluated at (before that iteration's step, as in openTSNE)

    def evaluated(Yc, exaggeration_, eval_kl):
        if not callbacks:  # the KL is needed only by callbacks and at the end (evaluated below, on the result)
            return float("nan"), objective(Yc, exaggeration_, False)[1]
        if eval_kl:
            at_eval["Y"] = Yc[:, :d].copy()
        return objective(Yc, exaggeration_, eval_kl)

    def view(Yc):  # a copy (with the embedding's attributes): Yc may share the optimiser's memory
        out = embedding.copy()
        out[...] = at_eval.get("Y", Yc[:, :d])
        return out

    cbs = [lambda it, kl, Yc, cb=cb: cb(it, kl, view(Yc)) for cb in callbacks]
    _, stopped, kl = run_phase(Y, evaluated, opt, n_iter=n_iter, start=0, learning_rate=lr, momentum=momentum,
                               exaggeration=exaggeration, kl_every=every, callbacks=cbs, center=not partial,
                               max_grad_norm=max_grad_norm, max_step_norm=max_step_norm, min_grad_norm=-1.0)
    if stopped != "callback" or kl is None:  # openTSNE's closing evaluation, on the final positions
        kl = objective(Y, 1.0, True)[0]
    optimizer.gains, optimizer.update = opt.gains, opt.update
    embedding[...] = Y[:, :d]
    embedding.kl_divergence = float(kl)
    return stopped == "callback", float(kl)


class _Optimizer:
    """The gradient-descent state (gains, last update) carried between ``optimize`` calls."""

    def __init__(self):
        self.gains = None
        self.update = None

    def copy(self):
        o = _Optimizer()
        o.gains = None if self.gains is None else self.gains.copy()
        o.update = None if self.update is None else self.update.copy()
        return o


class _EmbeddingArray(np.ndarray):
    """An ndarray that carries the attributes named in ``_ATTRS`` through views,
    slices and pickling."""

    _ATTRS: tuple = ()

    def __reduce__(self):
        rebuild, args, state = super().__reduce__()
        return rebuild, args, (state, {name: getattr(self, name, None) for name in self._ATTRS})

    def __setstate__(self, state):
        array_state, attrs = state
        super().__setstate__(array_state)
        for name, value in attrs.items():
            setattr(self, name, value)

    def __array_finalize__(self, obj):
        if obj is None:
            return
        for name in self._ATTRS:
            setattr(self, name, getattr(obj, name, None))


class PartialTSNEEmbedding(_EmbeddingArray):
    """New points placed against a fixed reference embedding (an ndarray, shape (M, d))."""

    _ATTRS = ("reference_embedding", "P", "gradient_descent_params", "optimizer", "kl_divergence")

    def __new__(cls, embedding, reference_embedding, P, optimizer=None, **gradient_descent_params):
        obj = np.array(embedding, dtype=np.float64, copy=True).view(cls)
        obj.reference_embedding = reference_embedding
        obj.P = P
        obj.gradient_descent_params = gradient_descent_params
        obj.optimizer = _Optimizer() if optimizer is None else optimizer
        obj.kl_divergence = None
        return obj

    def optimize(self, n_iter, inplace=False, propagate_exception=False, **gradient_descent_params):
        """Run ``n_iter`` iterations on the new points only; returns the (new or same) embedding."""
        embedding = self if inplace else PartialTSNEEmbedding(
            np.copy(self), self.reference_embedding, self.P, optimizer=self.optimizer.copy(),
            **self.gradient_descent_params)
        params = {**self.gradient_descent_params, **gradient_descent_params}
        stopped, kl = _optimize(embedding, self.reference_embedding, self.P, n_iter, params, embedding.optimizer,
                                partial=True)
        if stopped and propagate_exception:
            raise OptimizationInterrupt(kl, embedding)
        return embedding


class TSNEEmbedding(_EmbeddingArray):
    """A t-SNE embedding (an ndarray, shape (N, d)) that can be optimised further
    and can place new points (``transform``, ``prepare_partial``)."""

    _ATTRS = ("affinities", "gradient_descent_params", "random_state", "optimizer", "kl_divergence")

    def __new__(cls, embedding, affinities, dof=1, n_interpolation_points=3, min_num_intervals=50,
                ints_in_interval=1, negative_gradient_method="auto", random_state=None, optimizer=None,
                **gradient_descent_params):
        obj = np.array(embedding, dtype=np.float64, copy=True).view(cls)
        obj.affinities = affinities
        obj.gradient_descent_params = dict(gradient_descent_params, dof=dof,
                                           n_interpolation_points=n_interpolation_points,
                                           min_num_intervals=min_num_intervals, ints_in_interval=ints_in_interval,
                                           negative_gradient_method=negative_gradient_method)
        obj.random_state = random_state
        obj.optimizer = _Optimizer() if optimizer is None else optimizer
        obj.kl_divergence = None
        return obj

    def optimize(self, n_iter, inplace=False, propagate_exception=False, **gradient_descent_params):
        """Run ``n_iter`` iterations (openTSNE's parameters: ``exaggeration``,
        ``momentum``, ``learning_rate``, ``callbacks``, ...); returns the
        (new or same) embedding."""
        if inplace:
            embedding = self
        else:
            params = dict(self.gradient_descent_params)
            fixed = {k: params.pop(k) for k in ("dof", "n_interpolation_points", "min_num_intervals",
                                                 "ints_in_interval", "negative_gradient_method")}
            embedding = TSNEEmbedding(np.copy(self), self.affinities, random_state=self.random_state,
                                      optimizer=self.optimizer.copy(), **fixed, **params)
        params = {**self.gradient_descent_params, **gradient_descent_params}
        stopped, kl = _optimize(embedding, None, self.affinities.P, n_iter, params, embedding.optimizer,
                                partial=False)
        if stopped and propagate_exception:
            raise OptimizationInterrupt(kl, embedding)
        return embedding

    def prepare_partial(self, X, initialization="median", k=25, **affinity_params):
        """Affinities of new points ``X`` (M, D) to the reference ones and their
        initial positions ("median", "weighted", "random" or an (M, d) array)."""
        if ("perplexity" in affinity_params and "perplexities" not in affinity_params
                and "perplexities" in inspect.signature(self.affinities.to_new).parameters):  # multiscale affinities
            affinity_params["perplexities"] = affinity_params.pop("perplexity")
        P, neighbors, distances = self.affinities.to_new(X, return_distances=True, **affinity_params)
        m, d = P.shape[0], self.shape[1]
        if isinstance(initialization, np.ndarray):
            init = np.asarray(initialization, dtype=np.float64)
            if init.shape != (m, d):
                raise ValueError(f"The provided initialization has shape {init.shape}, expected {(m, d)}")
        elif initialization == "random":
            init = _init.random(m, d, random_state=self.random_state)
        elif initialization == "weighted":
            init = _init.weighted_mean(X, self, neighbors[:, :k], distances[:, :k])
        elif initialization == "median":
            init = _init.median(self, neighbors[:, :k])
        else:
            raise ValueError(f"Unrecognized initialization scheme `{initialization}`.")
        return PartialTSNEEmbedding(init, reference_embedding=np.asarray(self), P=P, **self.gradient_descent_params)

    def transform(self, X, perplexity=5, initialization="median", k=25, learning_rate=0.1, early_exaggeration=4,
                  early_exaggeration_iter=0, exaggeration=1.5, n_iter=250, initial_momentum=0.8,
                  final_momentum=0.8, max_grad_norm=0.25, max_step_norm=None, **gradient_descent_params):
        """Embed new points ``X`` (M, D) into this embedding (openTSNE's recipe);
        returns a :class:`PartialTSNEEmbedding`."""
        embedding = self.prepare_partial(X, perplexity=perplexity, initialization=initialization, k=k)
        common = dict(gradient_descent_params, learning_rate=learning_rate, max_grad_norm=max_grad_norm,
                      max_step_norm=max_step_norm)
        try:
            embedding.optimize(n_iter=early_exaggeration_iter, exaggeration=early_exaggeration,
                               momentum=initial_momentum, inplace=True, propagate_exception=True, **common)
            embedding.optimize(n_iter=n_iter, exaggeration=exaggeration, momentum=final_momentum, inplace=True,
                               propagate_exception=True, **common)
        except OptimizationInterrupt as ex:
            embedding = ex.final_embedding
        return embedding


class TSNE:
    """openTSNE's ``TSNE``: ``fit`` returns a :class:`TSNEEmbedding`.

    Parameters follow openTSNE 1.0 (``n_iter`` after ``early_exaggeration_iter``
    iterations of early exaggeration, ``negative_gradient_method`` "auto" /
    "bh" / "fft", ``initialization`` "pca" / "spectral" / "random" / array,
    ``callbacks`` every ``callbacks_every_iters`` iterations, ...). A list of
    perplexities gives multiscale affinities.
    """

    def __init__(self, n_components=2, perplexity=30, learning_rate="auto", early_exaggeration_iter=250,
                 early_exaggeration="auto", n_iter=500, exaggeration=None, dof=1, theta=0.5, n_interpolation_points=3,
                 min_num_intervals=50, ints_in_interval=1, initialization="pca", metric="euclidean",
                 metric_params=None, initial_momentum=0.8, final_momentum=0.8, max_grad_norm=None, max_step_norm=5,
                 n_jobs=1, neighbors="auto", knn_kwargs=None, negative_gradient_method="auto", callbacks=None,
                 callbacks_every_iters=50, random_state=None, verbose=False):
        self.n_components = n_components
        self.perplexity = perplexity
        self.learning_rate = learning_rate
        self.early_exaggeration = (12 if exaggeration is None else max(12, exaggeration)) if (
            isinstance(early_exaggeration, str) and early_exaggeration == "auto") else early_exaggeration
        self.early_exaggeration_iter = early_exaggeration_iter
        self.n_iter = n_iter
        self.exaggeration = exaggeration
        self.dof = dof
        self.theta = theta
        self.n_interpolation_points = n_interpolation_points
        self.min_num_intervals = min_num_intervals
        self.ints_in_interval = ints_in_interval
        if isinstance(initialization, np.ndarray) and initialization.ndim == 2 and \
                initialization.shape[1] != n_components:
            raise ValueError(f"The provided initialization has {initialization.shape[1]} columns, expected "
                             f"n_components={n_components}")
        self.initialization = initialization
        self.metric = metric
        self.metric_params = metric_params
        self.initial_momentum = initial_momentum
        self.final_momentum = final_momentum
        self.max_grad_norm = max_grad_norm
        self.max_step_norm = max_step_norm
        self.n_jobs = n_jobs
        self.neighbors = neighbors
        self.knn_kwargs = knn_kwargs
        self.negative_gradient_method = negative_gradient_method
        self.callbacks = callbacks
        self.callbacks_every_iters = callbacks_every_iters
        self.random_state = random_state
        self.verbose = verbose

    def prepare_initial(self, X=None, affinities=None, initialization=None):
        """Affinities and initial positions; returns an unoptimised :class:`TSNEEmbedding`."""
        if X is None and affinities is None:
            raise ValueError("At least one of `X` or `affinities` must be given")
        if affinities is None:  # refused before any work when the fit cannot fit in memory
            from fastrl.manifold.tsne.memory import check_input_memory
            check_input_memory(X, self.perplexity, what="fastrl.opentsne.TSNE.fit", n_components=self.n_components,
                               method="barnes_hut" if str(self.negative_gradient_method) in _BH else "fft",
                               precomputed=self.metric == "precomputed",
                               pca=isinstance(self.initialization, str) and self.initialization == "pca")
            affinities = _affinity.PerplexityBasedNN(
                X, self.perplexity, method=self.neighbors, metric=self.metric, metric_params=self.metric_params,
                n_jobs=self.n_jobs, random_state=self.random_state, verbose=self.verbose)
        elif not isinstance(affinities, _affinity.Affinities):
            raise ValueError("`affinities` must be an instance of `fastrl.opentsne.affinity.Affinities`, got "
                             f"{type(affinities).__name__}")
        n = affinities.P.shape[0]
        if X is not None and np.shape(X)[0] != n:
            raise ValueError(f"X has {np.shape(X)[0]} rows but the affinities are for {n} points")
        init = self.initialization if initialization is None else initialization
        if isinstance(init, str) and init == "pca" and (X is None or self.metric == "precomputed"):
            log.warning("Attempting to use `pca` initialization without a data matrix (%s): using `spectral` "
                        "initialization instead", "no `X`" if X is None else "precomputed distances")
            init = "spectral"
        if isinstance(init, np.ndarray):
            E = np.array(init, dtype=np.float64)
            if E.shape != (n, self.n_components):
                raise ValueError(f"The provided initialization has shape {E.shape}, expected {(n, self.n_components)}")
        elif init == "pca":
            if X is None:
                raise ValueError('initialization="pca" needs X; use "spectral" with precomputed affinities')
            E = _init.pca(X, self.n_components, random_state=self.random_state)
        elif init == "spectral":
            E = _init.spectral(affinities.P, self.n_components, random_state=self.random_state)
        elif init == "random":
            E = _init.random(n, self.n_components, random_state=self.random_state)
        else:
            raise ValueError(f"Unrecognized initialization scheme `{init}`.")
        params = dict(learning_rate=self.learning_rate, theta=self.theta, max_grad_norm=self.max_grad_norm,
                      max_step_norm=self.max_step_norm, n_jobs=self.n_jobs, callbacks=self.callbacks,
                      callbacks_every_iters=self.callbacks_every_iters, verbose=self.verbose)
        return TSNEEmbedding(E, affinities, dof=self.dof, n_interpolation_points=self.n_interpolation_points,
                             min_num_intervals=self.min_num_intervals, ints_in_interval=self.ints_in_interval,
                             negative_gradient_method=self.negative_gradient_method,
                             random_state=self.random_state, **params)

    def fit(self, X=None, affinities=None, initialization=None):
        """Embed ``X`` (N, D) (or the given affinities); returns a :class:`TSNEEmbedding`."""
        embedding = self.prepare_initial(X, affinities, initialization)
        try:
            embedding.optimize(n_iter=self.early_exaggeration_iter, exaggeration=self.early_exaggeration,
                               momentum=self.initial_momentum, inplace=True, propagate_exception=True)
            embedding.optimize(n_iter=self.n_iter, exaggeration=self.exaggeration, momentum=self.final_momentum,
                               inplace=True, propagate_exception=True)
        except OptimizationInterrupt as ex:
            embedding = ex.final_embedding
        return embedding
