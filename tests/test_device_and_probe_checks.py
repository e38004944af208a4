"""fastrl._validation.check_device / check_real, and linear_probe's input checks
(complex features, a device this machine lacks: clear errors before any work)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fastrl._validation import check_device, check_real
from fastrl.metrics import linear_probe


@pytest.fixture
def cpu_only(monkeypatch):
    """Act as a CPU-only torch build, on any machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_check_device(cpu_only):
    assert check_device(None) is None
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")
    for dev in ("cuda", "cuda:1", torch.device("cuda", 0)):
        with pytest.raises(ValueError, match=r"^device=.*needs CUDA.*use 'cpu'"):
            check_device(dev)
    with pytest.raises(ValueError, match="^out_device=.*needs CUDA"):
        check_device("cuda", "out_device")
    for bad in ("gpu", "cuda:x", ""):
        with pytest.raises(ValueError, match="^device must be a torch device"):
            check_device(bad)
    for bad in (1.0, True, [0]):
        with pytest.raises(TypeError, match="^device must be a str or torch.device"):
            check_device(bad)


def test_check_device_index_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"device index must be in \[0, 1\]"):
        check_device("cuda:2")


def test_check_real():
    # real input comes back as the same object: no copy, no cast (int stays int, fp16 stays fp16)
    for v in (torch.randn(3), torch.arange(3), torch.ones(2, dtype=torch.float16), np.ones(2, np.int64),
              np.arange(3, dtype=np.float32), [1.0, 2.0]):
        out = check_real(v, "v")
        assert out is v and getattr(out, "dtype", None) == getattr(v, "dtype", None)
    x = torch.randn(3)
    a = np.array([3, -1], np.int64)
    out = check_real(a, "a")
    assert out.dtype == np.int64 and out.tolist() == [3, -1]
    for z in (x.to(torch.complex64), np.ones(2, np.complex128)):
        with pytest.raises(TypeError, match="^z must be real-valued"):
            check_real(z, "z")


def _probe_data():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    Z = rng.normal(size=(60, 4)) + 3 * np.eye(3, 4)[y]
    return Z, y


def test_linear_probe_rejects_complex():
    Z, y = _probe_data()
    for zc in (Z.astype(np.complex128), torch.from_numpy(Z).to(torch.complex64)):
        with pytest.raises(TypeError, match="^Z_train must be real-valued"):
            linear_probe(zc, y, Z, y)
        with pytest.raises(TypeError, match="^Z_test must be real-valued"):
            linear_probe(Z, y, zc, y)
    with pytest.raises(TypeError, match="^Z_train must be a numeric array"):
        linear_probe(np.array([["a"] * 4] * 60, dtype=object), y, Z, y)
    # real input of any real dtype still works: these blobs are separable
    assert linear_probe(Z.astype(np.float32), y, Z, y) == 1.0


def test_linear_probe_device_checked_before_work(cpu_only, monkeypatch):
    Z, y = _probe_data()
    import fastrl.metrics.probe as probe

    def no_work(*args, **kwargs):
        raise AssertionError("features were converted before the device was checked")

    monkeypatch.setattr(probe, "_features", no_work)
    with pytest.raises(ValueError, match="^device=.*needs CUDA"):
        linear_probe(Z, y, Z, y, device="cuda")
    with pytest.raises(ValueError, match="^device must be a torch device"):
        linear_probe(Z, y, Z, y, device="gpu0")
