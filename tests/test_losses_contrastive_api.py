"""Drop-in API of the contrastive losses (open_clip ClipLoss helpers, lightly's
MemoryBankModule and early gather check) and the hardening of issue 13
(D = 0, overflow ranges, uniformity on offset data, numpy momentum)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dist_utils import require_peer
from fastrl.losses import (BarlowTwinsLoss, ClipLoss, InfoNCELoss, MemoryBankModule, MoCoLoss, NTXentLoss,
                           VICRegLoss, clip_loss, info_nce, moco_loss, momentum_update, nt_xent, uniformity)


def _features(n, d, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1).to(dtype)
            for _ in range(2)]


# ---------------------------------------------------------------- open_clip ClipLoss helpers
def test_clip_get_logits_and_ground_truth_match_open_clip():
    peer = require_peer("open_clip")
    a, b = _features(9, 5, 0)
    for cache in (False, True):
        ours, theirs = ClipLoss(cache_labels=cache), peer(cache_labels=cache)
        for x, y in zip(ours.get_logits(a, b, 3.0, -1.0), theirs.get_logits(a, b, 3.0, -1.0)):
            torch.testing.assert_close(x, y)
        for _ in range(2):  # second call: the cached labels
            torch.testing.assert_close(ours.get_ground_truth("cpu", 9), theirs.get_ground_truth("cpu", 9))
    assert set(ClipLoss(output_dict=True)(a, b, 2.0)) == {"contrastive_loss"}
    torch.testing.assert_close(ClipLoss()(a, b, 2.0, output_dict=True)["contrastive_loss"], theirs(a, b, 2.0))


def test_clip_loss_world_size_needs_distributed():
    a, b = _features(4, 3, 1)
    with pytest.raises(ValueError, match="world_size"):
        ClipLoss(world_size=2, rank=1)(a, b, 1.0)
    with pytest.raises(ValueError, match="rank"):
        ClipLoss(world_size=2, rank=2)


# ---------------------------------------------------------------- lightly MemoryBankModule
def test_memory_bank_module_matches_lightly():
    peer = require_peer("lightly_memory_bank")
    for first in (True, False):
        ours, theirs = MemoryBankModule((10, 3), feature_dim_first=first), peer((10, 3), feature_dim_first=first)
        ours.bank.copy_(theirs.bank)
        for step in range(5):  # batches of 4 into 10 rows: fills, hits the end, restarts at 0
            x = torch.randn(4, 3)
            o1, b1 = ours(x, update=step % 4 != 3)
            o2, b2 = theirs(x, update=step % 4 != 3)
            assert o1 is x and o2 is x
            torch.testing.assert_close(b1, b2)
            torch.testing.assert_close(ours.bank, theirs.bank)
            assert int(ours.bank_ptr) == int(theirs.bank_ptr)
    assert MemoryBankModule(0)(torch.ones(2, 3))[1] is None


def test_memory_bank_module_semantics():
    """Independent oracle: the FIFO written by hand."""
    bank = MemoryBankModule((5, 2), feature_dim_first=False)
    before = bank.bank.clone()
    torch.testing.assert_close(before.norm(dim=1), torch.ones(5))
    x = torch.arange(6.0).reshape(3, 2)
    _, got = bank(x, update=True)
    torch.testing.assert_close(got, before)  # returned before the update
    torch.testing.assert_close(bank.bank[:3], x)
    assert int(bank.bank_ptr) == 3
    bank(x + 10, update=True)  # 3 + 3 >= 5: fill rows 3, 4 and restart at 0; row 2 of the batch is dropped
    torch.testing.assert_close(bank.bank[3:], x[:2] + 10)
    assert int(bank.bank_ptr) == 0
    _, t = MemoryBankModule((5, 2))(x)
    assert t.shape == (2, 5)
    for bad in (7, -1, (5, 2, 1), (-1, 2)):
        with pytest.raises(ValueError, match="size"):
            MemoryBankModule(bad)
    assert "bank" not in bank.state_dict()  # non-persistent, as in lightly


def test_gather_distributed_unavailable_raises_early(monkeypatch):
    """lightly raises at construction when torch.distributed is not available."""
    monkeypatch.setattr(torch.distributed, "is_available", lambda: False)
    for make in (lambda: NTXentLoss(gather_distributed=True), lambda: InfoNCELoss(gather_distributed=True),
                 lambda: MoCoLoss(gather_distributed=True), lambda: BarlowTwinsLoss(gather_distributed=True),
                 lambda: VICRegLoss(gather_distributed=True),
                 lambda: MemoryBankModule((4, 2), gather_distributed=True)):
        with pytest.raises(ValueError, match="gather_distributed"):
            make()
    NTXentLoss(gather_distributed=False)  # fine without distributed


# ---------------------------------------------------------------- issue 13: bad and extreme inputs
def test_zero_features_rejected():
    z = torch.randn(5, 0)
    for fn, arg in ((lambda: nt_xent(z, z), "z1"), (lambda: info_nce(z, z), "query"),
                    (lambda: clip_loss(z, z, 1.0), "image_features"), (lambda: moco_loss(z, z, z), "query"),
                    (lambda: uniformity(z), "x")):
        with pytest.raises(ValueError, match=f"{arg}.*D = 0"):
            fn()
    for mod in (BarlowTwinsLoss(), VICRegLoss()):
        with pytest.raises(ValueError, match="z1 has no features"):
            mod(z, z)


@pytest.mark.parametrize("call,arg", [
    (lambda a, b: nt_xent(a, b, 1e-50), "temperature"),
    (lambda a, b: info_nce(a, b, 1e-50), "temperature"),
    (lambda a, b: clip_loss(a, b, 1e39), "logit_scale"),
    (lambda a, b: clip_loss(a, b, torch.tensor(1e30)), "logit_scale"),
    (lambda a, b: nt_xent(a * 1e15, b, 1e-10, normalize=False), "temperature"),
    (lambda a, b: uniformity(a, 1e39), "t"),
])
def test_overflowing_scales_rejected_with_range(call, arg):
    a, b = _features(6, 4, 2)
    with pytest.raises(ValueError, match=f"{arg}.*(<=|>=) 1e"):
        call(a, b)


def test_large_finite_scales_stay_finite():
    a, b = _features(6, 4, 3)
    for loss in (nt_xent(a, b, 1e-6), clip_loss(a, b, 1e6), uniformity(a, 1e6)):
        assert torch.isfinite(loss)


def test_uniformity_offset_data_matches_fp64():
    """Issue 13: points at offset 100 with noise 0.1 (the old expansion was 1% off)."""
    g = torch.Generator().manual_seed(4)
    x = 100.0 + 0.1 * torch.randn(64, 8, generator=g, dtype=torch.float64)
    d2 = [((x[i] - x[j]) ** 2).sum().item() for i in range(64) for j in range(i + 1, 64)]
    want = math.log(math.fsum(math.exp(-2.0 * v) for v in d2) / len(d2))  # explicit pairwise oracle
    assert abs(float(uniformity(x, 2)) - want) <= 1e-12 * abs(want)
    got = float(uniformity(x.float(), 2))
    assert abs(got - want) <= 1e-5 * abs(want), (got, want)


def test_momentum_update_numpy_scalar():
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    want = [0.99 * t.detach() + 0.01 * o.detach() for o, t in zip(online.parameters(), target.parameters())]
    momentum_update(online, target, np.float32(0.99))
    for w, t in zip(want, target.parameters()):
        torch.testing.assert_close(t.detach(), w)
    with pytest.raises(ValueError, match="m must"):
        momentum_update(online, target, np.bool_(True))


def test_missing_peer_fails_in_ci_and_skips_elsewhere(monkeypatch):
    import fastrl.losses.contrastive.reference as reference
    monkeypatch.setattr(reference, "load_peer", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI"):
        require_peer("open_clip")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_peer("open_clip")
