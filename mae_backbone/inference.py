"""Rebuild a model from a checkpoint alone, and load images for inference."""
from __future__ import annotations

import re
from typing import Mapping, Optional, Sequence, Tuple

import torch

from .checkpoint import LoadReport, convert_state_dict, load_checkpoint
from .data.datasets import open_image
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, normalize
from .models import ENCODER_SHAPES, MaskedAutoencoder, create_model

Norm = Tuple[Tuple[float, ...], Tuple[float, ...]]


def _run_config(ckpt: Mapping) -> Tuple[Optional[dict], Optional[Norm]]:
    """Model kwargs and pixel mean/std (0-1 scale) from the config mmengine stores in ``meta['cfg']``."""
    meta = ckpt.get("meta") if isinstance(ckpt, Mapping) else None
    cfg_text = meta.get("cfg") if isinstance(meta, Mapping) else None
    if not cfg_text:
        return None, None
    from mmengine.config import Config
    model = dict(Config.fromstring(cfg_text, ".py").model)
    if model.get("type") != "MAEPretrainer":
        return None, None
    pre = model.pop("data_preprocessor", None) or {}
    norm = None
    if "mean" in pre and "std" in pre:
        norm = (tuple(m / 255 for m in pre["mean"]), tuple(s / 255 for s in pre["std"]))
    for key in ("type", "pretrained", "init_cfg"):
        model.pop(key, None)
    return model, norm


def infer_mae_kwargs(sd: Mapping[str, torch.Tensor]) -> dict:
    """Architecture of a native-layout MAE state dict (heads from the presets, else 64-d heads)."""
    if "patch_embed.proj.weight" not in sd or "decoder_embed.weight" not in sd:
        raise ValueError("not a full MAE checkpoint (needs the encoder and the decoder); an encoder-only "
                         "file cannot reconstruct images")
    embed_dim, in_chans, p, _ = sd["patch_embed.proj.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    dec_dim = sd["decoder_embed.weight"].shape[0]
    dec_depth = len({m.group(1) for k in sd if (m := re.match(r"decoder_blocks\.(\d+)\.", k))})
    heads = next((h for (pp, d, n, h) in ENCODER_SHAPES.values() if (pp, d, n) == (p, embed_dim, depth)),
                 embed_dim // 64)
    side = int(round((sd["pos_embed"].shape[1] - 1) ** 0.5))
    return dict(patch_size=p, in_chans=in_chans, embed_dim=embed_dim, depth=depth, num_heads=heads,
                img_size=side * p, decoder_embed_dim=dec_dim, decoder_depth=dec_depth,
                decoder_num_heads=max(1, dec_dim // 32),
                mask_token_in_encoder=sd["mask_token"].shape[-1] == embed_dim != dec_dim)


def build_mae_from_checkpoint(ckpt: Mapping, arch: Optional[str] = None, img_size: Optional[int] = None,
                              norm_pix_loss: Optional[bool] = None,
                              source: str = "auto") -> Tuple[MaskedAutoencoder, LoadReport, Norm]:
    """A :class:`MaskedAutoencoder` shaped like the checkpoint (strict load, eval mode), its report and
    pixel (mean, std) in 0-1 units (the run's, else ImageNet's)."""
    kwargs, norm = _run_config(ckpt)
    if kwargs is None:
        sd, _ = convert_state_dict(ckpt, source)
        kwargs = infer_mae_kwargs(sd)
        kwargs.setdefault("norm_pix_loss", False)
    name = kwargs.pop("arch", None) or arch
    if norm_pix_loss is not None:
        kwargs["norm_pix_loss"] = norm_pix_loss
    if img_size is not None:
        kwargs["img_size"] = img_size
    model = create_model(arch or name, **kwargs) if (arch or name) else MaskedAutoencoder(**kwargs)
    report = load_checkpoint(model, ckpt, strict=True, source=source)
    return model.eval(), report, norm or (IMAGENET_MEAN, IMAGENET_STD)


def load_images(paths: Sequence[str], img_size: int, in_chans: int = 3,
                mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Image files -> normalised (B, C, img_size, img_size): short side resized, centre crop."""
    tf = eval_transform(img_size, crop_pct=1.0)
    mode = "L" if in_chans == 1 else "RGB"
    imgs = torch.stack([tf(open_image(p, mode)) for p in paths])
    return normalize(imgs, mean[:in_chans], std[:in_chans])
