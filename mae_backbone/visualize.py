"""Reconstruction pictures: rows = masked input | reconstruction with visible patches pasted | original."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .models.mae import MaskedAutoencoder, patchify, unpatchify


@torch.no_grad()
def reconstruct(model: MaskedAutoencoder, imgs: torch.Tensor, mask_ratio: Optional[float] = None,
                noise: Optional[torch.Tensor] = None):
    """Normalised images (B, C, H, W) -> (masked, pasted, original) in normalised pixel space.

    With ``norm_pix_loss`` the prediction is per-patch standardised; it is mapped back
    with each target patch's mean and std (the visible statistics are what a user has).
    """
    was_training = model.training
    model.eval()
    try:
        _, pred, mask = model(imgs, mask_ratio=mask_ratio, noise=noise)
    finally:
        model.train(was_training)
    p, grid = model.patch_size, model.patch_embed.grid_size(imgs)
    target = patchify(imgs, p)
    pred = pred.float()
    if model.norm_pix_loss:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        pred = pred * (var + 1e-6) ** 0.5 + mean
    m = mask[..., None]
    masked = unpatchify(target * (1 - m), p, grid, model.in_chans)
    pasted = unpatchify(target * (1 - m) + pred * m, p, grid, model.in_chans)
    return masked, pasted, imgs


def to_uint8(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
             std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """Normalised (B, C, H, W) -> (B, H, W, 3) uint8 (grey images are repeated)."""
    c = x.shape[1]
    m = torch.tensor(mean[:c]).view(1, c, 1, 1)
    s = torch.tensor(std[:c]).view(1, c, 1, 1)
    x = (x.float().cpu() * s + m).clamp(0, 1)
    if c == 1:
        x = x.repeat(1, 3, 1, 1)
    return (x.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def reconstruction_grid(model: MaskedAutoencoder, imgs: torch.Tensor, mask_ratio: Optional[float] = None,
                        noise: Optional[torch.Tensor] = None, mean: Sequence[float] = IMAGENET_MEAN,
                        std: Sequence[float] = IMAGENET_STD, pad: int = 2) -> Image.Image:
    """One picture: a column per image; rows masked input | reconstruction (visible pasted) | original."""
    rows = [to_uint8(r, mean, std) for r in reconstruct(model, imgs, mask_ratio, noise)]
    B, H, W, _ = rows[0].shape
    canvas = np.full((3 * H + 4 * pad, B * W + (B + 1) * pad, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for b in range(B):
            y, x = pad + r * (H + pad), pad + b * (W + pad)
            canvas[y:y + H, x:x + W] = row[b]
    return Image.fromarray(canvas)
