"""Non-overlapping window attention's token layout (ViTDet, Li et al. 2022, Sec. 3 "Backbone adaptation").

Tokens are patch tokens on their row-major (H, W) grid, without prefix tokens; a grid that is not a multiple
of the window is zero-padded at the bottom / right, as ViTDet pads the normalised tokens.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

Grid = Tuple[int, int]


def window_partition(x: torch.Tensor, window: int) -> Tuple[torch.Tensor, Grid]:
    """(B, H, W, C) -> windows (B * nW, window * window, C) and the padded grid (Hp, Wp)."""
    B, H, W, C = x.shape
    pad_h, pad_w = (-H) % window, (-W) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window, window, Wp // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, C), (Hp, Wp)


def window_unpartition(windows: torch.Tensor, window: int, padded: Grid, grid: Grid) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, window * window, C) -> (B, H, W, C), padding cut."""
    Hp, Wp = padded
    H, W = grid
    B = windows.shape[0] // ((Hp // window) * (Wp // window))
    x = windows.view(B, Hp // window, Wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    return x[:, :H, :W] if (Hp, Wp) != (H, W) else x
