"""Counter-based random numbers shared by the CPU (Numba) and Triton paths.

A draw is a pure function of ``(counter, key0, key1)``: two rounds of the
``lowbias32`` integer mixer (C. Wellons), so every element can draw its own
numbers in parallel and both backends produce bit-identical masks. Keys are
drawn from a ``torch.Generator``, which makes the ops reproducible with
``generator=torch.Generator().manual_seed(s)``.

All arithmetic is on non-negative int64 values below 2**32 (products wrap and
are masked back to 32 bits), which Numba, Triton and Python evaluate alike.
"""
from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF


def lowbias32(x: int) -> int:
    """32-bit integer mixer: x ^= x>>16; x *= 0x7feb352d; x ^= x>>15; x *= 0x846ca68b; x ^= x>>16."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK32
    x ^= x >> 16
    return x


def hash_u32(counter: int, key0: int, key1: int) -> int:
    """The 32-bit random word number ``counter`` of the stream ``(key0, key1)``."""
    return lowbias32(lowbias32((counter ^ key0) & MASK32) ^ key1)


def draw_keys(n: int, generator: torch.Generator | None = None) -> list[int]:
    """``n`` 32-bit keys from ``generator`` (or torch's global generator)."""
    hi = torch.randint(0, 2**16, (n,), generator=generator, dtype=torch.int64)
    lo = torch.randint(0, 2**16, (n,), generator=generator, dtype=torch.int64)
    return [int(h) << 16 | int(lo_) for h, lo_ in zip(hi, lo)]


def threshold24(p: float) -> int:
    """Integer T with ``(h >> 8) < T``  <=>  ``(h >> 8) / 2**24 < p`` (an exact Bernoulli(p) test)."""
    import math
    return int(math.ceil(p * (1 << 24)))


class HashStream:
    """Pure-Python view of the stream that the compiled block-mask generator
    consumes for sample ``index``: ``random()`` and ``randint(a, b)`` like
    :mod:`random`. Pass it as ``rng`` to :class:`fastrl.masking.reference.MaskingGenerator`
    to reproduce :func:`fastrl.masking.block_mask` exactly."""

    def __init__(self, key0: int, key1: int, index: int):
        self.key0 = lowbias32((index ^ key0) & MASK32)
        self.key1 = key1
        self.counter = 0

    def _next(self) -> int:
        h = hash_u32(self.counter, self.key0, self.key1)
        self.counter += 1
        return h

    def random(self) -> float:
        return self._next() * 2.0 ** -32

    def randint(self, a: int, b: int) -> int:
        return a + ((self._next() * (b - a + 1)) >> 32)
