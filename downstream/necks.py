"""Necks registered for mmdet / mmseg configs."""
from __future__ import annotations

from typing import Sequence, Tuple

import torch

from mae_backbone.models.pyramid import SimpleFeaturePyramid


class ViTDetSimplePyramid(SimpleFeaturePyramid):
    """ViTDet's simple feature pyramid as a neck: takes the backbone's maps (uses the last), returns a tuple.

    Config: ``neck=dict(type='ViTDetSimplePyramid', in_channels=768, out_channels=256,
    scale_factors=(4.0, 2.0, 1.0, 0.5), norm='LN', extra_pool=True)`` (5 levels, strides 4 .. 64
    for a stride-16 backbone: the stock Mask R-CNN RPN / RoI settings apply unchanged).
    """

    def forward(self, feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        return tuple(super().forward(feats))
