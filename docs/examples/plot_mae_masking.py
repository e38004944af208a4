"""
MAE masking: visible and masked patches
=======================================

A masked autoencoder (MAE) cuts each image into p×p patches, keeps a random
25% of them for the encoder and asks the decoder to reconstruct the rest.
:func:`fastrl.masking.patchify_and_mask` fuses MAE's ``patchify`` and
``random_masking``: it draws the kept patch ids first and copies only those
patches out of the image, so the full patch tensor is never built. Given the
same ``noise`` it returns exactly MAE's ``(x_visible, mask, ids_restore)``.

This example masks a few upscaled digits and a synthetic colour image, checks
the visible patches against a plain patchify + gather, and draws the visible
patches back in place.
"""
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits

from fastrl.masking import mae_loss, patchify, patchify_and_mask, unpatchify

digits, _ = load_digits(return_X_y=True)
# four digits upscaled 8x8 -> 32x32, as 3-channel images in [0, 1]
imgs = torch.tensor(np.kron(digits[:4].reshape(4, 8, 8) / 16.0, np.ones((4, 4))), dtype=torch.float32)
imgs = imgs[:, None].repeat(1, 3, 1, 1)
# a synthetic colour image: two gradients and a disc
yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
disc = (((xx - 0.6) ** 2 + (yy - 0.4) ** 2) < 0.06).float()
imgs = torch.cat([imgs, torch.stack([xx, yy, disc])[None]])
p, ratio = 4, 0.75

x_visible, mask, ids_restore = patchify_and_mask(imgs, p, ratio, generator=torch.Generator().manual_seed(0))
B, L = mask.shape
print(f"images {tuple(imgs.shape)} -> {L} patches of {p}x{p}x3; visible {tuple(x_visible.shape)}, "
      f"masked per image: {mask.sum(1).int().tolist()}")

# %%
# The visible patches are the kept ids of the full patch tensor, in MAE's order.
patches = patchify(imgs, p)                       # [B, L, p*p*3], built here only for the check
ids_keep = torch.argsort(ids_restore, dim=1)[:, : x_visible.shape[1]]
expected = torch.gather(patches, 1, ids_keep[..., None].expand(-1, -1, patches.shape[2]))
assert torch.equal(x_visible, expected)
assert torch.equal(mask.bool(), ~torch.zeros_like(mask, dtype=torch.bool).scatter(1, ids_keep, True))
print("x_visible == gather(patchify(imgs), ids_keep): True")

# %%
# The MAE loss is computed on the masked patches only: a prediction that is
# right on every masked patch scores 0, whatever it says on the visible ones.
pred = patches.clone()
pred[~mask.bool()] = 0.0
print(f"mae_loss(perfect on masked patches) = {mae_loss(pred, imgs, mask, p, norm_pix_loss=False).item():.2e}")
print(f"mae_loss(all zeros)                 = {mae_loss(torch.zeros_like(pred), imgs, mask, p, norm_pix_loss=False).item():.3f}")

# %%
# Put the visible patches back in place; masked patches are grey.
canvas = torch.full_like(patches, 0.5)
canvas.scatter_(1, ids_keep[..., None].expand(-1, -1, patches.shape[2]), x_visible)
shown = unpatchify(canvas, p, channels=3)

fig, axes = plt.subplots(2, B, figsize=(2.2 * B, 4.6))
for b in range(B):
    axes[0, b].imshow(imgs[b].permute(1, 2, 0).numpy())
    axes[1, b].imshow(shown[b].permute(1, 2, 0).numpy())
    for ax in axes[:, b]:
        ax.set_xticks([])
        ax.set_yticks([])
axes[0, 0].set_ylabel("image")
axes[1, 0].set_ylabel(f"visible ({int((1 - ratio) * 100)}%)")
plt.tight_layout()
plt.show()
