"""Input checks shared by every public function.

Each check raises ``ValueError`` (or ``TypeError`` for a wrong type) whose
message starts with the argument's name, so users see at once what to fix.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np
import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(
    x,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    dtypes: Sequence[torch.dtype] | None = FLOAT_DTYPES,
    finite: bool = True,
    min_rows: int = 1,
) -> torch.Tensor:
    """Validate a torch tensor argument.

    Parameters
    ----------
    x : torch.Tensor
        The value to check.
    name : str
        The argument name used in error messages.
    ndim : int or sequence of int, optional
        Allowed numbers of dimensions.
    dtypes : sequence of torch.dtype, optional
        Allowed dtypes (default: floating types).
    finite : bool
        Reject NaN and inf.
    min_rows : int
        Minimum size of the first dimension (an empty batch is rejected).

    Returns
    -------
    torch.Tensor
        ``x`` unchanged.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}, got shape {tuple(x.shape)}")
    if dtypes is not None and x.dtype not in dtypes:
        raise ValueError(f"{name} has dtype {x.dtype}; expected one of {[str(d) for d in dtypes]}")
    if x.dim() > 0 and x.shape[0] < min_rows:
        raise ValueError(f"{name} is an empty batch: shape {tuple(x.shape)}" if x.shape[0] == 0
                         else f"{name} needs at least {min_rows} rows, got {x.shape[0]}")
    if finite and x.is_floating_point() and x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise if two tensors differ in shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def check_same_dtype_device(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise if two tensors differ in dtype or device."""
    if a.dtype != b.dtype:
        raise ValueError(f"{name_a} and {name_b} must have the same dtype, got {a.dtype} and {b.dtype}")
    if a.device != b.device:
        raise ValueError(f"{name_a} and {name_b} must be on the same device, got {a.device} and {b.device}")


def check_positive(value, name: str, *, allow_tensor: bool = True, strict: bool = True):
    """Raise unless ``value`` (a number or a scalar tensor) is finite and > 0 (>= 0 if not strict)."""
    if isinstance(value, torch.Tensor):
        if not allow_tensor:
            raise TypeError(f"{name} must be a number")
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        v = float(value.detach())
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        v = float(value)
    else:
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(v) or (v <= 0 if strict else v < 0):  # math, not numpy: torch.compile traces it
        raise ValueError(f"{name} must be {'> 0' if strict else '>= 0'} and finite, got {v}")
    return value


def check_choice(value: str, name: str, choices: Sequence[str]) -> str:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_int(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """Raise unless ``value`` is an integer in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {v}")
    return v


def as_float_array(X, name: str, *, ndim: int = 2, min_rows: int = 1, dtype=np.float32) -> np.ndarray:
    """Convert a numpy array or torch tensor to a C-contiguous float array.

    Accepts float32/float64 (and integer) input in C or Fortran order, rejects
    wrong ndim, empty input and NaN/inf with a message naming ``name``.
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    try:
        arr = np.asarray(X)
    except Exception as exc:  # pragma: no cover
        raise TypeError(f"{name} must be array-like: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} is empty: shape {arr.shape}" if arr.shape[0] == 0
                         else f"{name} needs at least {min_rows} rows, got {arr.shape[0]}")
    if ndim == 2 and arr.shape[1] == 0:
        raise ValueError(f"{name} has no features: shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def check_real(x, name: str):
    """Raise ``TypeError`` when ``x`` (a tensor or array) is complex: fastrl ops are real-valued and a
    silent cast would drop the imaginary part. Returns ``x`` unchanged."""
    dtype = getattr(x, "dtype", None)
    complex_ = (x.is_complex() if isinstance(x, torch.Tensor)
                else dtype is not None and np.issubdtype(np.dtype(dtype), np.complexfloating))
    if complex_:
        raise TypeError(f"{name} must be real-valued, got complex dtype {dtype}")
    return x


def check_device(device, name: str = "device"):
    """Validate a ``device`` argument before any work starts.

    Parameters
    ----------
    device : str, torch.device, int or None
        A torch device spec (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``torch.device(...)``, a CUDA index).
    name : str
        The argument name used in error messages.

    Returns
    -------
    torch.device or None
        The parsed device (``None`` passes through).

    Raises
    ------
    TypeError
        ``device`` is not a str, torch.device or int.
    ValueError
        Not a device name, or a device this machine lacks (e.g. ``"cuda"`` on a CPU-only build).
    """
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, numbers.Integral)):
        raise TypeError(f"{name} must be a str or torch.device such as 'cpu' or 'cuda', got {type(device).__name__}")
    try:
        dev = torch.device(int(device) if isinstance(device, numbers.Integral) else device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a torch device such as 'cpu', 'cuda' or 'cuda:0', got {device!r}") from exc
    if dev.type in ("cpu", "meta"):
        return dev
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"{name}={str(device)!r} needs CUDA, but this torch build has no CUDA device "
                             f"(torch.cuda.is_available() is False); use 'cpu'")
        if dev.index is not None and not 0 <= dev.index < n:
            raise ValueError(f"{name} index must be in [0, {n - 1}] on this machine, got {dev.index}")
        return dev
    backend = getattr(torch, dev.type, None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise ValueError(f"{name}={str(device)!r} is not available on this machine; use 'cpu'"
                         + (" or 'cuda'" if torch.cuda.is_available() else ""))
    return dev


INT32_POINT_LIMIT = 2**31  # point ids are int32 in the RP forest, NN-descent and the t-SNE affinities


def check_int32_points(n, name: str, what: str) -> int:
    """Raise ``ValueError`` unless ``n`` points (or the rows of an array) can be numbered by int32 ids.

    Call it at the door of every op whose compiled code stores point ids as
    int32 (the random-projection forest and NN-descent of
    ``knn_graph(method="approx")``, the sparse t-SNE affinities, the CSR P of
    the t-SNE gradient), before any conversion or allocation: past
    ``2**31 - 1`` points the ids would wrap around silently.

    Parameters
    ----------
    n : int or array-like
        Number of points, or an array (ndarray, tensor, sparse matrix) whose
        rows are the points: only its ``shape`` is read, nothing is converted.
    name : str
        The argument whose size it is, for the message (e.g. ``"X"``).
    what : str
        The op that stores int32 ids, for the message.

    Returns
    -------
    int
        The number of points.

    Raises
    ------
    ValueError
        ``n >= 2**31``.
    """
    if not isinstance(n, (numbers.Integral, np.integer)):  # an array: its shape (or a list's len), no copy
        shape = getattr(n, "shape", None)
        n = (shape[0] if len(shape) else 0) if shape is not None else (len(n) if hasattr(n, "__len__") else 0)
    n = int(n)
    if n >= INT32_POINT_LIMIT:
        raise ValueError(f"{name} has {n} points, but {what} stores point ids as int32: at most "
                         f"{INT32_POINT_LIMIT - 1} (2**31 - 1) points are supported; split or subsample the data")
    return n


class InsufficientMemoryError(MemoryError, ValueError):
    """Input whose processing would need more memory than the machine has (a
    ``MemoryError`` and a ``ValueError``: raised before any allocation, as input validation)."""


def check_memory_fits(needed: int, available: int | None, name: str, what: str, detail: str = "") -> None:
    """Raise :class:`InsufficientMemoryError` when ``needed`` bytes exceed ``available``.

    Parameters
    ----------
    needed : int
        Estimated peak bytes.
    available : int or None
        Bytes available (None: unknown, no check).
    name : str
        The argument whose size it is (e.g. ``"X"``), first in the message.
    what : str
        What needs the memory (for the message).
    detail : str
        How the estimate splits and what to do, appended to the message.
    """
    if available is not None and needed > available:
        raise InsufficientMemoryError(f"{name}: {what} needs about {needed / 2**30:.3g} GiB of memory, but only "
                                      f"{available / 2**30:.3g} GiB is available" + (f" ({detail})" if detail else ""))


def check_random_state(random_state) -> np.random.RandomState:
    """A ``numpy.random.RandomState`` from None, an int, a ``RandomState`` (returned
    as is) or a ``Generator`` (seeds a new RandomState), as scikit-learn accepts."""
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if isinstance(random_state, np.random.Generator):
        return np.random.RandomState(int(random_state.integers(2**31 - 1)))
    return np.random.RandomState(random_state)
