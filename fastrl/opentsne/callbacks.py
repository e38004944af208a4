"""openTSNE's ``callbacks`` module: the :class:`Callback` protocol and
:class:`VerifyExaggerationError`, over fastrl's objective functions."""
from __future__ import annotations

import logging

import numpy as np

from fastrl.opentsne.tsne import _BH, _FFT, kl_divergence_bh, kl_divergence_fft

log = logging.getLogger(__name__)


class Callback:
    """Called as ``callback(iteration, error, embedding)`` every
    ``callbacks_every_iters`` iterations; returning True stops the optimisation."""

    def optimization_about_to_start(self):
        """Called before the optimisation starts."""

    def __call__(self, iteration, error, embedding):
        """Return True to interrupt the optimisation."""


class VerifyExaggerationError(Callback):
    """Checks that the KL divergence reported while P is exaggerated is the
    divergence of the unexaggerated P: it recomputes it from a copy of
    ``embedding.affinities.P`` (taken at construction) with the embedding's own
    gradient method and raises ``RuntimeError`` when the two differ by more than 1e-8."""

    def __init__(self, embedding) -> None:
        self.embedding = embedding
        self.P = embedding.affinities.P.copy()

    def __call__(self, iteration, corrected_error, embedding):
        params = self.embedding.gradient_descent_params
        method = params.get("negative_gradient_method", "auto")
        if callable(method):
            method = "fft" if "fft" in getattr(method, "__name__", "") else "bh"
        if method == "auto":
            method = "bh" if embedding.shape[0] < 10_000 else "fft"
        dof = params.get("dof", 1)
        if method in _FFT:
            true_error, _ = kl_divergence_fft(embedding, self.P, dof, params, should_eval_error=True,
                                              n_jobs=params.get("n_jobs", 1))
        elif method in _BH:
            true_error, _ = kl_divergence_bh(embedding, self.P, dof, {"theta": params.get("theta", 0.5)},
                                             should_eval_error=True, n_jobs=params.get("n_jobs", 1))
        else:
            raise ValueError(f"Unrecognized gradient method `{method}`")
        if not np.isfinite(corrected_error) or abs(true_error - corrected_error) > 1e-8:
            raise RuntimeError(f"Correction term is wrong: reported KL {corrected_error!r}, true KL {true_error!r} "
                               f"at iteration {iteration}")
        log.info("Corrected: %.4f - True %.4f [eps %.4f]", corrected_error, true_error,
                 abs(true_error - corrected_error))


__all__ = ["Callback", "VerifyExaggerationError"]
