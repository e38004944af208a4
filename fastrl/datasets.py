"""Small loaders for the datasets fastrl's demos and benchmarks use."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent


def mnist_path(path: str | os.PathLike | None = None) -> Path:
    """Locate ``mnist.npz``: an explicit path, else ``$FASTRL_MNIST``, else
    ``../shared/data/mnist.npz`` relative to the working directory or the
    repository root.

    Raises
    ------
    FileNotFoundError
        If no candidate exists.
    """
    candidates = []
    if path is not None:
        candidates.append(Path(path))
    elif os.environ.get("FASTRL_MNIST"):
        candidates.append(Path(os.environ["FASTRL_MNIST"]))
    else:
        candidates += [Path.cwd() / ".." / "shared" / "data" / "mnist.npz",
                       _HERE.parent / ".." / "shared" / "data" / "mnist.npz"]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise FileNotFoundError(
        "mnist.npz not found (tried " + ", ".join(str(c) for c in candidates)
        + "); pass a path or set FASTRL_MNIST")


def load_mnist(path: str | os.PathLike | None = None, n: int | None = None):
    """Load MNIST as ``(X, y)``: uint8 [70000, 784] and uint8 [70000].

    Rows 0..59999 are the training split, 60000..69999 the test split.
    ``n`` keeps the first ``n`` rows.
    """
    with np.load(mnist_path(path)) as d:
        X, y = d["X"], d["y"]
    if n is not None:
        X, y = X[:n], y[:n]
    return X, y


def load_digits():
    """scikit-learn's 8x8 digits, ``(X float32 [1797, 64], y int64 [1797])``."""
    try:
        from sklearn.datasets import load_digits as _ld
    except ImportError as exc:  # pragma: no cover
        raise ImportError("the digits dataset needs scikit-learn: pip install 'fastrl[cli]'") from exc
    d = _ld()
    return d.data.astype(np.float32), d.target.astype(np.int64)


def load_dataset(name: str):
    """Load a named dataset: ``"digits"`` or ``"mnist"``."""
    if name == "digits":
        return load_digits()
    if name == "mnist":
        X, y = load_mnist()
        return X.astype(np.float32), y.astype(np.int64)
    raise ValueError(f"dataset must be 'digits' or 'mnist', got {name!r}")
