"""Presets: encoders ``vit_*`` and MAE models ``mae_vit_*`` (official MAE shapes)."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Union

from torch import nn

from .classifier import ViTClassifier
from .mae import MaskedAutoencoder
from .vit import VisionTransformer

# name: (patch_size, embed_dim, depth, num_heads)
ENCODER_SHAPES = {
    "tiny_patch16": (16, 192, 12, 3),
    "small_patch16": (16, 384, 12, 6),
    "base_patch16": (16, 768, 12, 12),
    "large_patch16": (16, 1024, 24, 16),
    "huge_patch14": (14, 1280, 32, 16),
}

_REGISTRY: Dict[str, Callable[..., nn.Module]] = {}


def _shape_kwargs(key: str) -> dict:
    p, d, n, h = ENCODER_SHAPES[key]
    return dict(patch_size=p, embed_dim=d, depth=n, num_heads=h, mlp_ratio=4.0)


# ``pretrained=`` needs checkpoint reading and downloads, which live above this pure-torch layer:
# mae_backbone.weights registers its loader here when the package is imported (the layers keep pointing down)
_PRETRAINED_LOADER: Optional[Callable[[nn.Module, str, Union[bool, str]], None]] = None


def register_pretrained_loader(loader: Callable[[nn.Module, str, Union[bool, str]], None]) -> None:
    """``loader(model, preset_name, pretrained)`` loads weights into a freshly built preset."""
    global _PRETRAINED_LOADER
    _PRETRAINED_LOADER = loader


def _make(cls, key: str, extra: dict, name: str) -> Callable[..., nn.Module]:
    def factory(pretrained: Union[bool, str] = False, **overrides) -> nn.Module:
        model = cls(**{**_shape_kwargs(key), **extra, **overrides})
        if pretrained:
            if _PRETRAINED_LOADER is None:
                raise RuntimeError("pretrained= needs mae_backbone.weights: import mae_backbone (the package) first")
            _PRETRAINED_LOADER(model, name, pretrained)
        return model
    factory.__doc__ = (f"{cls.__name__} preset {key} ({ENCODER_SHAPES[key]}); keyword arguments override. "
                       f"pretrained=True loads the official MAE weights of this size (mae_backbone.weights), "
                       f"pretrained=NAME / URL / PATH a given checkpoint, strictly.")
    return factory


for _key in ENCODER_SHAPES:
    _REGISTRY[f"vit_{_key}"] = _make(VisionTransformer, _key, {}, f"vit_{_key}")
    _REGISTRY[f"mae_vit_{_key}"] = _make(
        MaskedAutoencoder, _key, dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16), f"mae_vit_{_key}")
    globals()[f"vit_{_key}"] = _REGISTRY[f"vit_{_key}"]
    globals()[f"mae_vit_{_key}"] = _REGISTRY[f"mae_vit_{_key}"]


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
    """A :class:`ViTClassifier` with the shape of encoder preset ``arch`` (e.g. ``vit_base_patch16``)."""
    key = arch[len("vit_"):] if arch.startswith("vit_") else None
    if key not in ENCODER_SHAPES:
        raise ValueError(f"unknown encoder preset {arch!r}; valid: {', '.join('vit_' + k for k in ENCODER_SHAPES)}")
    return ViTClassifier(num_classes=num_classes, **{**_shape_kwargs(key), **overrides})
