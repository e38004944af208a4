"""openTSNE's public ``utils``: :func:`is_package_installed` and :func:`clip_point_to_disc`."""
from __future__ import annotations

import importlib.util

import numpy as np


def is_package_installed(libname: str) -> bool:
    """Whether ``libname`` can be imported (looked up without importing it)."""
    try:
        return importlib.util.find_spec(libname) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False


def clip_point_to_disc(points, radius, inplace=False):
    """Move 2-D points farther than ``radius`` from the origin onto the circle of that radius.

    Parameters
    ----------
    points : ndarray, shape (N, 2)
    radius : float
    inplace : bool
        Modify ``points`` itself instead of a copy.

    Returns
    -------
    points : ndarray, shape (N, 2)
        The clipped points (each keeps its direction).
    mask : ndarray of bool, shape (N,)
        Which points were clipped.
    """
    points = np.asarray(points) if inplace else np.array(points, copy=True)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {points.shape}")
    norms = np.hypot(points[:, 0], points[:, 1])
    mask = norms > radius
    points[mask] *= (radius / norms[mask])[:, None]
    return points, mask


__all__ = ["is_package_installed", "clip_point_to_disc"]
