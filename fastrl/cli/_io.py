"""Input loading shared by the subcommands: .npy, .npz or .csv files, or a
named dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def load_input(path: str | None, dataset: str | None):
    """Return ``(X float32 [N, D], labels or None, name)``.

    ``.npz`` files may hold ``X`` (or the first array) and optional ``y``;
    ``.csv`` files are numeric with an optional header row.
    """
    from fastrl.datasets import load_dataset
    if path is None:
        name = dataset or "digits"
        X, y = load_dataset(name)
        return X, y, name
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"INPUT {path} does not exist")
    suffix = p.suffix.lower()
    y = None
    if suffix == ".npy":
        X = np.load(p)
    elif suffix == ".npz":
        with np.load(p) as d:
            keys = list(d.keys())
            X = d["X"] if "X" in keys else d[keys[0]]
            y = d["y"] if "y" in keys else None
    elif suffix == ".csv":
        try:
            X = np.loadtxt(p, delimiter=",", dtype=np.float32)
        except ValueError:
            X = np.loadtxt(p, delimiter=",", dtype=np.float32, skiprows=1)
    else:
        raise ValueError(f"INPUT must be .npy, .npz or .csv, got {p.name}")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"INPUT must hold a 2-D array, got shape {X.shape}")
    return X, y, p.stem
