"""Input loading and argument checks shared by the subcommands.

Everything here runs before a command starts its computation, so that a bad
input file, label array or output path ends the command at once with
``fastrl CMD: error: ...`` (exit status 2) instead of a traceback, or an
error after minutes of work. Inputs are ``.npy``, ``.npz`` or ``.csv`` files,
or a named dataset.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

SUFFIXES = (".npy", ".npz", ".csv")


def _read(p: Path):
    """(X, y or None) from a .npy / .npz / .csv file, as stored."""
    suffix = p.suffix.lower()
    if suffix == ".csv":
        with warnings.catch_warnings():  # an empty file: reported below as empty
            warnings.simplefilter("ignore", UserWarning)
            try:
                return np.loadtxt(p, delimiter=",", dtype=np.float64, ndmin=2), None
            except ValueError:
                pass
            try:  # one header row
                return np.loadtxt(p, delimiter=",", dtype=np.float64, ndmin=2, skiprows=1), None
            except ValueError as exc:
                raise ValueError(f"INPUT {p} is not a numeric CSV (an optional header row, then numbers "
                                 f"separated by commas): {exc}") from None
    try:
        data = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"INPUT {p} cannot be read as {suffix}: {exc}") from None
    if suffix == ".npy":
        if not isinstance(data, np.ndarray):
            raise ValueError(f"INPUT {p} is not a .npy file")
        return data, None
    if not hasattr(data, "files"):
        raise ValueError(f"INPUT {p} is not a .npz archive")
    with data:
        keys = list(data.files)
        if "X" in keys:
            xkey = "X"
        else:
            xkey = next((k for k in keys if k != "y"), None)
        if xkey is None:
            raise ValueError(f"INPUT {p} holds no data array (arrays: {keys or 'none'}); "
                             "store the points as X (and labels as y)")
        try:
            return data[xkey], (data["y"] if "y" in keys else None)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"INPUT {p} cannot be read as .npz: {exc}") from None


def check_input_path(path: str) -> Path:
    """``path`` must be an existing file with a supported suffix."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"INPUT {path} is a directory; give a {', '.join(SUFFIXES)} file")
    if not p.exists():
        raise FileNotFoundError(f"INPUT {path} does not exist")
    if p.suffix.lower() not in SUFFIXES:
        raise ValueError(f"INPUT must be {', '.join(SUFFIXES)}, got {p.name}")
    return p


def load_input(path: str | None, dataset: str | None):
    """Return ``(X float32 [N, D], labels [N] or None, name)``.

    ``.npz`` files may hold ``X`` (or the first array) and optional labels
    ``y`` (1-D, one per row of X); ``.csv`` files are numeric with an
    optional header row (one column or one row is a 2-D array too).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        A directory, an unreadable or unsupported file, X not 2-D, empty,
        complex, non-numeric or not finite, or labels of the wrong shape.
    """
    from fastrl.datasets import load_dataset
    if path is None:
        name = dataset or "digits"
        X, y = load_dataset(name)
        return np.asarray(X, dtype=np.float32), y, name
    p = check_input_path(path)
    X, y = _read(p)
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ValueError(f"INPUT {path} must hold real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"INPUT {path} must hold a 2-D array (rows are points), got shape {X.shape}")
    if X.size == 0:
        raise ValueError(f"INPUT {path} holds an empty array, shape {X.shape}")
    X = X.astype(np.float32)
    if not np.isfinite(X).all():
        raise ValueError(f"INPUT {path} contains NaN or inf (or values beyond float32)")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise ValueError(f"labels y in {path} must be 1-D with one entry per row of X "
                             f"(shape ({X.shape[0]},)), got shape {y.shape}")
    return X, y, p.stem


def check_output(path: str, flag: str, *, suffix: str | None = None) -> str:
    """Check that the file ``path`` can be written, before any work.

    ``suffix`` is appended when missing, as ``np.save`` / ``np.savez`` do;
    returns the path that will be written. An existing file is left as is;
    a file created by the check is removed again.
    """
    out = Path(path)
    if suffix and out.suffix != suffix:
        out = Path(str(out) + suffix)
    if out.is_dir():
        raise ValueError(f"{flag} {out} is a directory; give a file name")
    parent = out.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {out}: {'directory ' if not parent.exists() else ''}{parent} "
                         f"{'does not exist' if not parent.exists() else 'is not a directory'}")
    existed = out.exists()
    try:
        with open(out, "ab" if existed else "xb"):
            pass
    except OSError as exc:
        raise ValueError(f"{flag} {out} cannot be written: {exc.strerror or exc}") from None
    if not existed:
        os.unlink(out)
    return str(out)


def check_plot(path: str, flag: str = "--plot") -> str:
    """A writable plot path with a format matplotlib can save; returns the path written."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
        import matplotlib
    except ImportError:
        raise ValueError(f"{flag} needs matplotlib: pip install 'fastrl[cli]'") from None
    formats = FigureCanvasBase.get_supported_filetypes()
    ext = Path(path).suffix.lower().lstrip(".")
    if not ext:  # matplotlib appends its default format
        return check_output(path, flag, suffix="." + matplotlib.rcParams["savefig.format"])
    if ext not in formats:
        raise ValueError(f"{flag} {path}: unsupported format .{ext}; use one of "
                         f"{', '.join('.' + f for f in sorted(formats))}")
    return check_output(path, flag)


def check_range(value, flag: str, *, low=None, high=None, low_open: bool = False, high_open: bool = False):
    """``value`` must lie in the interval given (bounds open or closed)."""
    bad = ((low is not None and (value <= low if low_open else value < low))
           or (high is not None and (value >= high if high_open else value > high))
           or value != value)
    if bad:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        want = (f"in {lo}, {hi}" if low is not None and high is not None
                else f"{'>' if low_open else '>='} {low:g}" if low is not None
                else f"{'<' if high_open else '<='} {high:g}")
        raise ValueError(f"{flag} must be {want}, got {value:g}")
    return value
