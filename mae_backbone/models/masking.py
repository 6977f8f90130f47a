"""Patch masking (MAE paper Sec. 3 "Masking", Fig. 6): random, block-wise and grid sampling.

Every strategy produces a ``noise`` ranking (B, L): the ``len_keep`` lowest entries of
each row stay visible. One function, :func:`masks_from_noise`, turns any ranking into
``ids_keep``, ``ids_restore`` and ``mask`` by the official per-sample shuffle
(argsort), so a caller-supplied ``noise`` reproduces the official masks exactly.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import torch

STRATEGIES = ("random", "block", "grid")


class Masks(NamedTuple):
    ids_keep: torch.Tensor     # (B, K) indices of visible patches, in shuffled order
    ids_restore: torch.Tensor  # (B, L) position of each patch in the shuffled sequence
    mask: torch.Tensor         # (B, L) 1 = removed, 0 = visible, in image order


def num_visible(num_patches: int, mask_ratio: float) -> int:
    """Visible patches per sample: ``int(L * (1 - r))`` as in the official code."""
    check_mask_ratio(mask_ratio)
    return int(num_patches * (1 - mask_ratio))


def check_mask_ratio(mask_ratio: float) -> None:
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")


def masks_from_noise(noise: torch.Tensor, len_keep: int) -> Masks:
    """Per-sample shuffle: keep the ``len_keep`` smallest ``noise`` (B, L) entries."""
    B, L = noise.shape
    ids_shuffle = torch.argsort(noise, dim=1)
    # inverse permutation by scatter instead of a second argsort
    ids_restore = torch.empty_like(ids_shuffle).scatter_(
        1, ids_shuffle, torch.arange(L, device=noise.device).expand(B, L))
    mask = torch.ones(B, L, device=noise.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return Masks(ids_shuffle[:, :len_keep], ids_restore, mask)


def random_noise(batch: int, grid: Tuple[int, int], device=None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Uniform noise (B, L): random sampling without replacement (the MAE default)."""
    return torch.rand(batch, grid[0] * grid[1], device=device, generator=generator)


def block_noise(batch: int, grid: Tuple[int, int], mask_ratio: float, device=None,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """BEiT-style block-wise masking (paper Fig. 6 middle) as a noise ranking (B, L).

    Random rectangles (area >= min(16, remaining), aspect ratio in [0.3, 1/0.3]) are
    added until the target count is reached; ties inside and outside the blocks are
    broken at random, so the visible count is exactly ``int(L * (1 - r))``.
    """
    h, w = grid
    target = h * w - num_visible(h * w, mask_ratio)
    rows = [_block_mask(h, w, target, generator) for _ in range(batch)]
    blocks = torch.stack(rows).flatten(1).to(device)
    return blocks + 0.5 * torch.rand(batch, h * w, generator=generator).to(device)


def _block_mask(h: int, w: int, target: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    mask = torch.zeros(h, w)
    log_lo, log_hi = math.log(0.3), math.log(1 / 0.3)

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * torch.rand(1, generator=generator).item()

    attempts = 0
    while mask.sum() < target and attempts < 100 * max(target, 1):
        attempts += 1
        remaining = target - int(mask.sum())
        area = uniform(min(16, remaining), remaining)
        aspect = math.exp(uniform(log_lo, log_hi))
        bh = max(1, min(h, int(round(math.sqrt(area * aspect)))))
        bw = max(1, min(w, int(round(math.sqrt(area / aspect)))))
        top = int(torch.randint(0, h - bh + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - bw + 1, (1,), generator=generator))
        new = bh * bw - int(mask[top:top + bh, left:left + bw].sum())
        if 0 < new <= remaining:
            mask[top:top + bh, left:left + bw] = 1
    return mask


def grid_stride(mask_ratio: float, grid: Tuple[int, int]) -> int:
    """Stride s of grid sampling (keep one patch per s x s cell): requires r = 1 - 1/s^2."""
    s = round(1 / math.sqrt(1 - mask_ratio)) if mask_ratio < 1 else 0
    if s < 2 or abs((1 - 1 / s ** 2) - mask_ratio) > 1e-6:
        raise ValueError(f"grid masking keeps one patch per s x s cell, so mask_ratio must be "
                         f"1 - 1/s^2 (0.75, 0.888..., 0.9375, ...), got {mask_ratio}")
    if grid[0] % s or grid[1] % s:
        raise ValueError(f"grid masking with stride {s} needs a patch grid divisible by {s}, got {grid}")
    return s


def grid_noise(batch: int, grid: Tuple[int, int], mask_ratio: float, device=None) -> torch.Tensor:
    """Regular grid sampling (paper Fig. 6 right): keep the top-left patch of every s x s cell."""
    s = grid_stride(mask_ratio, grid)
    ii, jj = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    masked = ((ii % s != 0) | (jj % s != 0)).float().flatten()
    # kept patches ordered by position (a stable ranking: deterministic, no randomness)
    rank = masked * grid[0] * grid[1] + torch.arange(grid[0] * grid[1])
    return rank.expand(batch, -1).to(device)


def make_noise(strategy: str, batch: int, grid: Tuple[int, int], mask_ratio: float,
               device=None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Noise ranking (B, L) for a masking strategy: ``random`` | ``block`` | ``grid``."""
    if strategy == "random":
        return random_noise(batch, grid, device, generator)
    if strategy == "block":
        return block_noise(batch, grid, mask_ratio, device, generator)
    if strategy == "grid":
        return grid_noise(batch, grid, mask_ratio, device)
    raise ValueError(f"unknown masking strategy {strategy!r}; choose one of {STRATEGIES}")
