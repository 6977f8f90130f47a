"""Pure-torch models: the one ViT encoder, MAE, masking, position embeddings."""
from .attention import Attention, Block
from .classifier import ViTClassifier
from .factory import ARCHS, Arch, arch_of_shape, create_classifier, create_model, list_models, resolve_arch
from .factory import (mae_vit_base_patch16, mae_vit_huge_patch14, mae_vit_large_patch16,  # noqa: F401
                      mae_vit_small_patch16, mae_vit_tiny_patch16, vit_base_patch16,
                      vit_huge_patch14, vit_large_patch16, vit_small_patch16, vit_tiny_patch16)
from .mae import MaskedAutoencoder, patchify, unpatchify
from .masking import Masks, make_noise, masks_from_noise
from .pos_embed import get_2d_sincos_pos_embed, resize_pos_embed
from .vit import PatchEmbed, VisionTransformer

__all__ = [
    "ARCHS", "Arch", "Attention", "Block", "MaskedAutoencoder", "Masks", "PatchEmbed",
    "VisionTransformer", "ViTClassifier", "create_classifier", "create_model", "get_2d_sincos_pos_embed", "list_models",
    "arch_of_shape", "make_noise", "masks_from_noise", "patchify", "resize_pos_embed", "resolve_arch", "unpatchify",
    "mae_vit_base_patch16", "mae_vit_huge_patch14", "mae_vit_large_patch16",
    "mae_vit_small_patch16", "mae_vit_tiny_patch16", "vit_base_patch16", "vit_huge_patch14",
    "vit_large_patch16", "vit_small_patch16", "vit_tiny_patch16",
]
