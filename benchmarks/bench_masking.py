"""Masked-modelling ops vs the reference implementations (MAE models_mae.py,
HF-style BERT masking, BEiT MaskingGenerator, brute-force VQ lookup).

Sizes: B = 256 images of 224 x 224 x 3, patch 16 (L = 196), mask ratio 0.75;
BERT: 256 x 512 tokens; VQ: 256 x 196 tokens, 1024 codes of dimension 256.
The BEiT reference is its authors' generator: a numpy int32 mask filled in a
Python loop (the package's torch-tensor reference is far slower per element
access, which would flatter fastrl). fastrl and the reference are timed
interleaved (--repeat rounds, min and median). Reports time and peak memory
per op and the ratio fastrl / reference (of minima). On CUDA
it also reports the achieved bandwidth of the memory-bound ops against the
device copy bandwidth (a large tensor clone).

    python benchmarks/bench_masking.py [--quick]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from _common import PeakMemory, interleaved, print_table, timeit, write_results

B, IMG, P, RATIO = 256, 224, 16, 0.75
L = (IMG // P) ** 2
D = P * P * 3
KEEP = int(L * (1 - RATIO))


def _release_large_blocks():
    """CPU mode: make glibc return every large block to the OS (fixed mmap
    threshold), so the RSS sampled by PeakMemory sees each op's allocations."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _peak(fn, cuda):
    fn()  # warm-up / compile
    with PeakMemory(cuda=cuda) as pm:
        fn()
    return pm.peak_mib


def numpy_masking_generator(*args, **kwargs):
    """BEiT's MaskingGenerator as its authors run it: the mask is a numpy
    int32 array (the block-filling logic is the package reference's)."""
    from fastrl.masking import reference as R

    class NumpyMaskingGenerator(R.MaskingGenerator):
        def __call__(self):
            mask = np.zeros((self.height, self.width), dtype=np.int32)
            count = 0
            while count < self.num_masking_patches:
                delta = self._mask(mask, min(self.num_masking_patches - count, self.max_num_patches))
                if delta == 0:
                    break
                count += delta
            return mask

    return NumpyMaskingGenerator(*args, **kwargs)


def copy_bandwidth(dev):
    """Device copy bandwidth (GB/s): read + write of a 1 GiB tensor clone."""
    x = torch.empty(2**28, device=dev, dtype=torch.float32)
    t = timeit(lambda: x.clone(), repeat=5, warmup=2, sync=torch.cuda.synchronize)["median_s"]
    return 2 * x.numel() * 4 / t / 1e9


