"""Phase times of a t-SNE fit and the phase shown on its progress bar.

:class:`PhaseTimer` accumulates ``time.perf_counter`` laps into named
phases: one clock read and one dict update per lap, a few laps per
iteration (well under a microsecond each against milliseconds of work), and
it reads nothing but the clock, so a timed fit computes exactly what an
untimed one does. :class:`TSNE.fit <fastrl.manifold.tsne.TSNE>` exposes the
result as ``timings_`` (:meth:`PhaseTimer.as_dict`).
"""
from __future__ import annotations

from time import perf_counter

# Disjoint phases of a fit (their sum is at most the fit's wall time, "total").
PHASES = ("knn", "affinities", "init", "attractive", "repulsion", "gradient", "update", "reorder", "checks")
# Parts of "repulsion" on the FFT path (inside fft_repulsion): not added to the sum.
FFT_PARTS = ("fft_spread", "fft_transforms", "fft_gather")
PHASE_LABELS = {"knn": "kNN graph", "affinities": "affinities", "init": "initialisation",
                "early": "early exaggeration", "final": "optimisation"}


class PhaseTimer:
    """Accumulated wall time per phase.

    ``tic = timer.lap("phase", tic)`` adds the time since ``tic`` to
    ``phase`` and returns the current clock (the next lap's start). A
    disabled timer (``enabled=False``, :data:`NULL_TIMER`) records nothing.
    """

    __slots__ = ("seconds", "enabled", "_t0")

    def __init__(self, enabled: bool = True):
        self.seconds: dict[str, float] = {}
        self.enabled = enabled
        self._t0 = perf_counter()

    @staticmethod
    def clock() -> float:
        return perf_counter()

    def lap(self, phase: str, tic: float) -> float:
        """Add ``now - tic`` to ``phase``; return ``now``."""
        now = perf_counter()
        if self.enabled:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + (now - tic)
        return now

    def as_dict(self, n_iter: int) -> dict:
        """``{phase: seconds}`` for the phases that ran (:data:`PHASES`, then
        :data:`FFT_PARTS` when the FFT repulsion ran), ``"total"`` (seconds
        since the timer was made) and ``"n_iter"`` (iterations run)."""
        out = {p: self.seconds[p] for p in PHASES + FFT_PARTS if p in self.seconds}
        out.update((p, s) for p, s in self.seconds.items() if p not in out)
        out["total"] = perf_counter() - self._t0
        out["n_iter"] = int(n_iter)
        return out


NULL_TIMER = PhaseTimer(enabled=False)


def phase_sum(timings: dict) -> float:
    """Sum of the disjoint :data:`PHASES` in a ``timings_`` dict (excludes the FFT parts, total and n_iter)."""
    return float(sum(timings.get(p, 0.0) for p in PHASES))


def show_phase(progress, phase: str, method: str) -> None:
    """Put ``phase`` (a key of :data:`PHASE_LABELS`) in the description of a
    tqdm bar (no-op for None). Entering the optimisation restarts the bar's
    clock so that its rate and ETA count only iterations (the kNN graph and
    affinities show as a status line before that)."""
    if progress is None:
        return
    if phase in ("early", "final") and progress.n == 0:
        progress.reset(total=progress.total)
    progress.set_description(f"t-SNE ({method}): {PHASE_LABELS[phase]}", refresh=True)


def progress_bar(enabled: bool, total: int, method: str):
    """``(bar, phase)``: a tqdm bar over ``total`` iterations (None when not
    ``enabled``) and ``phase(name)`` showing a phase on it (:func:`show_phase`)."""
    bar = None
    if enabled:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc=f"t-SNE ({method})", unit="it")
    return bar, (lambda name: show_phase(bar, name, method))


def format_phase_times(timings: dict) -> str:
    """One line of a ``timings_`` dict: each phase's seconds and share of the total."""
    total = max(timings.get("total", 0.0), 1e-12)
    parts = [f"{p} {timings[p]:.3f}s ({100 * timings[p] / total:.0f}%)" for p in PHASES + FFT_PARTS if p in timings]
    return f"{', '.join(parts)}; total {timings.get('total', 0.0):.3f}s for {timings.get('n_iter', 0)} iterations"


def log_fit_end(log, it: int, kl: float, objective, reorder, timings: dict) -> None:
    """scikit-learn's last verbose line of a t-SNE fit, then fastrl's: FFT
    grid-cap fallbacks, changes of path, re-orderings and the phase times."""
    log(f"[t-SNE] KL divergence after {it} iterations: {kl:f}")
    if getattr(objective, "bh_fallbacks", 0):
        log(f"[t-SNE] Barnes-Hut repulsion in {objective.bh_fallbacks} of {objective.calls} gradient "
            f"evaluations: the embedding spanned more than the FFT grid's cap of boxes")
    from fastrl._dispatch import fallbacks
    for key, msg in fallbacks().items():  # warned once per process; backend_info()["fallbacks"] too
        if key.startswith("tsne."):
            log(f"[t-SNE] Change of path in this process: {msg}")
    if reorder is not None:
        log(f"[t-SNE] Re-ordered the points {reorder.count} times along a Hilbert curve ({reorder.seconds:.3f}s)")
    log(f"[t-SNE] Phase times: {format_phase_times(timings)}")


__all__ = ["PhaseTimer", "NULL_TIMER", "PHASES", "FFT_PARTS", "PHASE_LABELS", "phase_sum", "show_phase",
           "progress_bar", "format_phase_times", "log_fit_end"]
