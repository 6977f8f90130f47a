"""Pre-norm transformer block with fused-qkv attention on ``F.scaled_dot_product_attention``.

Parameter names follow timm / official MAE (``attn.qkv``, ``attn.proj``, ``mlp.fc1``,
``mlp.fc2``, ``norm1``, ``norm2``), so checkpoints load without renaming. The transfer
backbones add, per block, window attention over non-overlapping ``window_size`` squares
(padded when the grid is not a multiple) and ViTDet's decomposed relative position
(``attn.rel_pos_h`` / ``attn.rel_pos_w``, Li et al. 2022, after MViTv2); both operate on
patch tokens laid out on their (H, W) grid, without prefix tokens.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple, Type

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerScale, Mlp
from torch import nn

Grid = Tuple[int, int]


def window_partition(x: torch.Tensor, window: int) -> Tuple[torch.Tensor, Grid]:
    """(B, H, W, C) -> windows (B * nW, window * window, C) and the padded grid (Hp, Wp).

    The grid is zero-padded at the bottom / right to a multiple of ``window``.
    """
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


def decomposed_rel_pos_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                            grid: Grid) -> torch.Tensor:
    """Additive attention bias from decomposed relative positions (ViTDet ``add_decomposed_rel_pos``).

    q: (B, heads, H*W, C) unscaled queries on ``grid``; returns (B, heads, H*W, H*W) with
    bias[(i, j), (k, l)] = q_(i,j) . Rh[i - k] + q_(i,j) . Rw[j - l].
    """
    H, W = grid
    Rh = rel_pos_lookup(H, H, rel_pos_h)
    Rw = rel_pos_lookup(W, W, rel_pos_w)
    B, nh, _, C = q.shape
    r_q = q.reshape(B, nh, H, W, C)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, Rh.to(q.dtype))
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, Rw.to(q.dtype))
    bias = rel_h[..., :, None] + rel_w[..., None, :]  # (B, n, H, W, kH, kW)
    return bias.reshape(B, nh, H * W, H * W)


def rel_pos_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_pos_h: torch.Tensor,
                      rel_pos_w: torch.Tensor, grid: Grid, dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q k^T / sqrt(C) + decomposed rel-pos bias) v without materialising the (N, N) bias.

    The bias q_(i,j) . Rh[i - k] + q_(i,j) . Rw[j - l] has rank H + W in the key index, so it is folded
    into the dot product: q' = [q, q.Rh / s, q.Rw / s], k' = [k, onehot(row), onehot(col)] with s the
    softmax scale, v zero-padded to the same width. SDPA's fused (flash / memory-efficient) kernels
    then run with O(N) memory, where an explicit float mask forces the O(N^2) math path.
    """
    H, W = grid
    B, nh, N, C = q.shape
    scale = C ** -0.5
    r_q = q.reshape(B, nh, H, W, C)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rel_pos_lookup(H, H, rel_pos_h).to(q.dtype)).reshape(B, nh, N, H)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rel_pos_lookup(W, W, rel_pos_w).to(q.dtype)).reshape(B, nh, N, W)
    idx = torch.arange(N, device=q.device)
    rows = F.one_hot(idx // W, H).to(q.dtype).expand(B, nh, N, H)
    cols = F.one_hot(idx % W, W).to(q.dtype).expand(B, nh, N, W)
    q_aug = torch.cat([q, rel_h / scale, rel_w / scale], dim=-1)
    k_aug = torch.cat([k, rows, cols], dim=-1)
    v_aug = F.pad(v, (0, H + W))
    out = F.scaled_dot_product_attention(q_aug, k_aug, v_aug, dropout_p=dropout_p, scale=scale)
    return out[..., :C]


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


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """SDPA without a mask. On CPU, bfloat16 / float16 inputs (autocast) run the fused kernel in float32 and
    return the input dtype: torch's CPU flash kernel is slower in bfloat16 than in float32 at ViT sizes
    (docs/benchmarks.md), and the casts of q, k, v cost little. GPUs keep the reduced precision."""
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", enabled=False):
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), dropout_p=dropout_p)
        return out.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


