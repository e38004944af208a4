"""
A SimCLR loop with ``NTXentLoss``
=================================

SimCLR learns features by pulling two augmented views of each image together
and pushing the other images of the batch away, with the NT-Xent loss over the
2N views. :class:`fastrl.losses.NTXentLoss` is lightly's ``NTXentLoss`` (same
arguments and values) without the 2N×2N similarity matrix: the forward pass
streams tiles of keys with a running log-sum-exp, the backward pass recomputes
them.

Here a tiny MLP trains for a few steps on scikit-learn's 8×8 digits, without
labels. The labels are only used at the end, to score the frozen features with
a 10-NN vote and :func:`fastrl.metrics.linear_probe` against the same network
at its initial weights.
"""
import copy
import os
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from fastrl.losses import NTXentLoss
from fastrl.metrics import knn_accuracy, linear_probe

SMALL = os.environ.get("FASTRL_DOCS_SMALL", "0") not in ("", "0")
torch.manual_seed(0)

X, y = load_digits(return_X_y=True)
X = torch.tensor(X / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
X_train, y_train, X_test, y_test = X[:1400], y[:1400], X[1400:], y[1400:]


def augment(x):
    """Random shift by up to one pixel, pixel dropout and noise (batched)."""
    b = x.shape[0]
    shift = torch.randint(-1, 2, (2,))
    x = torch.roll(F.pad(x, (1, 1, 1, 1)), shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))[:, :, 1:-1, 1:-1]
    x = x * (torch.rand_like(x) > 0.15)
    return (x + 0.1 * torch.randn_like(x)).reshape(b, -1)


encoder = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(64, 32))
initial = copy.deepcopy(encoder)

# %%
# The loss agrees with the textbook formula (the 2N×2N version, fine at this size).
criterion = NTXentLoss(temperature=0.5)
z1, z2 = torch.randn(64, 32), torch.randn(64, 32)
Z = F.normalize(torch.cat([z1, z2]), dim=1)
sim = (Z @ Z.T / 0.5).fill_diagonal_(float("-inf"))
naive = F.cross_entropy(sim, torch.arange(128).roll(64))
print(f"NTXentLoss {criterion(z1, z2).item():.6f}, naive {naive.item():.6f}")

# %%
# The training loop: nothing changes but the criterion.
params = list(encoder.parameters()) + list(head.parameters())
opt = torch.optim.Adam(params, lr=1e-3)
steps, batch = (60, 256) if SMALL else (300, 256)
losses = []
tic = time.perf_counter()
for step in range(steps):
    x = X_train[torch.randint(0, len(X_train), (batch,))]
    loss = criterion(head(encoder(augment(x))), head(encoder(augment(x))))
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
print(f"{steps} steps of batch {batch} in {time.perf_counter() - tic:.1f} s; "
      f"loss {losses[0]:.3f} -> {sum(losses[-10:]) / 10:.3f}")

# %%
# Score the frozen encoder features before and after training.
with torch.no_grad():
    for name, net in [("initial weights", initial), ("after SimCLR", encoder)]:
        f_train, f_test = net(X_train.reshape(len(X_train), -1)), net(X_test.reshape(len(X_test), -1))
        probe = linear_probe(f_train, y_train, f_test, y_test)
        print(f"{name:16s} linear probe {probe:.3f}, "
              f"10-NN accuracy {knn_accuracy(f_test.numpy(), y_test, k=10):.3f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(losses)
ax.set_xlabel("step")
ax.set_ylabel("NT-Xent loss")
ax.set_title("SimCLR on the digits (tiny MLP)")
plt.tight_layout()
plt.show()
