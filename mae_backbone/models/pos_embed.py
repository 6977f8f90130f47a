"""Fixed 2-D sin-cos position embeddings (MAE paper Sec. 3, "Encoder") and resizing.

Layout follows the official MAE helper, which builds ``np.meshgrid(grid_w, grid_h)``
and encodes ``grid[0]`` first: the first half of every vector encodes the column (w),
the second half the row (h) (facebookresearch/mae issue 18). Tables built here are
bit-compatible with the ones stored in official checkpoints, for any (h, w) grid.
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F

GridSize = Union[int, Sequence[int]]


def to_2tuple(size: GridSize) -> Tuple[int, int]:
    """Return ``(h, w)`` from an int or a pair."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def sincos_1d(embed_dim: int, pos: torch.Tensor) -> torch.Tensor:
    """1-D sin-cos table: pos (M,) -> (M, embed_dim), sines then cosines."""
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even for sin-cos embeddings, got {embed_dim}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: GridSize,
                            cls_token: bool = False) -> torch.Tensor:
    """2-D sin-cos table in the official layout: (h*w [+1], embed_dim), float32.

    Tokens are in row-major (h, w) order; a zero row is prepended for the cls token.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for 2-D sin-cos, got {embed_dim}")
    h, w = to_2tuple(grid_size)
    # the official helper passes (grid_w, grid_h) to meshgrid: index 0 is the column.
    grid_w, grid_h = torch.meshgrid(torch.arange(w, dtype=torch.float64),
                                    torch.arange(h, dtype=torch.float64), indexing="xy")
    emb = torch.cat([sincos_1d(embed_dim // 2, grid_w), sincos_1d(embed_dim // 2, grid_h)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=emb.dtype), emb], dim=0)
    return emb.float()


def resize_pos_embed(pos_embed: torch.Tensor, new_grid: GridSize, old_grid: GridSize | None = None,
                     num_prefix_tokens: int = 1) -> torch.Tensor:
    """Bicubic resize of a (1, P + h*w, C) table to (1, P + H*W, C); prefix rows kept.

    Used for learned tables (fine-tuned checkpoints), as the official ``interpolate_pos_embed``.
    """
    if pos_embed.ndim != 3:
        raise ValueError(f"pos_embed must be (1, N, C), got shape {tuple(pos_embed.shape)}")
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    n = grid.shape[1]
    if old_grid is None:
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ValueError(f"cannot infer a square grid from {n} position tokens; pass old_grid")
        old_grid = (side, side)
    oh, ow = to_2tuple(old_grid)
    nh, nw = to_2tuple(new_grid)
    if oh * ow != n:
        raise ValueError(f"old_grid {(oh, ow)} does not match {n} position tokens")
    if (oh, ow) == (nh, nw):
        return pos_embed
    dtype = grid.dtype
    grid = grid.reshape(1, oh, ow, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(nh, nw), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, nh * nw, -1).to(dtype)
    return torch.cat([prefix, grid], dim=1)


def is_sincos_table(pos_embed: torch.Tensor, grid: GridSize, num_prefix_tokens: int = 1,
                    atol: float = 1e-4) -> bool:
    """True if a (1, P + h*w, C) table is the fixed sin-cos table for ``grid``, in the table's own precision (a
    bf16 / fp16 table is compared with the reference rounded alike)."""
    h, w = to_2tuple(grid)
    c = pos_embed.shape[-1]
    if c % 4 or pos_embed.shape[1] != num_prefix_tokens + h * w:
        return False
    ref = get_2d_sincos_pos_embed(c, (h, w)).to(pos_embed.dtype).float()
    return torch.allclose(pos_embed[0, num_prefix_tokens:].detach().float().cpu(), ref, atol=atol)


def adapt_pos_embed(table: torch.Tensor, new_grid: GridSize, old_grid: GridSize | None = None,
                    is_sincos: bool | None = None) -> torch.Tensor:
    """A (1, 1 + h*w, C) position table for another grid, by the one rule used at load and at run time: the
    official fixed sin-cos table is rebuilt exactly (a zero cls row, as stored), any other table (learned, or a
    fixed one in another layout) is interpolated bicubically with its cls row kept.

    ``old_grid`` defaults to the square grid of the table's rows; ``is_sincos`` (default: tested) lets a caller
    that already knows skip the test.
    """
    if old_grid is None:
        n = table.shape[1] - 1
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ValueError(f"{n} position tokens (after one cls row) do not form a square grid; pass old_grid")
        old_grid = (side, side)
    if to_2tuple(new_grid) == to_2tuple(old_grid):
        return table
    if is_sincos is None:
        is_sincos = is_sincos_table(table.detach(), old_grid)
    if is_sincos:
        return get_2d_sincos_pos_embed(table.shape[-1], new_grid, cls_token=True)[None].to(table)
    return resize_pos_embed(table, new_grid, old_grid)
