"""Linear probe: multinomial logistic regression trained with L-BFGS in torch."""
from __future__ import annotations

import numpy as np
import torch

from fastrl._validation import check_device, check_int, check_positive, check_real


def _features(Z, name: str, device) -> torch.Tensor:
    if isinstance(Z, torch.Tensor):
        T = Z.detach()
    else:
        try:
            T = torch.from_numpy(np.asarray(Z))
        except TypeError as exc:
            raise TypeError(f"{name} must be a numeric array, got dtype {np.asarray(Z).dtype}") from exc
    check_real(T, name)
    if T.dim() != 2 or T.shape[0] == 0:
        raise ValueError(f"{name} must be 2-D and non-empty, got shape {tuple(T.shape)}")
    T = T.to(device=device, dtype=torch.float32)
    if not bool(torch.isfinite(T).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return T


def _labels(y, n: int, name: str) -> np.ndarray:
    arr = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr


def linear_probe(Z_train, y_train, Z_test, y_test, *, C: float = 1.0, max_iter: int = 100,
                 standardize: bool = True, device=None, return_predictions: bool = False):
    """Test accuracy of a multinomial logistic regression fit on frozen features.

    Minimises scikit-learn's ``LogisticRegression(C=C)`` objective (divided by
    ``C N``): ``mean_i CE(W z_i + b, y_i) + ||W||^2 / (2 C N)`` with
    full-batch L-BFGS (strong-Wolfe line search) on the features' device.

    Parameters
    ----------
    Z_train : ndarray or torch.Tensor, shape (N, D)
        Real (float or integer) features; complex raises TypeError.
    y_train : array-like, shape (N,)
    Z_test : ndarray or torch.Tensor, shape (M, D)
    y_test : array-like, shape (M,)
    C : float
        Inverse regularisation strength, > 0.
    max_iter : int
        L-BFGS iterations.
    standardize : bool
        Scale features to zero mean / unit variance (statistics of Z_train).
    device : str or torch.device, optional
        Default: Z_train's device (CUDA tensors train on the GPU). A device this
        machine lacks raises ValueError before any work.
    return_predictions : bool
        Also return the predicted test labels.

    Returns
    -------
    accuracy : float
    predictions : ndarray, shape (M,), only with ``return_predictions``
    """
    check_positive(C, "C", allow_tensor=False)
    max_iter = check_int(max_iter, "max_iter", low=1)
    device = check_device(device)
    if device is None:
        device = Z_train.device if isinstance(Z_train, torch.Tensor) else "cpu"
    Xtr, Xte = _features(Z_train, "Z_train", device), _features(Z_test, "Z_test", device)
    if Xtr.shape[1] != Xte.shape[1]:
        raise ValueError(f"Z_train has {Xtr.shape[1]} features but Z_test has {Xte.shape[1]}")
    ytr, yte = _labels(y_train, Xtr.shape[0], "y_train"), _labels(y_test, Xte.shape[0], "y_test")
    classes, codes = np.unique(ytr, return_inverse=True)
    if len(classes) < 2:
        raise ValueError("y_train must hold at least two classes")
    target = torch.as_tensor(codes, device=device)
    if standardize:
        mu, sd = Xtr.mean(0), Xtr.std(0)
        sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))
        Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    n, d = Xtr.shape
    W = torch.zeros(d, len(classes), device=device, requires_grad=True)
    b = torch.zeros(len(classes), device=device, requires_grad=True)
    lam = 1.0 / (C * n)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(Xtr @ W + b, target) + 0.5 * lam * (W * W).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        pred = classes[(Xte @ W + b).argmax(1).cpu().numpy()]
    acc = float((pred == yte).mean())
    return (acc, pred) if return_predictions else acc
