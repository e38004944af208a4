"""BERT 80/10/10 masking, BEiT block masking and the VQ lookup: parity between
backends and with the references, statistics with binomial tolerances, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastrl import use_backend
from fastrl.masking import BertMasking, MaskingGenerator, VQNearest, bert_mask, block_mask, vq_nearest
from fastrl.masking import reference as R
from fastrl.masking._rng import HashStream, draw_keys


def _within(count, n, p, sigmas=5.0):
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1e-9


# ---------------------------------------------------------------- BERT
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_bert_mask_equals_numpy_reference_of_the_stream(backend, device, dtype):
    # oracle: the 80/10/10 rule re-implemented in vectorised numpy from the stream's
    # definition (fastrl.masking.reference.bert_mask_hashed), keys from the same seed
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 500, (4, 37), generator=g).to(dtype)
    special = torch.zeros(4, 37, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    out, labels = bert_mask(ids.to(device), 500, 3, 0.3, special_tokens_mask=special.to(device),
                            generator=torch.Generator().manual_seed(11))
    k0, k1 = draw_keys(2, torch.Generator().manual_seed(11))
    ref_out, ref_labels = R.bert_mask_hashed(ids, 500, 3, 0.3, special, k0, k1)
    assert out.dtype == dtype and labels.dtype == dtype and out.shape == ids.shape
    assert torch.equal(out.cpu(), ref_out) and torch.equal(labels.cpu(), ref_labels)
    sel = labels.cpu() != -100
    assert sel.any() and (out.cpu() == 3).any() and ((out.cpu() != 3) & sel).any()
    assert torch.equal(labels.cpu()[sel], ids[sel])
    assert torch.equal(out.cpu()[~sel], ids[~sel])
    assert not sel[special].any()


def test_bert_mask_numpy_reference_hash_matches_rng_definition():
    # the vectorised mixer of the reference agrees with the scalar definition in _rng
    from fastrl.masking._rng import hash_u32
    k0, k1 = 0x9E3779B9, 0x7F4A7C15
    c = np.array([0, 1, 2, 3, 1000, 2**31, 2**32 - 1], dtype=np.uint64)
    vec = R._lowbias32_np(R._lowbias32_np(c ^ np.uint64(k0)) ^ np.uint64(k1))
    assert vec.tolist() == [hash_u32(int(x), k0, k1) for x in c]


SPECIAL_DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int32, torch.int64, torch.float16, torch.bfloat16,
                  torch.float32, torch.float64]


@pytest.mark.parametrize("sp_dtype", SPECIAL_DTYPES)
def test_bert_mask_accepts_any_0_1_special_tokens_mask(backend, device, sp_dtype):
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 50, (3, 21), generator=g)
    special = torch.rand(3, 21, generator=g) < 0.3
    out, labels = bert_mask(ids.to(device), 50, 49, 0.5, special_tokens_mask=special.to(sp_dtype).to(device),
                            generator=torch.Generator().manual_seed(1))
    k0, k1 = draw_keys(2, torch.Generator().manual_seed(1))
    ref_out, ref_labels = R.bert_mask_hashed(ids, 50, 49, 0.5, special, k0, k1)
    assert torch.equal(out.cpu(), ref_out) and torch.equal(labels.cpu(), ref_labels)
    assert (labels.cpu()[special] == -100).all() and (labels.cpu()[~special] != -100).any()


def test_bert_mask_rejects_special_values_other_than_0_1(backend, device):
    ids = torch.randint(0, 10, (2, 6)).to(device)
    for bad in (0.5, 2.0, -1.0, float("nan"), float("inf")):
        sp = torch.zeros(2, 6)
        sp[1, 3] = bad
        with pytest.raises(ValueError, match="special_tokens_mask must hold only 0 and 1"):
            bert_mask(ids, 10, 9, special_tokens_mask=sp.to(device))
    with pytest.raises(ValueError, match="special_tokens_mask must hold only 0 and 1"):
        bert_mask(ids, 10, 9, special_tokens_mask=torch.full((2, 6), 2, dtype=torch.int64).to(device))
    with pytest.raises(TypeError, match="special_tokens_mask must be real"):
        bert_mask(ids, 10, 9, special_tokens_mask=torch.zeros(2, 6, dtype=torch.complex64).to(device))


def test_bert_mask_statistics():
    n_rows, T, V, mask_id = 400, 512, 30522, 103
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, V, (n_rows, T), generator=g)
    special = torch.rand(n_rows, T, generator=g) < 0.1
    out, labels = BertMasking(V, mask_id, 0.15)(ids, special_tokens_mask=special,
                                                 generator=torch.Generator().manual_seed(2))
    sel = labels != -100
    # special tokens are never selected nor changed
    assert not sel[special].any() and torch.equal(out[special], ids[special])
    n_plain = int((~special).sum())
    n_sel = int(sel.sum())
    assert _within(n_sel, n_plain, 0.15)
    assert torch.equal(labels[sel], ids[sel]) and torch.equal(out[~sel], ids[~sel])
    o, x = out[sel], ids[sel]
    n_mask = int((o == mask_id).sum())
    n_same = int((o == x).sum())
    n_rand = n_sel - n_mask - n_same
    assert _within(n_mask, n_sel, 0.8) and _within(n_same, n_sel, 0.1) and _within(n_rand, n_sel, 0.1)


def test_bert_mask_random_tokens_uniform():
    # ids and mask id outside [0, V): every output in [0, V) is a random replacement
    V, n = 7, 300_000
    ids = torch.full((n,), 50)
    out, labels = bert_mask(ids, V, 100, 0.5, generator=torch.Generator().manual_seed(3))
    rnd = out[out < V]
    n_sel = int((labels != -100).sum())
    assert _within(n_sel, n, 0.5) and _within(rnd.numel(), n_sel, 0.1)
    counts = torch.bincount(rnd, minlength=V)
    assert all(_within(int(c), rnd.numel(), 1 / V) for c in counts), counts


def test_bert_mask_edge_cases_and_bad_input():
    ids = torch.randint(0, 10, (3, 8))
    out, labels = bert_mask(ids, 10, 9, 0.0)
    assert torch.equal(out, ids) and (labels == -100).all()
    out, labels = bert_mask(ids, 10, 9, 1.0)
    assert torch.equal(labels, ids)
    # HF passes special_tokens_mask as 0/1 integers: same result as a bool mask
    sp = torch.zeros(3, 8, dtype=torch.int64)
    sp[:, 0] = 1
    a = bert_mask(ids, 10, 9, 0.5, special_tokens_mask=sp, generator=torch.Generator().manual_seed(0))
    b = bert_mask(ids, 10, 9, 0.5, special_tokens_mask=sp.bool(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and (a[1][:, 0] == -100).all()
    e = torch.empty(0, 5, dtype=torch.int64)
    assert bert_mask(e, 10, 9)[0].shape == (0, 5)
    with pytest.raises(ValueError, match="input_ids has dtype"):
        bert_mask(ids.float(), 10, 9)
    with pytest.raises(ValueError, match="mlm_probability"):
        bert_mask(ids, 10, 9, 1.5)
    with pytest.raises(ValueError, match="special_tokens_mask must have the shape"):
        bert_mask(ids, 10, 9, special_tokens_mask=torch.zeros(3, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="vocab_size"):
        bert_mask(ids, 0, 9)


# ---------------------------------------------------------------- BEiT
CONFIGS = [
    dict(input_size=(14, 14), num_masking_patches=75, min_num_patches=16),
    dict(input_size=(7, 9), num_masking_patches=20, min_num_patches=4, max_num_patches=10, min_aspect=0.5),
    dict(input_size=(14, 14), num_masking_patches=118, min_num_patches=16, min_aspect=0.3, max_aspect=2.0),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_block_mask_equals_beit_generator(cfg):
    B = 64
    masks = block_mask(B, **cfg, generator=torch.Generator().manual_seed(4))
    assert masks.shape == (B, *cfg["input_size"]) and masks.dtype == torch.bool
    k0, k1 = draw_keys(2, torch.Generator().manual_seed(4))
    for b in range(B):
        ref = R.MaskingGenerator(**cfg, rng=HashStream(k0, k1, b))()
        assert torch.equal(masks[b], ref.bool()), b
    counts = masks.sum((1, 2))
    assert (counts <= cfg["num_masking_patches"]).all()
    # BEiT reaches the target on most samples (it may stop early when no block fits)
    assert (counts == cfg["num_masking_patches"]).float().mean() > 0.5


def _single_rectangle(m):
    rows = m.any(1).nonzero().flatten()
    cols = m.any(0).nonzero().flatten()
    h, w = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
    return (h, w) if int(m.sum()) == h * w else None


def test_block_aspect_bounds():
    # target area fixed at 30 (min = max = 30): single-block masks are h x w
    # rectangles with h = round(sqrt(30 a)), w = round(sqrt(30 / a)), a in [min_aspect, max_aspect]
    lo, hi = 0.4, 1.6
    masks = block_mask(300, (14, 14), 30, 30, 30, min_aspect=lo, max_aspect=hi,
                       generator=torch.Generator().manual_seed(6))
    seen = 0
    for m in masks:
        hw = _single_rectangle(m)
        if hw is None:
            continue
        h, w = hw
        a_lo = max(lo, (h - 0.5) ** 2 / 30, 30 / (w + 0.5) ** 2)
        a_hi = min(hi, (h + 0.5) ** 2 / 30, 30 / (w - 0.5) ** 2)
        assert a_lo <= a_hi, (h, w)
        seen += 1
    assert seen > 100
    # min_aspect = 1 (max_aspect defaults to 1 / min_aspect) and area 25: one 5 x 5 square each
    sq = block_mask(200, (14, 14), 25, 25, 25, min_aspect=1.0, generator=torch.Generator().manual_seed(7))
    assert all(_single_rectangle(m) == (5, 5) for m in sq)


def test_block_mask_generator_class_and_bad_input():
    gen = MaskingGenerator((14, 14), 75)
    a = gen(8, generator=torch.Generator().manual_seed(1))
    b = block_mask(8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert block_mask(0).shape == (0, 14, 14)
    assert not block_mask(3, num_masking_patches=0).any()
    with pytest.raises(ValueError, match="num_masking_patches must be <= 196"):
        block_mask(2, (14, 14), 200)
    with pytest.raises(ValueError, match="min_aspect"):
        block_mask(2, min_aspect=0.0)
    with pytest.raises(ValueError, match="min_aspect"):
        block_mask(2, min_aspect=2.0, max_aspect=1.0)
    with pytest.raises(ValueError, match="input_size"):
        block_mask(2, (14, 14, 3))
    with pytest.raises(ValueError, match="batch_size"):
        block_mask(-1)
    # BEiT takes an int or a pair of ints; floats (even integral ones) are refused clearly
    for size in (14.0, 14.5, (14.0, 14), "14"):
        with pytest.raises(TypeError, match="input_size must be an int"):
            block_mask(2, size)
    assert torch.equal(block_mask(2, np.int64(7), 10, 4, generator=torch.Generator().manual_seed(2)),
                       block_mask(2, (7, 7), 10, 4, generator=torch.Generator().manual_seed(2)))


def test_block_mask_device_checked_before_work(monkeypatch):
    import fastrl.masking._numba_kernels as nk

    def no_work(*args):
        raise AssertionError("the kernel ran before the device was checked")

    monkeypatch.setattr(nk, "run", no_work)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only build, on any machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for dev in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(ValueError, match="device=.*needs CUDA"):
            block_mask(4, device=dev)
        with pytest.raises(ValueError, match="device=.*needs CUDA"):
            MaskingGenerator((14, 14), 75)(4, device=dev)
    with pytest.raises(ValueError, match="device must be a torch device"):
        block_mask(4, device="gpu")
    with pytest.raises(TypeError, match="device must be a str"):
        block_mask(4, device=1.5)


# ---------------------------------------------------------------- VQ
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("N,K,D", [(70, 45, 19), (41, 150, 33)])
def test_vq_nearest_equals_brute_force(backend, device, dtype, N, K, D):
    g = torch.Generator().manual_seed(N + K)
    z = torch.randn(N, D, generator=g).to(dtype)
    cb = torch.randn(K, D, generator=g).to(dtype)
    ref = R.vq_nearest(z, cb)
    out = vq_nearest(z.to(device), cb.to(device))
    assert out.dtype == torch.int64
    assert torch.equal(out.cpu(), ref)


def test_vq_nearest_ties_and_shapes(backend, device):
    # each code three times in a row (inside one tile / chunk, where equal codes
    # score bit-identically): the lowest index of each group wins
    g = torch.Generator().manual_seed(0)
    cb = torch.randn(20, 16, generator=g).repeat_interleave(3, dim=0)
    z = cb[torch.randint(0, 60, (2, 9), generator=g)] + 0.01 * torch.randn(2, 9, 16, generator=g)
    out = vq_nearest(z.to(device), cb.to(device))
    assert out.shape == (2, 9)
    ref = R.vq_nearest(z.reshape(-1, 16), cb).view(2, 9)
    assert torch.equal(out.cpu(), ref)
    assert (out % 3 == 0).all()
    if backend == "cpu":  # small CPU tiles exercise the running argmin across chunks
        assert torch.equal(vq_nearest(z, cb, block_n=4, block_k=9), ref)
    assert torch.equal(VQNearest(cb.to(device))(z.to(device)).cpu(), ref)


def test_vq_nearest_bad_input():
    z, cb = torch.randn(5, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match="dimension"):
        vq_nearest(z, torch.randn(3, 5))
    with pytest.raises(ValueError, match="same dtype"):
        vq_nearest(z, cb.double())
    with pytest.raises(ValueError, match="z contains NaN"):
        vq_nearest(torch.full((5, 4), float("nan")), cb)
    with pytest.raises(ValueError, match="codebook must be 2-D"):
        vq_nearest(z, cb[0])
    assert vq_nearest(torch.empty(0, 4), cb).shape == (0,)
    with pytest.raises(TypeError, match="z must be real-valued"):
        vq_nearest(z.to(torch.complex64), cb)
    with pytest.raises(TypeError, match="codebook must be real-valued"):
        vq_nearest(z, cb.to(torch.complex64))
    for zz, cc in ((torch.randn(5, 0), torch.randn(3, 0)), (torch.empty(0, 0), torch.randn(3, 0))):
        with pytest.raises(ValueError, match="D >= 1"):
            vq_nearest(zz, cc)