class RelativePositionBias(nn.Module):
    """BEiT's per-block relative position bias (used by the MAE paper for ADE20K): one learned scalar per
    head for every 2-D offset, plus 3 for cls->token, token->cls and cls->cls when a cls token leads.

    ``table`` is ((2h-1)(2w-1) + 3, heads) for the (h, w) grid it was built for, zero-initialised (the
    block then computes what it computes without it). Offsets are in patches at the training scale, so
    another grid (a sliding-window crop at an image border, a multi-scale test) looks its offsets up in
    the same table, and offsets beyond the table's range take its outermost value (clamped), rather than
    stretching the table to the new grid.
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


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection.

    Args:
        rel_pos_bias_size: when given, add BEiT's relative position bias (a learned scalar per head and
            offset, cls-aware; :class:`RelativePositionBias`), zero-initialised, sized for this grid.
        rel_pos_size: when given, add ViTDet's decomposed relative position with tables
            ``rel_pos_h`` (2h-1, head_dim), ``rel_pos_w`` (2w-1, head_dim) sized for this
            (h, w) grid (other grids interpolate), zero-initialised so the block starts out
            computing exactly what a block without them computes.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, rel_pos_size: Optional[Grid] = None,
                 rel_pos_bias_size: Optional[Grid] = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.use_rel_pos = rel_pos_size is not None
        if self.use_rel_pos:
            h, w = rel_pos_size
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * h - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * w - 1, self.head_dim))
        self.rel_pos_bias = RelativePositionBias(rel_pos_bias_size, num_heads) if rel_pos_bias_size else None

    def forward(self, x: torch.Tensor, attn_bias: Optional[torch.Tensor] = None,
                grid: Optional[Grid] = None) -> torch.Tensor:
        """(B, N, C) -> (B, N, C); ``attn_bias`` broadcasts to (B, heads, N, N).

        With relative positions, the N tokens are the row-major (h, w) ``grid`` (no prefix tokens).
        """
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        dropout_p = self.attn_drop if self.training else 0.0
        if self.rel_pos_bias is not None:
            if grid is None or N - grid[0] * grid[1] not in (0, 1):
                raise ValueError(f"relative position bias needs the token grid of its {N} tokens "
                                 f"(patch tokens, optionally after one cls token), got grid={grid}")
            bias = self.rel_pos_bias(grid, cls_token=N == grid[0] * grid[1] + 1).to(q.dtype)
            attn_bias = bias if attn_bias is None else attn_bias + bias
        if self.use_rel_pos:
            if grid is None or grid[0] * grid[1] != N:
                raise ValueError(f"relative position attention needs the token grid of its {N} tokens "
                                 f"(patch tokens only, no cls token), got grid={grid}")
            if attn_bias is None:
                x = rel_pos_attention(q, k, v, self.rel_pos_h, self.rel_pos_w, grid, dropout_p)
            else:
                bias = attn_bias + decomposed_rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, grid)
                x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
        elif attn_bias is None:
            x = plain_attention(q, k, v, dropout_p)
        else:
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=dropout_p)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    """Pre-norm ViT block: x + attn(norm1(x)), then x + mlp(norm2(x)).

    ``layer_scale_init`` adds learnable per-channel residual scales initialised to that value.
    ``window_size > 0`` makes attention local to non-overlapping windows of the token grid
    (ViTDet); the tokens must then be patch tokens only and ``grid`` must be given.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, norm_layer: Type[nn.Module] = nn.LayerNorm,
                 act_layer: Type[nn.Module] = nn.GELU, proj_drop: float = 0.0,
                 attn_drop: float = 0.0, window_size: int = 0, rel_pos_size: Optional[Grid] = None,
                 rel_pos_bias_size: Optional[Grid] = None, layer_scale_init: Optional[float] = None):
        super().__init__()
        if window_size < 0:
            raise ValueError(f"window_size must be >= 0 (0 = global attention), got {window_size}")
        self.window_size = window_size
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                              proj_drop=proj_drop, rel_pos_size=rel_pos_size, rel_pos_bias_size=rel_pos_bias_size)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio),
                       act_layer=act_layer, drop=proj_drop)
        # optional per-channel residual scales (CaiT / BEiT "layer scale", timm names ls1.gamma / ls2.gamma)
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()

    def forward(self, x: torch.Tensor, grid: Optional[Grid] = None,
                attn_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, N, C) -> (B, N, C); ``grid`` = (H, W) of the N patch tokens for windowed / rel-pos blocks."""
        y = self.norm1(x)
        if self.window_size:
            if grid is None or grid[0] * grid[1] != x.shape[1]:
                raise ValueError(f"window attention needs the (H, W) grid of its {x.shape[1]} tokens "
                                 f"(patch tokens only, no cls token), got grid={grid}")
            if attn_bias is not None:
                raise ValueError("window attention does not take an external attn_bias")
            B, _, C = y.shape
            win, padded = window_partition(y.view(B, grid[0], grid[1], C), self.window_size)
            win = self.attn(win, grid=(self.window_size, self.window_size))
            y = window_unpartition(win, self.window_size, padded, grid).reshape(B, -1, C)
        else:
            y = self.attn(y, attn_bias, grid=grid)
        x = x + self.drop_path(self.ls1(y))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
