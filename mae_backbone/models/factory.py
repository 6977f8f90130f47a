"""Presets: encoders ``vit_*`` and MAE models ``mae_vit_*`` (official MAE shapes)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Union

from torch import nn

from .classifier import ViTClassifier
from .mae import MaskedAutoencoder
from .vit import VisionTransformer

@dataclass(frozen=True)
class Arch:
    """One encoder shape of the official MAE / timm presets."""
    name: str            # e.g. "base_patch16"
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0

    def kwargs(self) -> dict:
        """Keyword arguments of :class:`VisionTransformer` (and of the models built on it) for this shape."""
        return dict(patch_size=self.patch_size, embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads,
                    mlp_ratio=self.mlp_ratio)


ARCHS: Dict[str, Arch] = {a.name: a for a in (
    Arch("tiny_patch16", 16, 192, 12, 3),
    Arch("small_patch16", 16, 384, 12, 6),
    Arch("base_patch16", 16, 768, 12, 12),
    Arch("large_patch16", 16, 1024, 24, 16),
    Arch("huge_patch14", 14, 1280, 32, 16),
)}
_SHORT = {"t": "tiny", "s": "small", "b": "base", "l": "large", "h": "huge"}


def resolve_arch(name: str) -> Arch:
    """The shape behind any of its names: ``'b'``, ``'base'``, ``'base_patch16'``, ``'vit_base_patch16'`` or
    ``'mae_vit_base_patch16'``."""
    key = str(name)
    for prefix in ("mae_", "vit_"):
        key = key[len(prefix):] if key.startswith(prefix) else key
    key = _SHORT.get(key, key)
    matches = [a for a in ARCHS.values() if key in (a.name, a.name.split("_")[0])]
    if len(matches) != 1:
        raise ValueError(f"unknown architecture {name!r}; valid: {', '.join(sorted(_SHORT))}, "
                         f"{', '.join(n.split('_')[0] for n in ARCHS)}, or a preset: {', '.join(list_models())}")
    return matches[0]


def arch_of_shape(patch_size: int, embed_dim: int, depth: int) -> Optional[Arch]:
    """The preset with this shape (weights tell patch size, width and depth, not the head count), or None."""
    return next((a for a in ARCHS.values() if (a.patch_size, a.embed_dim, a.depth) == (patch_size, embed_dim, depth)),
                None)


# ``pretrained=`` needs checkpoint reading and downloads, which live above this pure-torch layer:
# mae_backbone.weights registers its loader here when the package is imported (the layers keep pointing down)
_PRETRAINED_LOADER: Optional[Callable[[nn.Module, str, Union[bool, str]], None]] = None

MAE_DECODER = dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16)  # the official decoder


def register_pretrained_loader(loader: Callable[[nn.Module, str, Union[bool, str]], None]) -> None:
    """``loader(model, preset_name, pretrained)`` loads weights into a freshly built preset."""
    global _PRETRAINED_LOADER
    _PRETRAINED_LOADER = loader


def _build(cls, name: str, pretrained: Union[bool, str], overrides: dict, **extra) -> nn.Module:
    model = cls(**{**resolve_arch(name).kwargs(), **extra, **overrides})
    if pretrained:
        if _PRETRAINED_LOADER is None:
            raise RuntimeError("pretrained= needs mae_backbone.weights: import mae_backbone (the package) first")
        _PRETRAINED_LOADER(model, name, pretrained)
    return model


# Presets. Keyword arguments override the shape; pretrained=True loads the official MAE weights of the size
# (mae_backbone.weights), pretrained=NAME / URL / PATH a given checkpoint, strictly.
def vit_tiny_patch16(pretrained: Union[bool, str] = False, **overrides) -> VisionTransformer:
    """ViT-Ti/16 encoder (192 wide, 12 blocks, 3 heads)."""
    return _build(VisionTransformer, "vit_tiny_patch16", pretrained, overrides)


def vit_small_patch16(pretrained: Union[bool, str] = False, **overrides) -> VisionTransformer:
    """ViT-S/16 encoder (384 wide, 12 blocks, 6 heads)."""
    return _build(VisionTransformer, "vit_small_patch16", pretrained, overrides)


def vit_base_patch16(pretrained: Union[bool, str] = False, **overrides) -> VisionTransformer:
    """ViT-B/16 encoder (768 wide, 12 blocks, 12 heads)."""
    return _build(VisionTransformer, "vit_base_patch16", pretrained, overrides)


def vit_large_patch16(pretrained: Union[bool, str] = False, **overrides) -> VisionTransformer:
    """ViT-L/16 encoder (1024 wide, 24 blocks, 16 heads)."""
    return _build(VisionTransformer, "vit_large_patch16", pretrained, overrides)


def vit_huge_patch14(pretrained: Union[bool, str] = False, **overrides) -> VisionTransformer:
    """ViT-H/14 encoder (1280 wide, 32 blocks, 16 heads)."""
    return _build(VisionTransformer, "vit_huge_patch14", pretrained, overrides)


def mae_vit_tiny_patch16(pretrained: Union[bool, str] = False, **overrides) -> MaskedAutoencoder:
    """MAE with a ViT-Ti/16 encoder and the official decoder (512 wide, 8 blocks, 16 heads)."""
    return _build(MaskedAutoencoder, "mae_vit_tiny_patch16", pretrained, overrides, **MAE_DECODER)


def mae_vit_small_patch16(pretrained: Union[bool, str] = False, **overrides) -> MaskedAutoencoder:
    """MAE with a ViT-S/16 encoder and the official decoder."""
    return _build(MaskedAutoencoder, "mae_vit_small_patch16", pretrained, overrides, **MAE_DECODER)


def mae_vit_base_patch16(pretrained: Union[bool, str] = False, **overrides) -> MaskedAutoencoder:
    """MAE with a ViT-B/16 encoder and the official decoder."""
    return _build(MaskedAutoencoder, "mae_vit_base_patch16", pretrained, overrides, **MAE_DECODER)


def mae_vit_large_patch16(pretrained: Union[bool, str] = False, **overrides) -> MaskedAutoencoder:
    """MAE with a ViT-L/16 encoder and the official decoder."""
    return _build(MaskedAutoencoder, "mae_vit_large_patch16", pretrained, overrides, **MAE_DECODER)


def mae_vit_huge_patch14(pretrained: Union[bool, str] = False, **overrides) -> MaskedAutoencoder:
    """MAE with a ViT-H/14 encoder and the official decoder."""
    return _build(MaskedAutoencoder, "mae_vit_huge_patch14", pretrained, overrides, **MAE_DECODER)


_REGISTRY: Dict[str, Callable[..., nn.Module]] = {f.__name__: f for f in (
    vit_tiny_patch16, vit_small_patch16, vit_base_patch16, vit_large_patch16, vit_huge_patch14,
    mae_vit_tiny_patch16, mae_vit_small_patch16, mae_vit_base_patch16, mae_vit_large_patch16, mae_vit_huge_patch14)}
assert {n.removeprefix("mae_").removeprefix("vit_") for n in _REGISTRY} == set(ARCHS)  # one preset pair per shape


def list_models() -> List[str]:
    """Names of all presets."""
    return sorted(_REGISTRY)


def create_model(name: str, **overrides) -> nn.Module:
    """Build a preset by name, e.g. ``create_model('mae_vit_base_patch16', norm_pix_loss=True)``;
    ``pretrained=True`` loads the official MAE weights of that size, ``pretrained=NAME / URL / PATH`` a checkpoint."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid presets: {', '.join(list_models())}")
    return _REGISTRY[name](**overrides)


def create_classifier(arch: str, num_classes: int, **overrides) -> ViTClassifier:
    """A :class:`ViTClassifier` with the shape of ``arch`` (any name :func:`resolve_arch` takes, e.g.
    ``vit_base_patch16``)."""
    return ViTClassifier(num_classes=num_classes, **{**resolve_arch(arch).kwargs(), **overrides})
