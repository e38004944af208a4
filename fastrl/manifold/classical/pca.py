"""PCA: exact (SVD or covariance eigendecomposition) or randomized SVD, in torch.

numpy input gives numpy output; a torch tensor (CPU or CUDA) is computed on its
device and gives a tensor back.
"""
from __future__ import annotations

import numpy as np
import torch

from fastrl._validation import as_float_array, check_choice, check_int, check_real, check_tensor
from fastrl.manifold.classical._utils import sign_flip

PCA_METHODS = ("auto", "full", "covariance", "randomized")


def _as_tensor(X):
    """(float tensor, was_numpy, numpy dtype) from a numpy array or tensor."""
    check_real(X if isinstance(X, torch.Tensor) else np.asarray(X), "X")
    if isinstance(X, torch.Tensor):
        check_tensor(X, "X", ndim=2, dtypes=None)
        if X.shape[1] == 0:
            raise ValueError(f"X has no features: shape {tuple(X.shape)}")
        T = X.detach()
        if T.dtype not in (torch.float32, torch.float64):
            T = T.float()
        return T, False, None
    arr = np.asarray(X)
    dtype = np.float64 if arr.dtype == np.float64 else np.float32
    A = as_float_array(arr, "X", dtype=dtype)
    return torch.from_numpy(A), True, dtype


def choose_pca_method(method: str, n: int, d: int, k: int) -> str:
    """scikit-learn's rule: exact on small data, covariance eigendecomposition for
    tall data (N >= 10 D, D <= 1000), randomized SVD for the rest."""
    if method != "auto":
        return method
    if d <= 1000 and n >= 10 * d:
        return "covariance"
    if max(n, d) <= 500 or k >= 0.8 * min(n, d):
        return "full"
    return "randomized"


def _seed(random_state) -> int:
    """Integer seed from None, an int or a numpy Generator / RandomState."""
    if random_state is None:
        return 0
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    return check_int(random_state, "random_state", low=0)


# Uncentred Gram G = X^T X is exact algebra for C = G - n mu mu^T, but it cancels:
# the rounding error of C_ij is ~ eps (|mu_i mu_j| + sigma_i sigma_j) n, so relative to
# C's scale it grows by 1 + max_i mu_i^2 / var_i.  Below this bound the loss is under one
# decimal digit (MNIST pixels: 1.7); above it the data are centred first (one copy).
_MAX_MEAN_TO_VAR = 8.0


def _covariance_pca_numpy(A: np.ndarray, k: int):
    """Top-``k`` principal axes of the rows of ``A`` (N, D) on the CPU.

    ``G = A^T A`` by BLAS ``syrk`` (numpy's ``A.T @ A``: half a GEMM's flops, no
    copy of ``A``), ``C = G - N mu mu^T`` when the columns' means are small next to
    their spread (else ``A`` is centred first), then only the ``k`` largest
    eigenpairs of ``C`` in ``A``'s dtype (LAPACK ``syevr`` with an index range,
    several times quicker than a full ``eigh`` for k << D).

    Returns
    -------
    scores : (N, k) ``(A - mu) @ Vh.T``, Vh : (k, D) in A's dtype, evals : (k,)
    """
    from scipy.linalg import blas, eigh
    # every product goes through scipy's BLAS, the one its LAPACK uses: switching
    # between numpy's and scipy's OpenBLAS leaves one pool's threads spinning
    # while the other works (1.3-2x slower on 2 cores)
    A = np.ascontiguousarray(A)
    n, d = A.shape
    syrk, gemm = blas.get_blas_funcs(("syrk", "gemm"), (A,))
    mu = A.mean(0, dtype=np.float64)
    G = syrk(1.0, A.T, trans=0, lower=0)  # upper triangle of A^T A; A.T is a Fortran view
    var = np.diag(G).astype(np.float64) / n - mu * mu
    if np.all(mu * mu <= _MAX_MEAN_TO_VAR * np.maximum(var, 0.0)):
        X, C, shift = A, (G - n * np.outer(mu, mu)).astype(A.dtype), mu
    else:
        X = A - mu.astype(A.dtype)
        C, shift = syrk(1.0, X.T, trans=0, lower=0), None
    evals, evecs = eigh(C, lower=False, subset_by_index=(d - k, d - 1), driver="evr",
                        overwrite_a=True, check_finite=False)
    Vh = sign_flip(np.ascontiguousarray(evecs[:, ::-1].T, dtype=A.dtype), axis=1)
    scores = gemm(1.0, Vh.T, X.T, trans_a=1).T  # (Vh X^T)^T: C-ordered (N, k), no copies
    if shift is not None:
        scores -= (shift @ Vh.T.astype(np.float64)).astype(A.dtype)
    return scores, Vh, evals[::-1].astype(np.float64)


