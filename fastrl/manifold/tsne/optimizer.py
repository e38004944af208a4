"""Objectives and the gradient-descent loop for t-SNE.

Each objective maps ``(Y, exaggeration, eval_kl)`` to ``(kl or None, g)`` with
``g`` the cost gradient divided by 4 (openTSNE's scaling, so its learning
rates apply: ``learning_rate="auto"`` is ``N / exaggeration``). The update step
(gains, momentum, step clipping, centring) runs in the compiled core, so the
Python loop costs a few calls per iteration, never per point.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from fastrl.manifold.tsne.gradients import CSRParts, attractive_forces, bh_repulsion, fft_fits, fft_repulsion
from fastrl.manifold.tsne.reference import exact_kl_gradient
from fastrl.manifold.tsne.timing import NULL_TIMER, PhaseTimer
from fastrl.neighbors.knn import _core, _n_jobs


class SparseObjective:
    """KL(P || Q) over a sparse joint P; repulsion by ``"fft"`` or ``"barnes_hut"``.

    ``timer`` (a :class:`~fastrl.manifold.tsne.timing.PhaseTimer`) gets the
    ``"attractive"`` and ``"repulsion"`` phases (and the FFT parts)."""

    def __init__(self, P, method: str, *, dof: float = 1.0, theta: float = 0.5, n_jobs=None,
                 min_num_intervals: int = 50, ints_in_interval: float = 1.0, timer: PhaseTimer | None = None):
        self.P, self.method, self.dof, self.theta, self.n_jobs = CSRParts(P), method, float(dof), float(theta), n_jobs
        self.timer = NULL_TIMER if timer is None else timer
        self.grid = dict(min_num_intervals=int(min_num_intervals), ints_in_interval=float(ints_in_interval))
        self.cache: dict = {}
        self.calls = self.bh_fallbacks = 0  # FFT requested but the span exceeded the grid cap

    def __call__(self, Y, exaggeration: float, eval_kl: bool):
        if Y.shape[1] == 1:  # a 1-D embedding is a 2-D one on the line y = 0 (the tree code is 2-D)
            kl, g = self(np.hstack([Y, np.zeros_like(Y)]), exaggeration, eval_kl)
            return kl, np.ascontiguousarray(g[:, :1])
        timer = self.timer
        tic = timer.clock()
        A, kl_part = attractive_forces(self.P, Y, dof=self.dof, exaggeration=exaggeration, eval_kl=True,
                                       n_jobs=self.n_jobs) if eval_kl else (
            attractive_forces(self.P, Y, dof=self.dof, exaggeration=exaggeration, n_jobs=self.n_jobs), None)
        tic = timer.lap("attractive", tic)
        if Y.shape[1] == 3:  # the octree (Numba); the compiled quadtree is 2-D
            from fastrl.manifold.tsne.octree import bh_repulsion_nd
            R, Z = bh_repulsion_nd(Y, theta=self.theta, dof=self.dof)
        elif self.method == "fft" and fft_fits(Y, **self.grid):  # else the grid would exceed its cap: Barnes-Hut
            R, Z = fft_repulsion(Y, dof=self.dof, n_jobs=self.n_jobs, cache=self.cache, timer=timer, **self.grid)
        else:
            self.bh_fallbacks += self.method == "fft"
            R, Z = bh_repulsion(Y, theta=self.theta, dof=self.dof, n_jobs=self.n_jobs)
        self.calls += 1
        A -= R / Z
        timer.lap("repulsion", tic)
        return (kl_part + np.log(Z) if eval_kl else None), A


class ExactObjective:
    """Dense O(N^2) objective: t-SNE, symmetric SNE (``kernel="gaussian"``) or
    plain SNE (``symmetric=False``; its cost is divided by N inside the
    optimizer so that one learning rate fits all three)."""

    def __init__(self, P, *, kernel: str = "student_t", symmetric: bool = True, dof: float = 1.0):
        self.P, self.kernel, self.symmetric, self.dof = P, kernel, symmetric, float(dof)
        self.scale = 0.25 if symmetric else 0.25 / P.shape[0]

    def __call__(self, Y, exaggeration: float, eval_kl: bool):
        kl, grad = exact_kl_gradient(self.P, Y, dof=self.dof, kernel=self.kernel, symmetric=self.symmetric,
                                     exaggeration=exaggeration)
        return (kl if eval_kl else None), grad * self.scale


class TransformObjective:
    """New points against a fixed embedding: each new point i has its own
    ``q_{j|i} = w_ij / Z_i`` over the reference points, the cost is the mean
    over new points of ``KL(P_i || Q_i)`` (rows of P sum to 1); repulsion by
    Barnes-Hut over the reference points. ``pointwise=False`` uses one
    normaliser ``Z = sum_i Z_i`` for all new points (openTSNE's partial
    embeddings)."""

    def __init__(self, P, Y_ref, *, dof: float = 1.0, theta: float = 0.5, n_jobs=None, pointwise: bool = True):
        self.P, self.Y_ref, self.dof, self.theta, self.n_jobs = CSRParts(P), Y_ref, float(dof), float(theta), n_jobs
        self.pointwise = pointwise

    def __call__(self, Y, exaggeration: float, eval_kl: bool):
        A, kl_part = attractive_forces(self.P, Y, dof=self.dof, exaggeration=exaggeration, Y_ref=self.Y_ref,
                                       eval_kl=True, n_jobs=self.n_jobs)
        R, z = bh_repulsion(Y, theta=self.theta, dof=self.dof, Y_ref=self.Y_ref, per_point=True, n_jobs=self.n_jobs)
        if self.pointwise:
            A -= R / z[:, None]
            kl = (kl_part + float(np.log(z).sum())) / Y.shape[0] if eval_kl else None
        else:  # openTSNE's partial embeddings: one normaliser Z = sum_i Z_i over all new points
            Z = float(z.sum())
            A -= R / Z
            kl = kl_part + Y.shape[0] * np.log(Z) if eval_kl else None
        return kl, A


class GradientDescent:
    """Gradient descent with per-coordinate gains and momentum (openTSNE's rule).

    State (``update``, ``gains``) persists across phases, as in openTSNE.
    """

    def __init__(self, Y: np.ndarray, *, n_jobs=None):
        self.update = np.zeros_like(Y)
        self.gains = np.ones_like(Y)
        self.n_jobs = _n_jobs(n_jobs)

    def step(self, Y, grad, *, learning_rate: float, momentum: float, min_gain: float = 0.01,
             max_step_norm: float | None = 5.0, max_grad_norm: float | None = None, center: bool = True):
        if max_grad_norm is not None:
            norm = np.linalg.norm(grad, axis=1)
            coeff = max_grad_norm / (norm + 1e-6)
            mask = coeff < 1
            grad[mask] *= coeff[mask, None]
        _core().tsne_step(Y, self.update, self.gains, grad, float(learning_rate), float(momentum), float(min_gain),
                          float(max_step_norm or 0.0), bool(center), self.n_jobs)


def _grad_norm(grad) -> float:
    if isinstance(grad, np.ndarray):
        return float(np.linalg.norm(grad))
    return float(grad.norm())


def run_phase(Y: np.ndarray, objective: Callable, optimizer: GradientDescent, *, n_iter: int, start: int,
              learning_rate: float, momentum: float, exaggeration: float, kl_every: int = 50,
              callbacks=(), progress=None, history: list | None = None, center: bool = True,
              max_grad_norm: float | None = None, max_step_norm: float | None = 5.0,
              n_iter_without_progress: int | None = None, min_grad_norm: float = 0.0, grad_scale: float = 4.0,
              log: Callable | None = None, reorder=None,
              timer: PhaseTimer | None = None) -> tuple[int, str, float | None]:
    """Run up to ``n_iter`` iterations in place on ``Y`` (scikit-learn's loop).

    Every ``kl_every`` iterations (counted from the start of the whole run),
    and at the phase's last iteration, the KL divergence is evaluated with
    the gradient (before the step). At those checks it is appended to
    ``history``, shown on the progress bar, passed to each callback as
    ``callback(iteration, kl, Y)`` (returning True stops the run) and the
    phase stops, as scikit-learn's, when the KL has not improved for more
    than ``n_iter_without_progress`` iterations or when the gradient norm
    (``grad_scale`` times the objective's scaled gradient: the full KL
    gradient) is ``<= min_grad_norm``. ``log(message)`` receives
    scikit-learn's verbose lines.

    ``reorder`` (a :class:`~fastrl.manifold.tsne.locality.Reordering`)
    re-sorts ``Y``, the optimiser's state and the objective's P along a
    space-filling curve at the iterations it chooses (memory locality); the
    callbacks then get ``Y`` in the caller's order, and the caller maps the
    final ``Y`` back with ``reorder.to_caller``.

    ``timer`` (a :class:`~fastrl.manifold.tsne.timing.PhaseTimer`) gets the
    phases ``"reorder"``, ``"gradient"`` (the objective's call, unless the
    objective times its own parts with this same timer), ``"update"`` (the
    step) and ``"checks"`` (KL checks, progress bar, log, callbacks).

    Returns
    -------
    (iterations done in total, why it stopped early ("callback", "no_progress",
    "grad_norm"; "" when it ran all ``n_iter``), the last KL evaluated or None)
    """
    import time
    it = start
    best_error, best_iter = np.inf, start
    kl_last = None
    tic = time.time()
    timer = NULL_TIMER if timer is None else timer
    grad_phase = None if getattr(objective, "timer", None) is timer else "gradient"
    lap = timer.clock()
    for i in range(n_iter):
        if reorder is not None:
            reorder.maybe(it, Y, objective, optimizer)
            lap = timer.lap("reorder", lap)
        check = (it + 1) % kl_every == 0
        eval_kl = check or i == n_iter - 1
        kl, grad = objective(Y, exaggeration, eval_kl)
        lap = timer.lap(grad_phase, lap) if grad_phase else timer.clock()
        grad_norm = grad_scale * _grad_norm(grad) if check else 0.0
        optimizer.step(Y, grad, learning_rate=learning_rate, momentum=momentum, center=center,
                       max_grad_norm=max_grad_norm, max_step_norm=max_step_norm)
        it += 1
        lap = timer.lap("update", lap)
        if eval_kl:
            kl_last = float(kl)
        if progress is not None:
            progress.update(1)
        if not check:
            lap = timer.lap("checks", lap)
            continue
        if history is not None:
            history.append((it, kl_last))
        if progress is not None:
            progress.set_postfix(kl=f"{kl_last:.4f}", refresh=False)
        if log is not None:
            toc = time.time()
            log(f"[t-SNE] Iteration {it}: error = {kl_last:.7f}, gradient norm = {grad_norm:.7f} "
                f"({kl_every} iterations in {toc - tic:0.3f}s)")
            tic = toc
        view = Y if reorder is None or not callbacks else reorder.to_caller(Y)  # callbacks see the caller's order
        stop = any(bool(cb(it, kl_last, view)) for cb in callbacks)
        lap = timer.lap("checks", lap)
        if stop:
            return it, "callback", kl_last
        if kl_last < best_error:
            best_error, best_iter = kl_last, it
        elif n_iter_without_progress is not None and it - best_iter > n_iter_without_progress:
            if log is not None:
                log(f"[t-SNE] Iteration {it}: did not make any progress during the last "
                    f"{n_iter_without_progress} episodes. Finished.")
            return it, "no_progress", kl_last
        if grad_norm <= min_grad_norm:
            if log is not None:
                log(f"[t-SNE] Iteration {it}: gradient norm {grad_norm:f}. Finished.")
            return it, "grad_norm", kl_last
    return it, "", kl_last
