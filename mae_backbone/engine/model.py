"""Registered mmengine model wrapping :class:`~mae_backbone.models.MaskedAutoencoder`."""
from __future__ import annotations

from typing import Dict, Optional, Union

import torch
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from ..checkpoint import load_checkpoint
from ..compile import maybe_compile
from ..models import create_model


@MODELS.register_module()
class MAEPretrainer(BaseModel):
    """mmengine model for MAE pretraining.

    Args:
        arch: preset name, e.g. ``mae_vit_base_patch16``.
        pretrained: optional checkpoint (any supported layout) loaded strictly.
        compile: opt-in ``torch.compile`` of the MAE (True or ``torch.compile`` options such as
            ``dict(mode='max-autotune')``), eager with a warning if compilation fails
            (:func:`mae_backbone.compile.compile_module`).
        **model_kwargs: preset overrides (``img_size``, ``norm_pix_loss``, ``mask_ratio``, ...).
    """

    def __init__(self, arch: str = "mae_vit_base_patch16", data_preprocessor: Optional[dict] = None,
                 pretrained: Optional[str] = None, init_cfg: Optional[dict] = None,
                 compile: Union[bool, dict] = False, **model_kwargs):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.arch, self.model_kwargs = arch, dict(model_kwargs)
        self.model = create_model(arch, **model_kwargs)
        if pretrained:
            load_checkpoint(self.model, pretrained, strict=True)
        maybe_compile(self.model, compile)

    def model_spec(self) -> Dict:
        """Plain-data description (preset, overrides, pixel mean/std in 0-1 units) to rebuild the model."""
        spec = dict(arch=self.arch, kwargs=dict(self.model_kwargs))
        pre = self.data_preprocessor
        if getattr(pre, "_enable_normalize", False):
            spec["mean"] = [float(m) / 255 for m in pre.mean.flatten()]
            spec["std"] = [float(s) / 255 for s in pre.std.flatten()]
        return spec

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = "tensor",
                label=None, path=None):
        """``loss`` -> dict(loss); ``predict``/``tensor`` -> (loss, pred (B, L, p*p*C), mask (B, L))."""
        if mode == "loss":
            loss, _, _ = self.model(inputs)
            return dict(loss=loss)
        if mode in ("predict", "tensor"):
            return self.model(inputs)
        raise ValueError(f"unknown mode {mode!r}; expected 'loss', 'predict' or 'tensor'")
