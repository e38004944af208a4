"""
CLIP and SigLIP losses: peak memory against the batch size
==========================================================

A CLIP or SigLIP loss over a batch of N image-text pairs compares every image
with every text: the textbook implementation builds the N×N logits, and
autograd keeps them (and more N×N temporaries) for the backward pass, so its
memory grows as N². :func:`fastrl.losses.clip_loss` and
:func:`fastrl.losses.siglip_loss` stream tiles of the texts with running
log-sum-exps (CLIP) or sums (SigLIP) and recompute the tiles in the backward
pass.

**What is measured.** The peak of the bytes held by torch's CPU allocator
during one forward + backward call, above what was allocated before it (the
features, which exist already, are not counted; their gradients, 2·N·D·4
bytes, are). The allocator's events are recorded by ``torch.profiler`` with
``profile_memory=True`` and summed in time order. This is tensor memory only:
it leaves out the Python interpreter and allocator caching, and on a GPU the
Triton path's use would be read from ``torch.cuda.max_memory_allocated``
instead. The CPU path processes the logits in blocks of about 32 MiB, so its
peak is bounded by a constant plus O(N·D); the naive one grows as N².
"""
import os
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from fastrl.losses import clip_loss, siglip_loss

SMALL = os.environ.get("FASTRL_DOCS_SMALL", "0") not in ("", "0")
torch.manual_seed(0)
D = 64
SIZES = [256, 512, 1024, 2048] if SMALL else [256, 512, 1024, 2048, 4096, 8192]


def naive_clip(img, txt, scale):
    logits = scale * img @ txt.T
    labels = torch.arange(img.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def naive_siglip(img, txt, scale, bias):
    logits = scale * img @ txt.T + bias
    signs = 2 * torch.eye(img.shape[0]) - 1
    return -F.logsigmoid(signs * logits).sum() / img.shape[0]


def peak_mib(fn):
    """Peak torch CPU allocation (MiB) of ``fn()`` above the bytes held before it."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    return peak / 2**20


# %%
# The values agree before anything is measured.
img, txt = F.normalize(torch.randn(512, D), dim=1), F.normalize(torch.randn(512, D), dim=1)
scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
print(f"clip:   fastrl {clip_loss(img, txt, scale).item():.6f}  naive {naive_clip(img, txt, scale).item():.6f}")
print(f"siglip: fastrl {siglip_loss(img, txt, scale, bias).item():.6f}  "
      f"naive {naive_siglip(img, txt, scale, bias).item():.6f}")

# %%
# Forward + backward at growing N.
rows = []
tic = time.perf_counter()
for n in SIZES:
    img = F.normalize(torch.randn(n, D), dim=1).requires_grad_()
    txt = F.normalize(torch.randn(n, D), dim=1).requires_grad_()
    row = {"N": n, "logits": 4 * n * n / 2**20}
    for name, fn in [("fastrl clip_loss", lambda: clip_loss(img, txt, scale)),
                     ("naive CLIP", lambda: naive_clip(img, txt, scale)),
                     ("fastrl siglip_loss", lambda: siglip_loss(img, txt, scale, bias)),
                     ("naive SigLIP", lambda: naive_siglip(img, txt, scale, bias))]:
        img.grad = txt.grad = None
        row[name] = peak_mib(lambda: fn().backward())
    rows.append(row)
names = [k for k in rows[0] if k not in ("N", "logits")]
print(f"{'N':>6} {'N×N fp32':>9} " + " ".join(f"{k:>18}" for k in names) + "   (peak MiB)")
for r in rows:
    print(f"{r['N']:6d} {r['logits']:9.1f} " + " ".join(f"{r[k]:18.1f}" for k in names))
print(f"measured in {time.perf_counter() - tic:.1f} s")

# %%
# On log-log axes the naive losses follow the N² line of the logits; fastrl's
# two losses (their curves coincide) stop growing once the blocks reach their
# full size.
fig, ax = plt.subplots(figsize=(6.5, 4.5))
Ns = [r["N"] for r in rows]
for name, style, size in zip(names, ["o-", "o--", "s-", "s--"], [10, 6, 5, 5]):
    ax.plot(Ns, [r[name] for r in rows], style, markersize=size, label=name)
ax.plot(Ns, [r["logits"] for r in rows], ":", color="gray", label="one N×N fp32 matrix")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("batch size N (D = 64)")
ax.set_ylabel("peak tensor memory, forward + backward (MiB)")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
