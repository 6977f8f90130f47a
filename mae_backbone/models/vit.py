"""VisionTransformer: the one encoder of mae-backbone (MAE paper Sec. 3, "MAE encoder").

Pretraining, classification, detection and segmentation are configurations of this
class. Parameter names follow official MAE / timm (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.N.*``, ``norm``).
"""
from __future__ import annotations

import re
from functools import partial
from typing import List, Optional, Sequence, Set, Tuple, Type, Union

import torch
import torch.utils.checkpoint
from torch import nn

from .attention import Block, BlockSpec, check_rel_pos
from .pos_embed import adapt_pos_embed, get_2d_sincos_pos_embed, is_sincos_table, to_2tuple

LayerNorm6 = partial(nn.LayerNorm, eps=1e-6)


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> linear embedding: (B, C, H, W) -> (B, H/p*W/p, D)."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def grid_size(self, x: torch.Tensor) -> Tuple[int, int]:
        """Validate an image batch and return its patch grid (H/p, W/p)."""
        if x.ndim != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
        _, c, h, w = x.shape
        if c != self.in_chans:
            raise ValueError(f"expected {self.in_chans} input channels, got {c} "
                             f"(build the model with in_chans={c} or convert the images)")
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not divisible by the patch size {p}; "
                             f"resize or pad to a multiple of {p}")
        return h // p, w // p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H/p * W/p, D), row-major patch order."""
        self.grid_size(x)
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """Plain ViT with a cls token and fixed (or learnable) 2-D sin-cos position embedding.

    Args:
        img_size: pretraining image size; sets the stored position table's grid.
        patch_size: side p of the square patches.
        in_chans: image channels.
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: transformer shape.
        drop_path_rate: stochastic depth, linearly increasing over blocks.
        learnable_pos_embed: train the position table (fine-tuning) instead of keeping
            the fixed sin-cos table (MAE pretraining).
        grad_checkpointing: recompute block activations in backward to save memory.
        use_cls_token: keep the cls token in the sequence. Transfer backbones with window
            attention or relative positions run on patch tokens only (``False``: no ``cls_token``
            parameter; a checkpoint's one is reported unused). The position table keeps its
            cls row either way, so official tables load unchanged.
        window_size: > 0 makes every block not in ``global_block_indexes`` attend within
            non-overlapping window_size x window_size windows (ViTDet); needs ``use_cls_token=False``.
        global_block_indexes: blocks that keep global attention when ``window_size`` > 0.
        rel_pos: relative positions in every block, zero-initialised: ``'decomposed'`` (ViTDet: per-axis
            tables, patch tokens only; needs ``use_cls_token=False``) or ``'bias'`` (BEiT: a learned scalar per
            head and offset, cls-aware; the MAE paper's ADE20K transfer). Windowed blocks get window-sized tables,
            global ones tables for ``rel_pos_img_size``.
        layer_scale_init: add per-block residual layer scales (``ls1.gamma``, ``ls2.gamma``) with this
            initial value (1.0 starts as the plain block; mmseg's MAE transfer configs use it).
        rel_pos_img_size: image size the global blocks' relative tables are sized for (the
            fine-tuning size, e.g. 1024); default ``img_size``. Other sizes interpolate.
    """

    def __init__(self, img_size: Union[int, Tuple[int, int]] = 224, patch_size: int = 16,
                 in_chans: int = 3, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.0,
                 norm_layer: Type[nn.Module] = LayerNorm6, learnable_pos_embed: bool = False,
                 grad_checkpointing: bool = False, use_cls_token: bool = True, window_size: int = 0,
                 global_block_indexes: Sequence[int] = (), rel_pos: Optional[str] = None,
                 layer_scale_init: Optional[float] = None,
                 rel_pos_img_size: Optional[Union[int, Tuple[int, int]]] = None):
        super().__init__()
        self.img_size = to_2tuple(img_size)
        if self.img_size[0] % patch_size or self.img_size[1] % patch_size:
            raise ValueError(f"img_size {self.img_size} is not divisible by patch_size {patch_size}")
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.embed_dim = self.num_features = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.use_cls_token = use_cls_token
        self.num_prefix_tokens = 1 if use_cls_token else 0
        self.window_size = window_size
        self.rel_pos = rel_pos
        self.layer_scale_init = layer_scale_init
        self.drop_path_rate = drop_path_rate
        self.global_block_indexes = self._check_transfer_args(
            depth, window_size, global_block_indexes, rel_pos, use_cls_token)
        rp = to_2tuple(rel_pos_img_size) if rel_pos_img_size is not None else self.img_size
        self.rel_pos_grid = (rp[0] // patch_size, rp[1] // patch_size)  # the global blocks' relative tables
        # masked encoding (ids_keep) gathers tokens off their grid: global attention without relative positions only
        self.supports_masked_encoding = not window_size and rel_pos is None
        self.grad_checkpointing = grad_checkpointing
        self.learnable_pos_embed = learnable_pos_embed
        self.num_frozen_blocks = 0
        # per fixed position table: is it the official sin-cos one (rebuilt exactly at other grids) or a foreign
        # layout (interpolated)? Built sin-cos; decided again whenever weights are loaded (before any dtype cast)
        self._is_sincos: dict = {}
        self._table_cache: dict = {}
        self.register_load_state_dict_post_hook(VisionTransformer._after_load)

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        if use_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], embed_dim),
                                      requires_grad=learnable_pos_embed)
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, norm_layer=norm_layer,
                  layer_scale_init=layer_scale_init, **self.block_spec(i).block_args())
            for i in range(depth)])
        self.norm = norm_layer(embed_dim)
        self._init_encoder_weights()

    def block_spec(self, i: int) -> BlockSpec:
        """Block i's settings: window (0 for the global blocks), relative positions sized for its tokens' grid
        (the window, or ``rel_pos_img_size`` / patch for a global block), stochastic depth (linear in i)."""
        window = 0 if (not self.window_size or i in self.global_block_indexes) else self.window_size
        return BlockSpec(window_size=window, rel_pos=self.rel_pos,
                         rel_pos_grid=None if self.rel_pos is None else
                         (window, window) if window else self.rel_pos_grid,
                         drop_path=self.drop_path_rate * i / max(self.depth - 1, 1))  # as linspace, meta-safe

    @staticmethod
    def _check_transfer_args(depth: int, window_size: int, global_block_indexes: Sequence[int],
                             rel_pos: Optional[str], use_cls_token: bool) -> Tuple[int, ...]:
        """Which combinations are legal, checked once: the blocks trust it."""
        check_rel_pos(rel_pos)
        if window_size < 0:
            raise ValueError(f"window_size must be >= 0 (0 = global attention everywhere), got {window_size}")
        idx = tuple(int(i) + depth if int(i) < 0 else int(i) for i in global_block_indexes)
        bad = [i for i in idx if not 0 <= i < depth]
        if bad:
            raise ValueError(f"global_block_indexes {tuple(global_block_indexes)} out of range for a "
                             f"{depth}-block model (valid 0..{depth - 1})")
        if idx and not window_size:
            raise ValueError("global_block_indexes only means something with window_size > 0")
        if (window_size or rel_pos == "decomposed") and use_cls_token:
            raise ValueError("window attention and decomposed relative positions run on patch tokens only: "
                             "build the model with use_cls_token=False")
        return tuple(sorted(set(idx)))

    # ------------------------------------------------------------------ init
    def _init_encoder_weights(self) -> None:
        """Official MAE init: sin-cos table, xavier patch embed and linears, N(0, .02) tokens."""
        self.pos_embed.data.copy_(get_2d_sincos_pos_embed(self.embed_dim, self.grid, cls_token=True)[None])
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        if self.use_cls_token:
            nn.init.normal_(self.cls_token, std=0.02)
        self.apply(_init_module)

    # ------------------------------------------------------------ embeddings
    def pos_embed_for(self, grid: Tuple[int, int]) -> torch.Tensor:
        """Position table (1, 1 + h*w, D) for a patch grid; resized when it differs from the stored one.

        A learned table, or a fixed one in another layout (e.g. mmpretrain's transposed sin-cos),
        is interpolated; the official fixed sin-cos table is rebuilt exactly for the new grid.
        """
        if self.learnable_pos_embed and tuple(grid) != self.grid:  # interpolate, keeping the gradient path
            return adapt_pos_embed(self.pos_embed, grid, self.grid, is_sincos=False)
        return self.fixed_table("pos_embed", grid)

    def fixed_table(self, name: str, grid: Tuple[int, int]) -> torch.Tensor:
        """The fixed position table ``name`` at ``grid`` by :func:`~.pos_embed.adapt_pos_embed`'s rule (the one the
        checkpoint loader applies), cached per grid until the parameter changes."""
        table = getattr(self, name)
        grid = tuple(grid)
        if grid == self.grid:
            return table
        key = (name, grid, table.data_ptr(), table._version, table.device, table.dtype)
        if key not in self._table_cache:
            is_sincos = self._is_sincos.get(name, True)  # tables are built sin-cos (_init_*_weights)
            self._table_cache = {k: v for k, v in self._table_cache.items() if k[0] != name or k[2:] == key[2:]}
            self._table_cache[key] = adapt_pos_embed(table.detach(), grid, self.grid, is_sincos)
        return self._table_cache[key]

    @staticmethod
    def _after_load(module: "VisionTransformer", incompatible_keys) -> None:
        """After any ``load_state_dict``: are the loaded fixed tables the official sin-cos ones?"""
        module._is_sincos = {n: is_sincos_table(getattr(module, n), module.grid)
                             for n in ("pos_embed", "decoder_pos_embed") if hasattr(module, n)}
        module._table_cache = {}

    def embed_patches(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Tuple[int, int]]:
        """Images (B, C, H, W) -> patch tokens + position (B, L, D), prefix tokens (B, 1 or 0, D), grid."""
        grid = self.patch_embed.grid_size(x)
        pos = self.pos_embed_for(grid)
        tokens = self.patch_embed(x) + pos[:, 1:]
        if self.use_cls_token:
            cls = (self.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
        else:
            cls = tokens.new_zeros(x.shape[0], 0, tokens.shape[-1])
        return tokens, cls, grid

    # ---------------------------------------------------------------- blocks
    def run_blocks(self, x: torch.Tensor, blocks: Optional[Sequence[nn.Module]] = None,
                   grid: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """Apply blocks (default: all) to (B, N, D) tokens, with optional activation checkpointing.

        ``grid`` is the (H, W) layout of the tokens, needed by windowed / relative-position blocks.
        """
        for blk in (self.blocks if blocks is None else blocks):
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(blk, x, grid, use_reentrant=False)
            else:
                x = blk(x, grid)
        return x

    def forward_features(self, x: torch.Tensor, ids_keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C, H, W) -> normalised tokens (B, 1 + L, D), or (B, 1 + K, D) for ``ids_keep`` (B, K)."""
        tokens, cls, grid = self.embed_patches(x)
        if ids_keep is not None:
            if not self.supports_masked_encoding:
                raise ValueError("ids_keep (masked encoding) needs global attention without relative "
                                 "positions; window attention / rel-pos are for transfer on full grids")
            tokens = torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))
            grid = None
        x = self.run_blocks(torch.cat([cls, tokens], dim=1), grid=grid)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, P + L, D) normalised tokens (P = 1 with the cls token, else 0)."""
        return self.forward_features(x)

    def resolve_indices(self, indices: Union[int, Sequence[int]]) -> List[int]:
        """Block indices from an int n (the last n blocks) or a list (negative counts from the end)."""
        if isinstance(indices, int):
            if not 1 <= indices <= self.depth:
                raise ValueError(f"cannot take the last {indices} blocks of a {self.depth}-block model")
            return list(range(self.depth - indices, self.depth))
        out = []
        for i in indices:
            j = i + self.depth if i < 0 else i
            if not 0 <= j < self.depth:
                raise ValueError(f"block index {i} is out of range for a {self.depth}-block model "
                                 f"(valid: 0..{self.depth - 1} or negative from the end)")
            out.append(j)
        if len(set(out)) != len(out):
            raise ValueError(f"duplicate block indices in {list(indices)}")
        return out

    def forward_intermediates(self, x: torch.Tensor, indices: Union[int, Sequence[int]] = 1,
                              norm: bool = False) -> List[torch.Tensor]:
        """Outputs of the chosen blocks as maps [(B, D, H/p, W/p)], in the order given."""
        wanted = self.resolve_indices(indices)
        tokens, cls, (gh, gw) = self.embed_patches(x)
        x = torch.cat([cls, tokens], dim=1)
        feats = {}
        for i in range(max(wanted) + 1):
            x = self.run_blocks(x, [self.blocks[i]], grid=(gh, gw))
            if i in wanted:
                y = self.norm(x) if norm else x
                feats[i] = y[:, self.num_prefix_tokens:].transpose(1, 2).reshape(x.shape[0], -1, gh, gw)
        return [feats[i] for i in wanted]

    # -------------------------------------------------------- self-description
    def layer_id(self, name: str) -> int:
        """Layer index for lr decay: 0 embeddings, i + 1 for blocks.i, depth + 1 for the rest."""
        if name in ("cls_token", "pos_embed", "mask_token") or name.startswith("patch_embed"):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.depth + 1

    def no_weight_decay(self) -> Set[str]:
        """Names of tensors exempt from weight decay besides norms and biases (all 1-D tensors).

        Relative position tables are declared too (zero-initialised offsets; BEiT exempts its bias tables,
        detectron2's ViTDet decays them). Whether a declared name is exempt is the weight-decay rule a config
        chooses (``mae_backbone.param_groups``).
        """
        names = {"cls_token", "pos_embed"}
        for i, blk in enumerate(self.blocks):
            names |= {f"blocks.{i}.attn.{p}" for p in blk.attn.position_params}
        return names

    # ---------------------------------------------------------- checkpoint contract
    def expected_new_keys(self) -> List[str]:
        """Regexes of parameters an MAE / classification checkpoint may lack: the zero-initialised additions
        (relative position tables, layer scales). :func:`mae_backbone.checkpoint.load_checkpoint` allows them."""
        keys = sorted({rf"^blocks\.\d+\.attn\.{re.escape(p)}$"
                       for blk in self.blocks for p in blk.attn.position_params})
        if self.layer_scale_init:
            keys.append(r"^blocks\.\d+\.ls[12]\.gamma$")
        return keys

    def expected_unused_keys(self) -> List[str]:
        """Regexes of tensors an MAE checkpoint has that this model does not use (the decoder and mask token; the
        cls token of a patch-only model). :func:`mae_backbone.checkpoint.load_checkpoint` reports them unused."""
        return [r"^decoder_", r"^mask_token$"] + ([] if self.use_cls_token else [r"^cls_token$"])

    def freeze(self, num_frozen_blocks: int) -> None:
        """Freeze patch embedding, cls/pos tokens and blocks[:n] (no grad, eval mode); n = 0 freezes nothing.

        Calling it again replaces the previous setting (``freeze(0)`` unfreezes).
        """
        if not 0 <= num_frozen_blocks <= self.depth:
            raise ValueError(f"num_frozen_blocks must be in [0, {self.depth}], got {num_frozen_blocks}")
        self.num_frozen_blocks = num_frozen_blocks
        for m in (self.patch_embed, *self.blocks):
            m.requires_grad_(True)
        if self.use_cls_token:
            self.cls_token.requires_grad_(not num_frozen_blocks)
        self.pos_embed.requires_grad_(self.learnable_pos_embed and not num_frozen_blocks)
        for m in self.frozen_modules():
            m.requires_grad_(False)
        self.train(self.training)

    def frozen_modules(self) -> List[nn.Module]:
        """Modules frozen by :meth:`freeze` (empty when nothing is frozen)."""
        if not self.num_frozen_blocks:
            return []
        return [self.patch_embed, *self.blocks[: self.num_frozen_blocks]]

    def train(self, mode: bool = True):
        """Like ``nn.Module.train``, but frozen modules stay in eval mode (no dropout / drop path)."""
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()
        return self


def _init_module(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
