"""The compiled parts of the FFT repulsion and of the update step against plain numpy."""
from __future__ import annotations

import numpy as np
import pytest

from fastrl.neighbors.knn import _core


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pad", [0, 37])
def test_spreading_into_padded_rows_matches_unpadded(dtype, pad):
    rng = np.random.default_rng(5)
    Y = rng.normal(size=(3001, 2)) * 4
    n_boxes, h = 17, 0.51
    lo = float(Y.min()) - 0.1
    g = 3 * n_boxes
    ref = np.empty((3, g, g), dtype=dtype)
    _core().tsne_fft_spread(Y, lo, h, n_boxes, None, ref, 1, centre=(0.3, -0.2))
    wide = np.full((3, g, g + pad), np.nan, dtype=dtype)  # the padding must be zeroed, not left as found
    _core().tsne_fft_spread(Y, lo, h, n_boxes, None, wide, 2, centre=(0.3, -0.2))
    np.testing.assert_array_equal(wide[:, :, :g], ref)
    assert not wide[:, :, g:].any()
    assert ref[0].sum() == pytest.approx(len(Y), rel=1e-5)  # Lagrange weights sum to 1 per point


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [30, 45])  # even m: the column m/2 of the half spectrum counts once
def test_spectral_step_matches_numpy(dtype, m):
    rng = np.random.default_rng(m)
    grid = rng.normal(size=(3, m, m)).astype(dtype)
    spec = np.fft.rfft2(grid).astype(np.complex64 if dtype == np.float32 else np.complex128)
    fk = rng.random((2, m, m // 2 + 1)).astype(dtype) + 0.5
    want_spec = spec * fk[0]
    # Parseval: sum over the full spectrum of |S_0|^2 K_z / m^2 equals the real-space sum
    # of grid_0 times its circular convolution with the kernel whose spectrum is K_z
    full = np.fft.irfft2(fk[1].astype(np.float64), s=(m, m))
    conv = np.fft.irfft2(np.fft.rfft2(grid[0].astype(np.float64)) * np.fft.rfft2(full), s=(m, m))
    want_z = float((conv * grid[0]).sum())
    got = spec.copy()
    z = _core().tsne_fft_spectral(got, fk, 2)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want_spec, rtol=tol, atol=0)
    assert z == pytest.approx(want_z, rel=50 * tol)


def _step_reference(Y, update, gains, grad, lr, momentum, min_gain, max_step_norm):
    flip = np.sign(update) != np.sign(grad)
    gains = np.where(flip, gains + 0.2, gains * 0.8 + min_gain)
    update = momentum * update - lr * gains * grad
    norm = np.linalg.norm(update, axis=1)
    big = norm > max_step_norm
    update[big] *= (max_step_norm / norm[big])[:, None]
    Y = Y + update
    return Y - Y.mean(0), update, gains


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_update_step_matches_numpy(n_jobs):
    rng = np.random.default_rng(2)
    n = 9001  # several of the step's 4096-row blocks, the last one partial
    Y = rng.normal(size=(n, 2))
    update = rng.normal(size=(n, 2)) * 0.5
    update[::7] = 0.0  # sign 0 on either side
    gains = rng.random((n, 2)) + 0.5
    grad = rng.normal(size=(n, 2)) * 1e-3
    grad[::11, 0] = 0.0
    want = _step_reference(Y.copy(), update.copy(), gains.copy(), grad, 2000.0, 0.8, 0.01, 5.0)
    assert (np.linalg.norm(want[1], axis=1) >= 5.0 - 1e-12).any()  # some rows are clipped
    _core().tsne_step(Y, update, gains, grad, 2000.0, 0.8, 0.01, 5.0, True, n_jobs)
    for got, ref in zip((Y, update, gains), want):
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-13)
