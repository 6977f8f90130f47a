"""Pre-norm transformer block with fused-qkv attention on ``F.scaled_dot_product_attention``.

Parameter names follow timm / official MAE (``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``, ``norm1``,
``norm2``), so checkpoints load without renaming. :class:`Attention` is qkv -> :meth:`~Attention.attend` -> proj;
a relative-position scheme is a subclass that overrides ``attend`` (and owns its tables, under the keys ViTDet /
our earlier checkpoints use): :class:`DecomposedRelPosAttention` (ViTDet) and :class:`RelPosBiasAttention`
(BEiT). A block takes its attention class as ``attn_layer`` (timm's injection); what varies from block to block
of an encoder is one :class:`BlockSpec`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerScale, Mlp
from torch import nn

from .rel_pos import RelativePositionBias, fold_decomposed_rel_pos
from .windows import window_partition, window_unpartition

Grid = Tuple[int, int]


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor] = None,
         dropout_p: float = 0.0, scale: Optional[float] = None) -> torch.Tensor:
    """Scaled dot-product attention with the one precision rule of the encoder.

    On CPU, bfloat16 / float16 inputs (autocast) run the kernel in float32 and return the input dtype: torch's
    CPU flash kernel is slower in bfloat16 than in float32 at ViT sizes (docs/benchmarks.md), and the casts of
    q, k, v cost little. GPUs keep the reduced precision; an additive ``bias`` is cast to the query dtype.
    """
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", enabled=False):
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                 attn_mask=None if bias is None else bias.float(),
                                                 dropout_p=dropout_p, scale=scale)
        return out.to(q.dtype)
    if bias is not None:
        bias = bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)


def check_grid(num_tokens: int, grid: Optional[Grid], what: str, cls_token_ok: bool = False) -> bool:
    """Check that ``num_tokens`` are the patch tokens of ``grid`` (optionally after one cls token); returns whether
    a cls token leads."""
    n = None if grid is None else grid[0] * grid[1]
    if n is not None and (num_tokens == n or (cls_token_ok and num_tokens == n + 1)):
        return num_tokens == n + 1
    tokens = "patch tokens, optionally after one cls token" if cls_token_ok else "patch tokens only, no cls token"
    raise ValueError(f"{what} needs the (H, W) grid of its {num_tokens} tokens ({tokens}), got grid={grid}")


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection; no position terms of its own."""

    #: this class's relative-position tables (attribute paths), new parameters when an MAE checkpoint is loaded
    position_params: Tuple[str, ...] = ()

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def dropout_p(self) -> float:
        return self.attn_drop if self.training else 0.0

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: Optional[Grid]) -> torch.Tensor:
        """(B, heads, N, head_dim) q, k, v -> (B, heads, N, head_dim)."""
        return sdpa(q, k, v, dropout_p=self.dropout_p())

    def forward(self, x: torch.Tensor, grid: Optional[Grid] = None) -> torch.Tensor:
        """(B, N, C) -> (B, N, C); ``grid`` is the (H, W) layout of the tokens (position schemes need it)."""
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = self.attend(q, k, v, grid).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class DecomposedRelPosAttention(Attention):
    """ViTDet's decomposed relative position: tables ``rel_pos_h`` (2h-1, head_dim) and ``rel_pos_w`` (2w-1,
    head_dim) for the (h, w) ``grid`` (other grids interpolate them), zero-initialised. Patch tokens only; the bias
    is folded into the queries and keys (:func:`~.rel_pos.fold_decomposed_rel_pos`), so the fused kernels run."""

    position_params = ("rel_pos_h", "rel_pos_w")

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, *, grid: Grid):
        super().__init__(dim, num_heads, qkv_bias, attn_drop, proj_drop)
        h, w = grid
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * h - 1, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * w - 1, self.head_dim))

    def attend(self, q, k, v, grid):
        check_grid(q.shape[2], grid, "decomposed relative position attention")
        scale = self.head_dim ** -0.5
        q, k, v = fold_decomposed_rel_pos(q, k, v, self.rel_pos_h, self.rel_pos_w, grid, scale)
        return sdpa(q, k, v, dropout_p=self.dropout_p(), scale=scale)[..., :self.head_dim]


