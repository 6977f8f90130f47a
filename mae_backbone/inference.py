"""Rebuild a model from a checkpoint alone, and load images for inference."""
from __future__ import annotations

import logging
import re
from typing import Mapping, Optional, Sequence, Tuple

import torch

from .checkpoint import LoadReport, convert_state_dict, load_checkpoint
from .data.datasets import open_image
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, images_to_batch
from .models import MaskedAutoencoder, arch_of_shape, create_model

logger = logging.getLogger(__name__)
Norm = Tuple[Tuple[float, ...], Tuple[float, ...]]


def saved_spec(ckpt: Mapping) -> Tuple[Optional[str], Optional[dict], Optional[Norm]]:
    """(preset, overrides, (mean, std)) from ``meta['model_spec']`` (written by ``ModelSpecHook``).

    Plain data only: the Python config text mmengine stores in ``meta['cfg']`` is never executed.
    """
    meta = ckpt.get("meta") if isinstance(ckpt, Mapping) else None
    spec = meta.get("model_spec") if isinstance(meta, Mapping) else None
    if not isinstance(spec, Mapping):
        return None, None, None
    norm = (tuple(spec["mean"]), tuple(spec["std"])) if "mean" in spec and "std" in spec else None
    return spec.get("arch"), dict(spec.get("kwargs", {})), norm


def infer_encoder_kwargs(sd: Mapping[str, torch.Tensor], warn: bool = True) -> dict:
    """Encoder architecture of a native-layout state dict (heads from the presets, else 64-d heads, with a warning
    unless ``warn`` is False: the caller knows the head count)."""
    if "patch_embed.proj.weight" not in sd or "pos_embed" not in sd:
        raise ValueError("not an encoder checkpoint: it has no patch_embed.proj.weight / pos_embed")
    embed_dim, in_chans, p, _ = sd["patch_embed.proj.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    preset = arch_of_shape(p, embed_dim, depth)
    heads = preset.num_heads if preset else None
    if heads is None:
        heads = max(1, embed_dim // 64)
        if warn:
            logger.warning("encoder shape (patch %d, dim %d, depth %d) matches no preset: assuming %d heads of 64 "
                       "dims (head counts cannot be read from weights; pass --arch if this is wrong)",
                           p, embed_dim, depth, heads)
    side = int(round((sd["pos_embed"].shape[1] - 1) ** 0.5))
    return dict(patch_size=p, in_chans=in_chans, embed_dim=embed_dim, depth=depth, num_heads=heads, img_size=side * p)


def infer_mae_kwargs(sd: Mapping[str, torch.Tensor]) -> dict:
    """Architecture of a native-layout MAE state dict: :func:`infer_encoder_kwargs` plus the decoder."""
    if "patch_embed.proj.weight" not in sd or "decoder_embed.weight" not in sd:
        raise ValueError("not a full MAE checkpoint (needs the encoder and the decoder); an encoder-only "
                         "file cannot reconstruct images")
    kw = infer_encoder_kwargs(sd)
    dec_dim = sd["decoder_embed.weight"].shape[0]
    dec_depth = len({m.group(1) for k in sd if (m := re.match(r"decoder_blocks\.(\d+)\.", k))})
    if dec_dim != 512:
        logger.warning("decoder width %d is not the paper's 512: assuming %d heads of 32 dims", dec_dim, dec_dim // 32)
    return dict(kw, decoder_embed_dim=dec_dim, decoder_depth=dec_depth, decoder_num_heads=max(1, dec_dim // 32),
                mask_token_in_encoder=sd["mask_token"].shape[-1] == kw["embed_dim"] != dec_dim)


def build_mae_from_checkpoint(ckpt: Mapping, arch: Optional[str] = None, img_size: Optional[int] = None,
                              norm_pix_loss: Optional[bool] = None,
                              source: str = "auto") -> Tuple[MaskedAutoencoder, LoadReport, Norm]:
    """A :class:`MaskedAutoencoder` shaped like the checkpoint (strict load, eval mode), its report and
    pixel (mean, std) in 0-1 units (the run's, else ImageNet's).

    The shape comes from the saved model spec of our runs, else from the tensors (head counts
    then follow the presets, or 64-d heads, with a warning: they cannot be read from weights).
    """
    name, kwargs, norm = saved_spec(ckpt)
    if kwargs is None:
        sd, _ = convert_state_dict(ckpt, source)
        kwargs = infer_mae_kwargs(sd)
        kwargs.setdefault("norm_pix_loss", False)
    name = arch or name
    if norm_pix_loss is not None:
        kwargs["norm_pix_loss"] = norm_pix_loss
    if img_size is not None:
        kwargs["img_size"] = img_size
    model = create_model(name, **kwargs) if name else MaskedAutoencoder(**kwargs)
    report = load_checkpoint(model, ckpt, strict=True, source=source)
    return model.eval(), report, norm or (IMAGENET_MEAN, IMAGENET_STD)


def load_images(paths: Sequence[str], img_size: int, in_chans: int = 3,
                mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Image files -> normalised (B, C, img_size, img_size): short side resized, centre crop."""
    mode = "L" if in_chans == 1 else "RGB"
    return images_to_batch([open_image(p, mode) for p in paths], img_size, mean, std)
