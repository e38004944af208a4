"""Naive references for the contrastive losses: the full N x N logits in
plain torch (use float64 inputs for exact references). They reproduce the
formulas of lightly's ``NTXentLoss`` and open_clip's ``ClipLoss`` and are
used by the tests; they need O(N^2) memory."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

import torch
import torch.nn.functional as F


def info_nce_reference(query, key, temperature=0.1, queue=None, normalize=True, reduction="mean"):
    """InfoNCE: row i of ``query`` [N, D] has positive ``key[i]``; negatives are
    the other keys and the rows of ``queue`` [K, D]."""
    if normalize:
        query, key = F.normalize(query, dim=1), F.normalize(key, dim=1)
        queue = F.normalize(queue, dim=1) if queue is not None else None
    logits = query @ key.T
    if queue is not None:
        logits = torch.cat([logits, query @ queue.T], dim=1)
    logits = logits / temperature
    labels = torch.arange(query.shape[0], device=query.device)
    return F.cross_entropy(logits, labels, reduction=reduction)


def nt_xent_reference(z1, z2, temperature=0.5, normalize=True):
    """SimCLR NT-Xent over the 2N views (lightly ``NTXentLoss``, no memory bank)."""
    z = torch.cat([z1, z2], dim=0)
    if normalize:
        z = F.normalize(z, dim=1)
    n = z1.shape[0]
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    labels = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(logits, labels)


def clip_loss_reference(image_features, text_features, logit_scale, logit_bias=None):
    """open_clip ``ClipLoss``: mean of image->text and text->image cross-entropies."""
    logits = logit_scale * image_features @ text_features.T
    if logit_bias is not None:
        logits = logits + logit_bias
    labels = torch.arange(image_features.shape[0], device=image_features.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def moco_reference(query, key, queue, temperature=0.2, normalize=True):
    """MoCo / lightly ``NTXentLoss(memory_bank_size>0)``: positive ``key[i]``,
    negatives only the queue rows."""
    if normalize:
        query, key, queue = (F.normalize(t, dim=1) for t in (query, key, queue))
    pos = (query * key).sum(1, keepdim=True)
    logits = torch.cat([pos, query @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(query.shape[0], dtype=torch.long, device=query.device))


def alignment_reference(x, y, alpha=2):
    """Wang & Isola alignment: mean ||x_i - y_i||^alpha."""
    return (x - y).norm(dim=1).pow(alpha).mean()


def uniformity_reference(x, t=2):
    """Wang & Isola uniformity: log mean_{i<j} exp(-t ||x_i - x_j||^2)."""
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


def _load_module_file(package: str, relpath: str, stubs: tuple = ()):
    """Import ``package/relpath`` without running ``package/__init__.py``
    (lightly's and open_clip's package imports pull in torchvision)."""

    loaded = sys.modules.get(package)
    if loaded is not None and getattr(loaded, "__spec__", None) is None and getattr(loaded, "__path__", None):
        root = list(loaded.__path__)[0]  # a bare namespace made by an earlier call
    else:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            return None
        root = os.path.dirname(spec.origin)
    parts = relpath[:-3].split("/")
    for i in range(len(parts)):  # parent packages as bare namespaces
        name = ".".join([package] + parts[:i])
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__path__ = [os.path.join(root, *parts[:i])]
            sys.modules[name] = mod
    for name, attrs in stubs:  # modules only needed by code paths we never run
        sys.modules.setdefault(name, types.ModuleType(name))
        for key, value in attrs.items():
            setattr(sys.modules[name], key, value)
    return importlib.import_module(".".join([package] + parts))


# name -> (package, module file, class, stubs of modules that need torchvision)
_PEERS = {
    "lightly": ("lightly", "loss/ntx_ent_loss.py", "NTXentLoss", (("lightly.models.utils", {}),)),
    "lightly_memory_bank": ("lightly", "models/modules/memory_bank.py", "MemoryBankModule",
                            (("lightly.models.utils", {}),)),
    "lightly_vicreg": ("lightly", "loss/vicreg_loss.py", "VICRegLoss", ()),
    "lightly_negcos": ("lightly", "loss/negative_cosine_similarity.py", "NegativeCosineSimilarity", ()),
    "open_clip": ("open_clip", "loss.py", "ClipLoss", ()),
    "open_clip_siglip": ("open_clip", "loss.py", "SigLipLoss", ()),
}


def load_peer(name: str, required: bool = False):
    """The peer class named in ``_PEERS`` (``"lightly"`` -> ``NTXentLoss``,
    ``"lightly_memory_bank"`` -> ``MemoryBankModule``, ``"lightly_vicreg"`` ->
    ``VICRegLoss``, ``"lightly_negcos"`` -> ``NegativeCosineSimilarity``,
    ``"open_clip"`` -> ``ClipLoss``, ``"open_clip_siglip"`` ->
    ``SigLipLoss``). Used by the tests and benchmarks only.

    When the peer cannot be loaded: with ``required=True`` an ``ImportError``
    says why; otherwise None is returned, and if the package is installed but
    its module fails to load (a broken install, not an absent one) a
    ``RuntimeWarning`` gives the cause, so that a peer is never dropped silently.
    """
    if name not in _PEERS:
        raise ValueError(f"unknown peer {name!r}")
    package, relpath, attr, stubs = _PEERS[name]
    try:  # an earlier call may have left a bare namespace module (no __spec__) in sys.modules
        installed = package in sys.modules or importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        installed = False
    error = None if installed else f"package {package!r} is not installed"
    mod = None
    if installed:
        try:
            try:
                mod = importlib.import_module(package + "." + relpath[:-3].replace("/", "."))
            except Exception:
                # the package's __init__ pulls in torchvision: load the one file
                mod = _load_module_file(package, relpath, stubs=stubs)
        except Exception as exc:
            error = f"{package}/{relpath} failed to load: {type(exc).__name__}: {exc}"
        else:
            if mod is None or getattr(mod, attr, None) is None:
                error = f"{package}/{relpath} has no {attr}"
    if error is None:
        return getattr(mod, attr)
    msg = f"peer {name!r} ({package} {attr}) cannot be loaded: {error}"
    if required:
        raise ImportError(msg)
    if installed:
        import warnings
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return None
