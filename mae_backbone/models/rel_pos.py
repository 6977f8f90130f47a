"""The two relative-position schemes' tables and lookups (the attention classes that use them are in
:mod:`.attention`).

* **Decomposed** (ViTDet, Li et al. 2022, after MViTv2): per block two tables ``rel_pos_h`` (2h-1, head_dim)
  and ``rel_pos_w`` (2w-1, head_dim); the logit of query (i, j) and key (k, l) gains
  q_(i,j) . Rh[i - k] + q_(i,j) . Rw[j - l]. Patch tokens only.
* **Bias** (BEiT, used by the MAE paper for ADE20K): per block one learned scalar per head and 2-D offset,
  plus three for cls -> token, token -> cls and cls -> cls when a cls token leads.

Both are zero-initialised by their owners, so a block starts out computing what it computes without them.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

Grid = Tuple[int, int]


def rel_pos_lookup(q_size: int, k_size: int, table: torch.Tensor) -> torch.Tensor:
    """Relative embeddings R[i, j] = table[i - j + offset] for q_size x k_size positions -> (q, k, C).

    A table trained for another size (its length differs from 2 * max(q, k) - 1) is linearly
    interpolated; unequal q / k sizes are compared on a common scale (MViTv2 / ViTDet).
    """
    max_dist = 2 * max(q_size, k_size) - 1
    if table.shape[0] != max_dist:
        table = F.interpolate(table.t()[None].float(), size=max_dist, mode="linear")[0].t().to(table.dtype)
    q_coords = torch.arange(q_size, device=table.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=table.device)[None, :] * max(q_size / k_size, 1.0)
    rel = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return table[rel.long()]


def fold_decomposed_rel_pos(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table_h: torch.Tensor,
                            table_w: torch.Tensor, grid: Grid, scale: float):
    """q, k, v (B, heads, H*W, C) -> (q', k', v') whose plain attention with softmax scale ``scale``, cut to the
    first C channels, is softmax(scale q k^T + decomposed rel-pos bias) v.

    The bias q_(i,j) . Rh[i - k] + q_(i,j) . Rw[j - l] has rank H + W in the key index, so it folds into the
    dot product: q' = [q, q.Rh / s, q.Rw / s], k' = [k, onehot(row), onehot(col)], v zero-padded to the same
    width. SDPA's fused (flash / memory-efficient) kernels then run with O(N) memory, where an explicit
    (N, N) float mask would force the O(N^2) math path.
    """
    H, W = grid
    B, nh, N, C = q.shape
    r_q = q.reshape(B, nh, H, W, C)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rel_pos_lookup(H, H, table_h).to(q.dtype)).reshape(B, nh, N, H)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rel_pos_lookup(W, W, table_w).to(q.dtype)).reshape(B, nh, N, W)
    idx = torch.arange(N, device=q.device)
    rows = F.one_hot(idx // W, H).to(q.dtype).expand(B, nh, N, H)
    cols = F.one_hot(idx % W, W).to(q.dtype).expand(B, nh, N, W)
    return (torch.cat([q, rel_h / scale, rel_w / scale], dim=-1), torch.cat([k, rows, cols], dim=-1),
            F.pad(v, (0, H + W)))


@functools.lru_cache(maxsize=8)
def _rel_pos_bias_index(grid: Grid, table_grid: Grid, cls_token: bool, device: str) -> torch.Tensor:
    """The (N, N) int64 lookup, built once per geometry and device and shared by every block (read only).

    Built outside inference mode, so a first call under ``torch.inference_mode()`` does not cache a tensor
    that a later training step could not save for backward.
    """
    with torch.inference_mode(False), torch.no_grad():
        h, w = grid
        th, tw = table_grid
        coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)
        rel = coords[:, :, None] - coords[:, None, :]  # (2, h*w, h*w)
        # offsets beyond the table's range take its outermost learned value (same patch scale: no stretching)
        dy, dx = rel[0].clamp(-(th - 1), th - 1), rel[1].clamp(-(tw - 1), tw - 1)
        idx = (dy + th - 1) * (2 * tw - 1) + (dx + tw - 1)
        if cls_token:
            n = (2 * th - 1) * (2 * tw - 1)
            full = torch.empty(h * w + 1, h * w + 1, dtype=idx.dtype)
            full[1:, 1:] = idx
            full[0, 1:], full[1:, 0], full[0, 0] = n, n + 1, n + 2
            idx = full
        return idx.to(device)


class RelativePositionBias(nn.Module):
    """BEiT's relative position bias table for one block.

    ``table`` is ((2h-1)(2w-1) + 3, heads) for the (h, w) grid it was built for, zero-initialised. Offsets are
    in patches at the training scale, so another grid (a sliding-window crop at an image border, a multi-scale
    test) looks its offsets up in the same table, and offsets beyond the table's range take its outermost value
    (clamped), rather than stretching the table to the new grid.
    """

    def __init__(self, grid: Grid, num_heads: int):
        super().__init__()
        self.grid = tuple(grid)
        self.num_heads = num_heads
        h, w = self.grid
        self.table = nn.Parameter(torch.zeros((2 * h - 1) * (2 * w - 1) + 3, num_heads))

    @staticmethod
    def index(grid: Grid, cls_token: bool, table_grid: Optional[Grid] = None, device=None) -> torch.Tensor:
        """(N, N) int64 indices into a table built for ``table_grid`` (default: ``grid``) for tokens on
        ``grid`` (N = h*w (+1)); the 3 cls entries are the table's last rows. A fresh copy."""
        idx = _rel_pos_bias_index(tuple(grid), tuple(table_grid or grid), bool(cls_token), str(device or "cpu"))
        return idx.clone()

    def forward(self, grid: Grid, cls_token: bool) -> torch.Tensor:
        """Bias (1, heads, N, N) for tokens on ``grid`` (with a leading cls token if ``cls_token``)."""
        idx = _rel_pos_bias_index(tuple(grid), self.grid, bool(cls_token), str(self.table.device))
        n = idx.shape[0]
        # index_select on the (heads, T) view: a contiguous (heads, N, N) bias, and a backward (index_add)
        # ~10x cheaper on CPU than advanced indexing's index_put
        return self.table.t().index_select(1, idx.reshape(-1)).reshape(1, self.num_heads, n, n)
