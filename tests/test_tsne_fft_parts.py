"""The parts of the FFT repulsion (compiled spreading and spectral step, kernel spectra)
and the compiled update step against plain numpy."""
from __future__ import annotations

import numpy as np
import pytest

from fastrl.neighbors.knn import _core


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pad", [0, 37])
@pytest.mark.parametrize("nc", [None, 3])  # None: unit charges, the one grid of the repulsion
def test_spreading_into_padded_rows_matches_unpadded(dtype, pad, nc):
    rng = np.random.default_rng(5)
    Y = rng.normal(size=(3001, 2)) * 4
    n_boxes, h = 17, 0.51
    lo = float(Y.min()) - 0.1
    g = 3 * n_boxes
    charges = None if nc is None else rng.normal(size=(len(Y), nc))
    ref = np.empty((nc or 1, g, g), dtype=dtype)
    _core().tsne_fft_spread(Y, lo, h, n_boxes, charges, ref, 1)
    wide = np.full((nc or 1, g, g + pad), np.nan, dtype=dtype)  # the padding must be zeroed, not left as found
    _core().tsne_fft_spread(Y, lo, h, n_boxes, charges, wide, 2)
    np.testing.assert_array_equal(wide[:, :, :g], ref)
    assert not wide[:, :, g:].any()
    if nc is None:  # unit charges are the charges of ones, bit for bit
        ones = np.empty_like(ref)
        _core().tsne_fft_spread(Y, lo, h, n_boxes, np.ones((len(Y), 1)), ones, 2)
        np.testing.assert_array_equal(ones, ref)
        assert ref[0].sum() == pytest.approx(len(Y), rel=1e-5)  # Lagrange weights sum to 1 per point
    else:
        np.testing.assert_allclose(ref.sum(axis=(1, 2)), charges.sum(axis=0), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [30, 45])  # even m: the column m/2 of the half spectrum counts once
def test_spectral_step_matches_numpy(dtype, m):
    rng = np.random.default_rng(m)
    grid = rng.normal(size=(m, m)).astype(dtype)
    cplx = np.complex64 if dtype == np.float32 else np.complex128
    spec = np.fft.rfft2(grid).astype(cplx)
    fk = (rng.random((3, m, m // 2 + 1)) + 0.5).astype(dtype)
    # Parseval: sum over the full spectrum of |S|^2 K_z / m^2 equals the real-space sum
    # of the grid times its circular convolution with the kernel whose spectrum is K_z
    full = np.fft.irfft2(fk[2].astype(np.float64), s=(m, m))
    conv = np.fft.irfft2(np.fft.rfft2(grid.astype(np.float64)) * np.fft.rfft2(full), s=(m, m))
    want_z = float((conv * grid).sum())
    out = np.full((2,) + spec.shape, np.nan, dtype=cplx)
    z = _core().tsne_fft_spectral(spec, fk, out, 2)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    for c in range(2):  # the potentials' spectra: i I_c S
        np.testing.assert_allclose(out[c], 1j * fk[c] * spec, rtol=tol, atol=0)
    assert z == pytest.approx(want_z, rel=50 * tol)


@pytest.mark.parametrize("g,m,h,dof", [(7, 14, 0.7, 1.0), (9, 20, 1.3, 0.6), (10, 24, 0.5, 1.0)])
def test_kernel_spectra_by_dct_match_the_full_transform(g, m, h, dof):
    # the DCT-I / DST-I quadrant transforms against rfft2 of the circulant M x M kernels
    from fastrl.manifold.tsne.gradients import _kernel_fft
    fk = _kernel_fft(h, g, m, dof, 1, np.float64)
    off = np.zeros(m)
    full = np.zeros(m, bool)
    a = np.arange(g) * h
    off[:g], off[m - g + 1:] = a, -a[:0:-1]
    full[:g] = full[m - g + 1:] = True
    o_y, o_x = np.meshgrid(off, off, indexing="ij")  # rows: y offsets, columns: x offsets
    u = np.where(full[:, None] & full[None, :], 1 / (1 + (o_x ** 2 + o_y ** 2) / dof), 0.0)
    kz = u ** dof
    for got, kernel in ((fk[0], o_x * kz * u), (fk[1], o_y * kz * u)):
        want = np.fft.rfft2(kernel)
        assert np.abs(want.real).max() < 1e-12  # odd kernels: imaginary spectra
        np.testing.assert_allclose(got, want.imag, rtol=0, atol=1e-12 * np.abs(want).max())
    want = np.fft.rfft2(kz)
    np.testing.assert_allclose(fk[2], want.real, rtol=0, atol=1e-12 * np.abs(want).max())
    with pytest.raises(ValueError, match="even"):
        _kernel_fft(h, g, m + 1, dof, 1)


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
