"""Masked Autoencoder (He et al. 2021): the ViT encoder on visible patches + a light decoder.

``MaskedAutoencoder`` extends the one :class:`VisionTransformer` with the decoder, so
the state dict has the official flat layout (``blocks.N.*`` for the encoder,
``decoder_*`` and ``mask_token`` for the decoder) and official checkpoints load as-is.
"""
from __future__ import annotations

from typing import List, Optional, Set, Tuple

import torch
from torch import nn

from .attention import Block
from .masking import STRATEGIES, check_mask_ratio, make_noise, masks_from_noise, num_visible
from .pos_embed import get_2d_sincos_pos_embed
from .vit import LayerNorm6, VisionTransformer, _init_module


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, p*p*C), patch pixels in (p, q, c) order as the official code."""
    B, C, H, W = imgs.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"image size {H}x{W} is not divisible by the patch size {p}")
    h, w = H // p, W // p
    x = imgs.reshape(B, C, h, p, w, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(B, h * w, p * p * C)


def unpatchify(x: torch.Tensor, patch_size: int, grid: Optional[Tuple[int, int]] = None,
               in_chans: int = 3) -> torch.Tensor:
    """(B, L, p*p*C) -> (B, C, H, W); ``grid`` (h, w) defaults to a square."""
    B, L, D = x.shape
    p = patch_size
    if D != p * p * in_chans:
        raise ValueError(f"last dim {D} != patch_size^2 * in_chans = {p * p * in_chans}")
    if grid is None:
        side = int(round(L ** 0.5))
        if side * side != L:
            raise ValueError(f"{L} patches do not form a square grid; pass grid=(h, w)")
        grid = (side, side)
    h, w = grid
    x = x.reshape(B, h, w, p, p, in_chans)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(B, in_chans, h * p, w * p)


class MaskedAutoencoder(VisionTransformer):
    """MAE with a ViT encoder on visible patches and a shared-mask-token decoder.

    Args (besides the :class:`VisionTransformer` ones):
        decoder_embed_dim, decoder_depth, decoder_num_heads: decoder shape (paper: 512, 8, 16).
        norm_pix_loss: per-patch normalised pixel target (paper Table 1d).
        mask_ratio: default ratio of removed patches (paper: 0.75).
        masking: ``random`` (default), ``block`` or ``grid`` (paper Fig. 6).
        mask_token_in_encoder: BEiT-style ablation (Table 1c / Table 2): the encoder sees all
            patches with masked ones replaced by a learned token; the decoder unshuffles nothing.
    """

    def __init__(self, decoder_embed_dim: int = 512, decoder_depth: int = 8,
                 decoder_num_heads: int = 16, norm_pix_loss: bool = False, mask_ratio: float = 0.75,
                 masking: str = "random", mask_token_in_encoder: bool = False, **encoder_kwargs):
        super().__init__(**encoder_kwargs)
        check_mask_ratio(mask_ratio)
        if masking not in STRATEGIES:
            raise ValueError(f"unknown masking strategy {masking!r}; choose one of {STRATEGIES}")
        self.mask_ratio = mask_ratio
        self.masking = masking
        self.norm_pix_loss = norm_pix_loss
        self.mask_token_in_encoder = mask_token_in_encoder
        self.decoder_embed_dim = decoder_embed_dim
        mlp_ratio = encoder_kwargs.get("mlp_ratio", 4.0)
        norm_layer = encoder_kwargs.get("norm_layer", LayerNorm6)
        num_patches = self.grid[0] * self.grid[1]

        token_dim = self.embed_dim if mask_token_in_encoder else decoder_embed_dim
        self.mask_token = nn.Parameter(torch.zeros(1, 1, token_dim))
        self.decoder_embed = nn.Linear(self.embed_dim, decoder_embed_dim, bias=True)
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, decoder_embed_dim),
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList([
            Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(decoder_depth)])
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, self.patch_size ** 2 * self.in_chans, bias=True)
        self._init_decoder_weights()

    def _init_decoder_weights(self) -> None:
        self.decoder_pos_embed.data.copy_(
            get_2d_sincos_pos_embed(self.decoder_embed_dim, self.grid, cls_token=True)[None])
        nn.init.normal_(self.mask_token, std=0.02)
        for m in (self.decoder_embed, *self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            m.apply(_init_module)

    def no_weight_decay(self) -> Set[str]:
        return super().no_weight_decay() | {"mask_token", "decoder_pos_embed"}

    def expected_unused_keys(self) -> List[str]:
        """Nothing: an MAE checkpoint's decoder is this model's (a deeper decoder must not load silently)."""
        return []

    def decoder_pos_embed_for(self, grid: Tuple[int, int]) -> torch.Tensor:
        """Decoder position table (1, 1 + h*w, Dd) for a patch grid (the encoder's rule: :meth:`fixed_table`)."""
        return self.fixed_table("decoder_pos_embed", grid)

    # ----------------------------------------------------------------- encoder
    def forward_encoder(self, imgs: torch.Tensor, mask_ratio: float,
                        noise: Optional[torch.Tensor] = None):
        """(B, C, H, W) -> latent (B, 1+K, D) [(B, 1+L, D) with mask tokens], mask (B, L), ids_restore (B, L)."""
        check_mask_ratio(mask_ratio)
        tokens, cls, grid = self.embed_patches(imgs)
        B, L, D = tokens.shape
        if noise is None:
            noise = make_noise(self.masking, B, grid, mask_ratio, device=imgs.device)
        elif noise.shape != (B, L):
            raise ValueError(f"noise must have shape (B, L) = {(B, L)}, got {tuple(noise.shape)}")
        masks = masks_from_noise(noise, num_visible(L, mask_ratio))
        if self.mask_token_in_encoder:
            # BEiT-style: swap masked patch embeddings for the token, keep position information.
            pos = self.pos_embed_for(grid)[:, 1:]
            m = masks.mask[..., None].to(tokens.dtype)
            tokens = tokens * (1 - m) + (self.mask_token + pos) * m
        else:
            tokens = torch.gather(tokens, 1, masks.ids_keep[..., None].expand(-1, -1, D))
        x = self.norm(self.run_blocks(torch.cat([cls, tokens], dim=1)))
        return x, masks.mask, masks.ids_restore

    # ----------------------------------------------------------------- decoder
    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor,
                        grid: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """latent (B, 1+K, D), ids_restore (B, L) -> predicted pixels (B, L, p*p*C) in image order."""
        x = self.decoder_embed(latent)
        B, L = ids_restore.shape
        if not self.mask_token_in_encoder:
            n_mask = L + 1 - x.shape[1]
            x_ = torch.cat([x[:, 1:], self.mask_token.expand(B, n_mask, -1).to(x.dtype)], dim=1)
            x_ = torch.gather(x_, 1, ids_restore[..., None].expand(-1, -1, x.shape[2]))
            x = torch.cat([x[:, :1], x_], dim=1)
        x = x + self.decoder_pos_embed_for(grid or self.grid)
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:]

    # -------------------------------------------------------------------- loss
    def target(self, imgs: torch.Tensor) -> torch.Tensor:
        """Pixel target (B, L, p*p*C); per-patch standardised when ``norm_pix_loss``."""
        target = patchify(imgs, self.patch_size)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return target

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over removed patches only (over all patches if none is removed)."""
        loss = ((pred.float() - self.target(imgs).float()) ** 2).mean(dim=-1)
        # branch-free (no host sync on GPU, traceable by torch.compile and on the meta device)
        weights = torch.where(mask.sum() > 0, mask, torch.ones_like(mask))
        return (loss * weights).sum() / weights.sum()

    def forward(self, imgs: torch.Tensor, mask_ratio: Optional[float] = None,
                noise: Optional[torch.Tensor] = None):
        """imgs (B, C, H, W) -> (loss, pred (B, L, p*p*C), mask (B, L) with 1 = removed)."""
        mask_ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        grid = self.patch_embed.grid_size(imgs)
        pred = self.forward_decoder(latent, ids_restore, grid)
        return self.forward_loss(imgs, pred, mask), pred, mask
