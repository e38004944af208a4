"""Benchmark: Barlow Twins, VICReg and negative cosine losses against lightly
and the official formulas (forward + backward time, peak extra memory, error).

Run directly (``PYTHONPATH=. python benchmarks/losses_decorrelation.py``) or via
``benchmarks/bench_losses.py --family decorrelation`` which calls :func:`run`.
On CUDA it also reports the matmul floor (the time of the GEMMs the cheaper
algebraic form needs) and uses the Triton kernels.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakMemory, print_table, timeit, write_results  # noqa: E402

SIZES = [(256, 2048), (256, 8192), (2048, 2048), (2048, 8192), (1024, 8192)]


def _load_module(relpath: str, name: str):
    """Load one lightly loss file by path (``import lightly.loss`` pulls torchvision)."""
    try:
        import lightly.loss as mod  # noqa: F401
        return importlib.import_module(f"lightly.loss.{name}")
    except Exception:
        pass
    spec = importlib.util.find_spec("lightly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / relpath
    mspec = importlib.util.spec_from_file_location(f"_fastrl_peer_{name}", path)
    module = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(module)
    return module


def lightly_losses() -> dict:
    """lightly's BarlowTwinsLoss, VICRegLoss, NegativeCosineSimilarity classes (or {})."""
    out = {}
    for cls, name in (("BarlowTwinsLoss", "barlow_twins_loss"), ("VICRegLoss", "vicreg_loss"),
                      ("NegativeCosineSimilarity", "negative_cosine_similarity")):
        try:
            module = _load_module(f"loss/{name}.py", name)
        except Exception:  # pragma: no cover - broken peer install
            module = None
        if module is not None:
            out[cls] = getattr(module, cls)
    return out
