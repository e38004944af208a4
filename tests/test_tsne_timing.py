"""Phase times of t-SNE fits (TSNE.timings_), the phase on the progress bar, and that neither changes results."""
import time

import numpy as np
import pytest

from fastrl.manifold import TSNE
from fastrl.manifold.tsne import fft_repulsion
from fastrl.manifold.tsne import tsne as tsne_module
from fastrl.manifold.tsne.timing import FFT_PARTS, PHASES, PhaseTimer, format_phase_times, phase_sum


def _data(n=600, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 5.0, size=(4, d))
    return centers[rng.integers(0, 4, n)] + rng.standard_normal((n, d))


def _timed_fit(**kw):
    t = TSNE(perplexity=15, max_iter=120, random_state=0, n_jobs=2, **kw)
    t0 = time.perf_counter()
    t.fit(_data())
    return t, time.perf_counter() - t0


@pytest.mark.parametrize("method", ["fft", "barnes_hut"])
def test_timings_cover_the_fit(method):
    t, wall = _timed_fit(method=method)
    tm = t.timings_
    expected = {"knn", "affinities", "init", "attractive", "repulsion", "update", "checks"}
    if method == "fft":
        expected |= set(FFT_PARTS)
    assert expected <= set(tm), sorted(tm)
    assert ("fft_spread" in tm) == (method == "fft") and "gradient" not in tm
    assert tm["n_iter"] == 120 == t.n_iter_ + 1
    assert all(tm[p] >= 0.0 for p in tm if p != "n_iter")
    for p in ("knn", "affinities", "attractive", "repulsion", "update"):
        assert tm[p] > 0.0, p
    total = phase_sum(tm)
    assert total <= tm["total"] <= wall
    assert total >= 0.5 * wall, (total, wall, tm)
    if method == "fft":  # the FFT parts are inside "repulsion"
        assert sum(tm[p] for p in FFT_PARTS) <= tm["repulsion"]


def test_exact_path_times_the_whole_gradient():
    X = _data(120)
    t0 = time.perf_counter()
    t = TSNE(method="exact", perplexity=10, max_iter=60, random_state=0).fit(X)
    wall = time.perf_counter() - t0
    tm = t.timings_
    assert tm["gradient"] > 0 and "attractive" not in tm and "repulsion" not in tm
    assert 0.5 * wall <= phase_sum(tm) <= wall


def test_timer_changes_nothing(monkeypatch):
    kw = dict(perplexity=15, max_iter=120, random_state=3, n_jobs=2, method="fft")
    X = _data()
    E1 = TSNE(**kw).fit_transform(X)
    E2 = TSNE(**kw).fit_transform(X)
    np.testing.assert_array_equal(E1, E2)
    # the same fit with a timer that records nothing: bit-identical embedding and KL
    monkeypatch.setattr(tsne_module, "PhaseTimer", lambda: PhaseTimer(enabled=False))
    t = TSNE(**kw).fit(X)
    np.testing.assert_array_equal(t.embedding_, E1)
    assert set(t.timings_) == {"total", "n_iter"}


def test_fft_repulsion_timer_parts_and_same_result():
    Y = np.random.default_rng(1).standard_normal((500, 2)) * 5
    timer = PhaseTimer()
    R1, Z1 = fft_repulsion(Y, timer=timer)
    R0, Z0 = fft_repulsion(Y)
    np.testing.assert_array_equal(R0, R1)
    assert Z0 == Z1
    assert set(timer.seconds) == set(FFT_PARTS) and all(s > 0 for s in timer.seconds.values())


def test_phase_timer_accumulates():
    timer = PhaseTimer()
    tic = timer.clock()
    time.sleep(0.01)
    tic = timer.lap("knn", tic)
    time.sleep(0.01)
    tic = timer.lap("knn", tic)
    timer.lap("update", tic)
    assert timer.seconds["knn"] >= 0.02 and timer.seconds["update"] >= 0
    d = timer.as_dict(7)
    assert list(d)[:2] == ["knn", "update"] and d["n_iter"] == 7 and d["total"] >= d["knn"]
    off = PhaseTimer(enabled=False)
    off.lap("knn", off.clock())
    assert off.seconds == {}
    assert set(PHASES).isdisjoint(FFT_PARTS)
    assert "knn 0.0" in format_phase_times({"knn": 0.02, "total": 0.04, "n_iter": 0})


def test_progress_bar_shows_phases_and_changes_nothing(capsys):
    X = _data(300)
    kw = dict(perplexity=10, max_iter=100, method="barnes_hut", random_state=0, early_exaggeration_iter=40)
    E = TSNE(progress_bar=True, **kw).fit_transform(X)
    err = capsys.readouterr().err
    for label in ("t-SNE (barnes_hut): initialisation", "kNN graph", "affinities", "early exaggeration",
                  "optimisation"):
        assert label in err, (label, err[-500:])
    assert err.index("kNN graph") < err.index("affinities") < err.index("early exaggeration") \
        < err.index("optimisation")
    assert "100/100" in err and "kl=" in err
    np.testing.assert_array_equal(E, TSNE(**kw).fit_transform(X))


def test_verbose_prints_phase_times(capsys):
    TSNE(perplexity=10, max_iter=50, method="barnes_hut", random_state=0, verbose=1).fit(_data(200))
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("[t-SNE] Phase times:"))
    assert "knn" in line and "repulsion" in line and "for 50 iterations" in line
