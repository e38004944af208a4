"""fastrl's MemoryBankModule side by side with the installed lightly's (issue 21).

The installed lightly 1.6.0 rejects a bare positive ``size`` (no feature dimension)
with a ValueError; the lazily sized bank with a UserWarning is lightly <= 1.5. These
tests hold fastrl to the installed peer: same accepted sizes, same errors and
warnings, and the same FIFO contents step by step (including batches that do not
divide the bank, batches larger than it, half-precision and grad-requiring inputs).
"""
from __future__ import annotations

import warnings

import pytest
import torch

from fastrl.losses import MemoryBankModule

from dist_utils import require_peer


@pytest.fixture(scope="module")
def peer():
    """lightly's class (skips without lightly; fails instead under CI)."""
    return require_peer("lightly_memory_bank")


def _outcome(cls, size, **kw):
    """(exception type, message) or (None, size, bank shape, warnings) of ``cls(size)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            m = cls(size, **kw)
        except Exception as exc:  # compared with the peer's, type and text
            return type(exc), str(exc)
    return None, tuple(m.size), tuple(m.bank.shape), [(w.category, str(w.message)) for w in caught]


SIZES = [0, 9, 10, True, -1, (10, -1), (-1, 2), (5,), (0,), (5, 2, 1), (5, 2), [5, 2], (0, 3), (1, 1)]


@pytest.mark.parametrize("size", SIZES, ids=repr)
def test_size_handling_matches_lightly(peer, size):
    ours, theirs = _outcome(MemoryBankModule, size), _outcome(peer, size)
    assert ours == theirs


def test_bare_int_is_rejected_like_lightly_16(peer):
    for cls in (MemoryBankModule, peer):
        with pytest.raises(ValueError, match=r"size=9.*feature dimension"):
            cls(size=9)


def _step_both(ours, theirs, x, update):
    o1, b1 = ours(x, update=update)
    o2, b2 = theirs(x, update=update)
    assert o1 is x and o2 is x
    if b2 is None:
        assert b1 is None
        return
    assert b1.shape == b2.shape and b1.dtype == b2.dtype and not b1.requires_grad
    assert torch.equal(b1, b2)
    assert torch.equal(ours.bank, theirs.bank) and ours.bank.dtype == theirs.bank.dtype
    assert int(ours.bank_ptr) == int(theirs.bank_ptr)


@pytest.mark.parametrize("rows,bsz", [(9, 3), (10, 3), (5, 7), (4, 4)])
@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_fifo_matches_lightly(peer, rows, bsz, first, dtype):
    g = torch.Generator().manual_seed(rows * 10 + bsz)
    ours = MemoryBankModule((rows, 2), feature_dim_first=first)
    theirs = peer((rows, 2), feature_dim_first=first)
    assert ours.bank.shape == theirs.bank.shape
    ours.bank.copy_(theirs.bank)  # the random start, shared
    for step in range(3 * rows // bsz + 2):
        x = torch.randn(bsz, 2, generator=g).to(dtype).requires_grad_()
        _step_both(ours, theirs, x, update=step % 5 != 4)


def test_disabled_bank_matches_lightly(peer):
    x = torch.randn(3, 2)
    for size in (0, (0,), (0, 3)):
        _step_both(MemoryBankModule(size), peer(size), x, update=True)


def test_buffers_match_lightly(peer):
    ours, theirs = MemoryBankModule((6, 3)), peer((6, 3))
    assert set(dict(ours.named_buffers())) == set(dict(theirs.named_buffers())) == {"bank", "bank_ptr"}
    assert ours.state_dict().keys() == theirs.state_dict().keys()  # both non-persistent
    assert ours.bank_ptr.dtype == theirs.bank_ptr.dtype == torch.long
    torch.testing.assert_close(ours.bank.norm(dim=1), torch.ones(6))  # random unit rows, like lightly