class RelPosBiasAttention(Attention):
    """BEiT's relative position bias (:class:`~.rel_pos.RelativePositionBias`, ``rel_pos_bias.table``) for the
    (h, w) ``grid``, zero-initialised; cls-aware (patch tokens, optionally after one cls token)."""

    position_params = ("rel_pos_bias.table",)

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, *, grid: Grid):
        super().__init__(dim, num_heads, qkv_bias, attn_drop, proj_drop)
        self.rel_pos_bias = RelativePositionBias(grid, num_heads)

    def attend(self, q, k, v, grid):
        cls_token = check_grid(q.shape[2], grid, "relative position bias", cls_token_ok=True)
        return sdpa(q, k, v, bias=self.rel_pos_bias(grid, cls_token), dropout_p=self.dropout_p())


#: ``rel_pos`` value -> attention class (one kind per model: no published recipe combines them)
REL_POS: Dict[Optional[str], Type[Attention]] = {
    None: Attention, "decomposed": DecomposedRelPosAttention, "bias": RelPosBiasAttention}


def check_rel_pos(rel_pos: Optional[str]) -> Optional[str]:
    if rel_pos not in REL_POS:
        raise ValueError(f"rel_pos must be None, 'decomposed' (ViTDet) or 'bias' (BEiT / the MAE paper's ADE20K), "
                         f"got {rel_pos!r}; one kind per model (no published recipe uses both)")
    return rel_pos


def attention_layer(rel_pos: Optional[str] = None, grid: Optional[Grid] = None) -> Callable[..., Attention]:
    """The attention class for ``rel_pos``, its tables sized for ``grid`` (the tokens' (h, w) at training size)."""
    cls = REL_POS[check_rel_pos(rel_pos)]
    if rel_pos is None:
        return cls
    if grid is None:
        raise ValueError(f"rel_pos={rel_pos!r} needs the grid its tables are sized for")
    return functools.partial(cls, grid=(int(grid[0]), int(grid[1])))


@dataclass(frozen=True)
class BlockSpec:
    """What varies from block to block of one encoder (:meth:`VisionTransformer.block_spec`)."""

    window_size: int = 0                  # > 0: attention within non-overlapping windows of the token grid
    rel_pos: Optional[str] = None         # None | 'decomposed' | 'bias'
    rel_pos_grid: Optional[Grid] = None   # the grid the relative tables are sized for
    drop_path: float = 0.0

    def block_args(self) -> dict:
        """The :class:`Block` arguments this spec sets."""
        return dict(window_size=self.window_size, drop_path=self.drop_path,
                    attn_layer=attention_layer(self.rel_pos, self.rel_pos_grid))


class Block(nn.Module):
    """Pre-norm ViT block: x + attn(norm1(x)), then x + mlp(norm2(x)).

    ``attn_layer`` builds the attention (:func:`attention_layer`). ``layer_scale_init`` adds learnable per-channel
    residual scales initialised to that value. ``window_size > 0`` makes attention local to non-overlapping windows
    of the token grid (ViTDet); the tokens must then be patch tokens only and ``grid`` must be given.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, norm_layer: Type[nn.Module] = nn.LayerNorm,
                 act_layer: Type[nn.Module] = nn.GELU, proj_drop: float = 0.0, attn_drop: float = 0.0,
                 window_size: int = 0, attn_layer: Callable[..., Attention] = Attention,
                 layer_scale_init: Optional[float] = None):
        super().__init__()
        if window_size < 0:
            raise ValueError(f"window_size must be >= 0 (0 = global attention), got {window_size}")
        self.window_size = window_size
        self.norm1 = norm_layer(dim)
        self.attn = attn_layer(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)
        # optional per-channel residual scales (CaiT / BEiT "layer scale", timm names ls1.gamma / ls2.gamma)
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()

    def forward(self, x: torch.Tensor, grid: Optional[Grid] = None) -> torch.Tensor:
        """(B, N, C) -> (B, N, C); ``grid`` = (H, W) of the N patch tokens for windowed / rel-pos blocks."""
        y = self.norm1(x)
        if self.window_size:
            check_grid(x.shape[1], grid, "window attention")
            B, _, C = y.shape
            ws = self.window_size
            win, padded = window_partition(y.view(B, grid[0], grid[1], C), ws)
            y = window_unpartition(self.attn(win, grid=(ws, ws)), ws, padded, grid).reshape(B, -1, C)
        else:
            y = self.attn(y, grid)
        x = x + self.drop_path(self.ls1(y))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