def randomized_svd(A: torch.Tensor, k: int, *, n_oversamples: int = 10, n_iter: int = 4, generator=None):
    """Halko-Martinsson-Tropp randomized SVD of ``A`` (N, D): top ``k`` triplets.

    Range finder ``Q = orth((A A^T)^q A Omega)`` with re-orthonormalisation after
    every product, then the exact SVD of the small ``Q^T A``.

    Returns
    -------
    U : (N, k), S : (k,), Vh : (k, D)
    """
    n, d = A.shape
    p = min(k + n_oversamples, min(n, d))
    omega = torch.randn(d, p, generator=generator, dtype=torch.float32, device="cpu").to(A.device, A.dtype)
    Q = torch.linalg.qr(A @ omega).Q
    for _ in range(n_iter):
        Q = torch.linalg.qr(A.T @ Q).Q
        Q = torch.linalg.qr(A @ Q).Q
    B = Q.T @ A
    Ub, S, Vh = torch.linalg.svd(B, full_matrices=False)
    return (Q @ Ub)[:, :k], S[:k], Vh[:k]


def pca(X, n_components: int = 2, *, method: str = "auto", n_iter="auto", n_oversamples: int = 10,
        random_state=0, return_components: bool = False):
    """Principal component scores of ``X`` (scikit-learn ``PCA().fit_transform``).

    Parameters
    ----------
    X : ndarray or torch.Tensor, shape (N, D)
        A CUDA tensor is decomposed on the GPU.
    n_components : int
        ``1 <= n_components <= min(N, D)``.
    method : {"auto", "full", "covariance", "randomized"}
        ``"full"``: SVD of the centred data; ``"covariance"``: eigendecomposition
        of the D x D covariance (exact, fast when N >> D); ``"randomized"``:
        randomized SVD (fast for large N and D, few components).
    n_iter : int or "auto"
        Power iterations of the randomized SVD (``"auto"``: 7 when
        ``n_components < 0.1 min(N, D)``, else 4, as in scikit-learn).
    n_oversamples : int
        Extra random directions of the randomized SVD.
    random_state : int, numpy.random.Generator or RandomState, optional
        Seed of the randomized SVD (None: 0, deterministic).
    return_components : bool
        Also return the components and the explained variance.

    Returns
    -------
    scores : same type as X, shape (N, n_components)
        ``(X - mean) @ components.T``; each component's largest-magnitude
        coefficient is positive (scikit-learn's sign convention).
    components : (n_components, D), only with ``return_components``
    explained_variance : (n_components,), only with ``return_components``
    """
    check_choice(method, "method", PCA_METHODS)
    T, was_numpy, np_dtype = _as_tensor(X)
    n, d = T.shape
    k = check_int(n_components, "n_components", low=1)
    if k > min(n, d):
        raise ValueError(f"n_components must be <= min(N, D) = {min(n, d)}, got n_components={k}")
    chosen = choose_pca_method(method, n, d, k)
    seed = _seed(random_state)
    if chosen == "covariance" and not T.is_cuda:
        scores, Vh, evals = _covariance_pca_numpy(T.numpy(), k)
        var = (np.maximum(evals, 0) / max(n - 1, 1)).astype(Vh.dtype)
        if not was_numpy:
            scores, Vh, var = (torch.from_numpy(np.ascontiguousarray(a)) for a in (scores, Vh, var))
        return (scores, Vh, var) if return_components else scores
    mean = T.mean(0, keepdim=True)
    Xc = T - mean
    if chosen == "full":
        _, S, Vh = torch.linalg.svd(Xc, full_matrices=False)
        Vh, var = Vh[:k], S[:k] ** 2 / max(n - 1, 1)
    elif chosen == "covariance":
        # eigh of X_c^T X_c in float64: the small D x D problem is cheap and exact
        C = (Xc.T @ Xc).double()
        if C.is_cuda:
            evals, evecs = torch.linalg.eigh(C)
        else:  # numpy's LAPACK is far quicker than torch's here on small, busy CPUs
            evals, evecs = (torch.from_numpy(a) for a in np.linalg.eigh(C.numpy()))
        evals, evecs = evals.flip(0)[:k], evecs.flip(1)[:, :k]
        Vh = evecs.T.to(T.dtype)
        var = evals.clamp_min(0).to(T.dtype) / max(n - 1, 1)
    else:
        q = (7 if k < 0.1 * min(n, d) else 4) if n_iter == "auto" else check_int(n_iter, "n_iter", low=0)
        gen = torch.Generator().manual_seed(seed)
        _, S, Vh = randomized_svd(Xc, k, n_oversamples=check_int(n_oversamples, "n_oversamples", low=0),
                                  n_iter=q, generator=gen)
        var = S ** 2 / max(n - 1, 1)
    Vh = sign_flip(Vh, axis=1)
    scores = Xc @ Vh.T
    if was_numpy:
        scores, Vh, var = (t.cpu().numpy().astype(np_dtype, copy=False) for t in (scores, Vh, var))
    return (scores, Vh, var) if return_components else scores
