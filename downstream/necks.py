"""Necks registered for mmdet / mmseg configs."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from mae_backbone.models.pyramid import SimpleFeaturePyramid

from .backbone import autocast_context, check_autocast_dtype


class ViTDetSimplePyramid(SimpleFeaturePyramid):
    """ViTDet's simple feature pyramid as a neck: takes the backbone's maps (uses the last), returns a tuple.

    Config: ``neck=dict(type='ViTDetSimplePyramid', in_channels=768, out_channels=256,
    scale_factors=(4.0, 2.0, 1.0, 0.5), norm='LN', extra_pool=True)`` (5 levels, strides 4 .. 64
    for a stride-16 backbone: the stock Mask R-CNN RPN / RoI settings apply unchanged).
    ``autocast_dtype='bfloat16'`` runs it under autocast with float32 outputs (as ``MAEViT``).
    """

    def __init__(self, *args, autocast_dtype: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.autocast_dtype = check_autocast_dtype(autocast_dtype)

    def forward(self, feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        x = feats[-1] if not isinstance(feats, torch.Tensor) else feats
        with autocast_context(self.autocast_dtype, x.device):
            outs = super().forward(feats)
        return tuple(o.float() for o in outs)