def cases(dev, quick):
    from fastrl.masking import bert_mask, block_mask, mae_loss, patchify_and_mask, vq_nearest
    from fastrl.masking import reference as R

    b = 32 if quick else B
    g = torch.Generator(device=dev).manual_seed(0)
    imgs = torch.randn(b, 3, IMG, IMG, device=dev, generator=g)
    noise = torch.rand(b, L, device=dev, generator=g)
    mask = R.random_masking(torch.zeros(b, L, 1, device=dev), RATIO, noise)[1]
    pred = torch.randn(b, L, D, device=dev, generator=g, requires_grad=True)
    e = 4

    def loss_step(f):
        def run():
            f().backward()
            pred.grad = None
        return run

    yield dict(
        op="patchify_and_mask",
        ref=lambda: R.random_masking(R.patchify(imgs, P), RATIO, noise),
        fast=lambda: patchify_and_mask(imgs, P, RATIO, noise=noise),
        # visible patches read once and written once, plus noise, mask, ids_restore
        bytes=2 * b * KEEP * D * e + b * L * (4 + 4 + 8),
        check=lambda: all(torch.equal(x, y) for x, y in zip(
            patchify_and_mask(imgs, P, RATIO, noise=noise), R.random_masking(R.patchify(imgs, P), RATIO, noise))),
    )
    yield dict(
        op="mae_loss fwd+bwd",
        ref=loss_step(lambda: R.mae_forward_loss(imgs, pred, mask, P, True)),
        fast=loss_step(lambda: mae_loss(pred, imgs, mask, P, True)),
        # removed patches of pred and imgs read, gradient written, then scaled (read + write)
        bytes=2 * b * (L - KEEP) * D * e + 3 * b * L * D * e,
        check=lambda: abs(float(mae_loss(pred, imgs, mask, P)) - float(R.mae_forward_loss(imgs, pred, mask, P)))
        < 1e-5,
    )
    T, V = 512, 30522
    ids = torch.randint(1000, V, (b, T), device=dev, generator=g)
    special = torch.zeros(b, T, dtype=torch.bool, device=dev)
    special[:, 0] = special[:, -1] = True
    yield dict(
        op="bert_mask",
        ref=lambda: R.bert_mask(ids.cpu(), V, 103, 0.15, special.cpu()),
        fast=lambda: bert_mask(ids, V, 103, 0.15, special_tokens_mask=special),
        bytes=b * T * (8 + 1 + 8 + 8),
        # selected fraction of the non-special tokens within 5 binomial sigmas of 0.15
        check=lambda: abs(float((bert_mask(ids, V, 103, 0.15, special_tokens_mask=special)[1] != -100)
                                .float().sum()) / (b * (T - 2)) - 0.15) < 5 * (0.15 * 0.85 / (b * (T - 2))) ** 0.5,
    )
    gen = numpy_masking_generator((14, 14), 75, 16)
    yield dict(
        op="block_mask",
        ref=lambda: torch.from_numpy(np.stack([gen() for _ in range(b)])),
        fast=lambda: block_mask(b, (14, 14), 75, 16, device=dev),
        bytes=None,
        check=lambda: bool((block_mask(b, (14, 14), 75, 16).sum((1, 2)) <= 75).all()),
    )
    K, DZ = 1024, 256
    z = torch.randn(b * L, DZ, device=dev, generator=g)
    cb = torch.randn(K, DZ, device=dev, generator=g)

    def brute():  # the usual one-liner: full [N, K] distance matrix, then argmin
        return ((z * z).sum(1, keepdim=True) - 2 * z @ cb.T + (cb * cb).sum(1)).argmin(1)

    yield dict(
        op="vq_nearest",
        ref=brute,
        fast=lambda: vq_nearest(z, cb),
        bytes=None,
        check=lambda: float((vq_nearest(z, cb) == brute()).float().mean()) > 0.999,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="B=32 smoke run (not written)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    if not cuda:
        _release_large_blocks()
    copy_bw = copy_bandwidth(dev) if cuda else None
    rows = []
    for c in cases(dev, args.quick):
        m_ref, m_fast = _peak(c["ref"], cuda), _peak(c["fast"], cuda)
        t = interleaved({"ref": c["ref"], "fast": c["fast"]}, repeat=args.repeat,
                        sync=torch.cuda.synchronize if cuda else None)
        t_ref, t_fast = t["ref"]["min_s"], t["fast"]["min_s"]
        row = dict(op=c["op"], ref_s=t_ref, fastrl_s=t_fast, time_ratio=t_fast / t_ref,
                   ref_median_s=t["ref"]["median_s"], fastrl_median_s=t["fast"]["median_s"],
                   time_ratio_median=t["fast"]["median_s"] / t["ref"]["median_s"], load=t["ref"]["load"],
                   ref_peak_mib=m_ref, fastrl_peak_mib=m_fast,
                   mem_ratio=(m_fast / m_ref) if m_ref > 0 else None, check=bool(c["check"]()))
        if cuda and c["bytes"]:
            row["fastrl_gbps"] = c["bytes"] / t_fast / 1e9
            row["copy_gbps"] = copy_bw
            row["bw_fraction"] = row["fastrl_gbps"] / copy_bw
        rows.append(row)
        print(row, flush=True)
    cols = ["op", "ref_s", "fastrl_s", "time_ratio", "time_ratio_median", "ref_peak_mib", "fastrl_peak_mib", "mem_ratio", "check"]
    if cuda:
        cols += ["fastrl_gbps", "copy_gbps", "bw_fraction"]
    print_table(rows, cols, title=f"masking on {dev} (B={B if not args.quick else 32}, 224x224x3, p=16, ratio 0.75)")
    if not args.quick:
        write_results("masking", {"device": dev, "repeat": args.repeat, "timing": "min of interleaved rounds",
                                  "sizes": dict(B=B, img=IMG, patch=P, ratio=RATIO,
                                                               bert=(B, 512), vq=(B * L, 1024, 256)),
                                  "rows": rows})


if __name__ == "__main__":
    main()
