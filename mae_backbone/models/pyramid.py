"""Multi-scale feature maps from a plain (single-scale, stride-p) ViT for FPN / UperNet heads.

Two adaptations, both pure torch:

* :class:`RescalePyramid` — the MAE paper's detection / segmentation transfer (Sec. 5 and
  appendix A.3, after Li et al. 2021 "Benchmarking detection transfer learning with ViTs"
  and BEiT): the outputs of several evenly spaced blocks, each at stride p, are rescaled
  by 4x (two stride-2 transposed convs with norm + GELU between), 2x (one transposed
  conv), 1x (identity) and 0.5x (2x2 max-pool), giving strides p/4 .. 2p for an FPN.
* :class:`SimpleFeaturePyramid` — ViTDet (Li et al. 2022, Sec. 3): only the last map is
  used; it is rescaled by 4x / 2x / 1x / 0.5x, each level projected to ``out_channels`` by
  1x1 conv + norm and 3x3 conv + norm, plus an extra level by stride-2 max-pooling the
  coarsest output (strides 4 .. 64 for p = 16).
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

NORMS = ("LN", "BN", "SyncBN", "GN")


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of (B, C, H, W) maps."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(
            x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


def norm2d(kind: str, channels: int) -> nn.Module:
    """A norm for (B, C, H, W) maps: 'LN' (channel LayerNorm), 'BN', 'SyncBN' (multi-GPU; BN without CUDA) or 'GN'."""
    if kind == "LN":
        return LayerNorm2d(channels)
    if kind == "BN":
        return nn.BatchNorm2d(channels)
    if kind == "SyncBN":
        # torch's SyncBatchNorm refuses CPU tensors under a process group (gloo DDP); without CUDA it is
        # plain BatchNorm (per-process statistics, which is what SyncBN computes in a single process)
        return nn.SyncBatchNorm(channels) if torch.cuda.is_available() else nn.BatchNorm2d(channels)
    if kind == "GN":
        return nn.GroupNorm(min(32, channels), channels)
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


def _rescale(scale: float, channels: int, out_channels: int, norm: str) -> nn.Module:
    """Module turning a (B, C, H, W) map into (B, C', H*scale, W*scale) for scale in {4, 2, 1, 0.5, 0.25}."""
    if scale == 4:
        return nn.Sequential(nn.ConvTranspose2d(channels, channels, 2, stride=2), norm2d(norm, channels),
                             nn.GELU(), nn.ConvTranspose2d(channels, out_channels, 2, stride=2))
    if scale == 2:
        return nn.ConvTranspose2d(channels, out_channels, 2, stride=2)
    if scale == 1:
        if out_channels != channels:
            raise ValueError("scale 1 keeps the channel count")
        return nn.Identity()
    if scale in (0.5, 0.25):
        if out_channels != channels:
            raise ValueError("pooling keeps the channel count")
        k = int(round(1 / scale))
        return nn.MaxPool2d(kernel_size=k, stride=k)
    raise ValueError(f"unsupported rescale factor {scale}; choose from 4, 2, 1, 0.5, 0.25")


class RescalePyramid(nn.Module):
    """Rescale one stride-p map per level (MAE paper / BEiT transfer): maps[i] is scaled by ``rescales[i]``.

    Channels are kept (``embed_dim`` in, ``embed_dim`` out), so an FPN takes
    ``in_channels=[embed_dim] * len(rescales)``. Submodules are named ``fpn1 .. fpnN``.
    """

    def __init__(self, embed_dim: int, rescales: Sequence[float] = (4, 2, 1, 0.5), norm: str = "BN"):
        super().__init__()
        self.rescales = tuple(float(s) for s in rescales)
        for i, s in enumerate(self.rescales):
            self.add_module(f"fpn{i + 1}", _rescale(s, embed_dim, embed_dim, norm))
        self.out_channels = [embed_dim] * len(self.rescales)

    def forward(self, maps: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        if len(maps) != len(self.rescales):
            raise ValueError(f"RescalePyramid has {len(self.rescales)} levels (rescales={self.rescales}) "
                             f"but got {len(maps)} maps: make out_indices as long as rescales")
        return [getattr(self, f"fpn{i + 1}")(m) for i, m in enumerate(maps)]


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid on the last stride-p map -> ``len(scale_factors) (+1)`` maps.

    Level i: rescale by ``scale_factors[i]`` (4x: deconv, norm, GELU, deconv with C/2 then C/4
    channels; 2x: deconv to C/2; 1x; 0.5x max-pool), then 1x1 conv + norm and 3x3 conv + norm to
    ``out_channels``. ``extra_pool`` appends a stride-2 max-pool of the coarsest output
    (detectron2's ``LastLevelMaxPool``; the P6 level of an RPN with strides 4 .. 64).
    """

    def __init__(self, in_channels: int, out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5), norm: str = "LN",
                 extra_pool: bool = True):
        super().__init__()
        self.scale_factors = tuple(float(s) for s in scale_factors)
        self.extra_pool = extra_pool
        self.stages = nn.ModuleList()
        for s in self.scale_factors:
            if s == 4:
                mid = in_channels // 4
                up = nn.Sequential(nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2),
                                   norm2d(norm, in_channels // 2), nn.GELU(),
                                   nn.ConvTranspose2d(in_channels // 2, mid, 2, stride=2))
            elif s == 2:
                mid = in_channels // 2
                up = nn.ConvTranspose2d(in_channels, mid, 2, stride=2)
            else:
                mid = in_channels
                up = _rescale(s, in_channels, in_channels, norm)
            self.stages.append(nn.Sequential(
                up,
                nn.Conv2d(mid, out_channels, 1, bias=False), norm2d(norm, out_channels),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), norm2d(norm, out_channels)))
        self.num_outs = len(self.scale_factors) + int(extra_pool)
        self.out_channels = out_channels
        for m in self.modules():  # detectron2's c2_xavier_fill for the projection convs
            if type(m) is nn.Conv2d:
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Takes the backbone's outputs (uses the last one) and returns maps, finest first."""
        if isinstance(feats, torch.Tensor):
            feats = [feats]
        x = feats[-1]
        outs = [stage(x) for stage in self.stages]
        if self.extra_pool:
            outs.append(nn.functional.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return outs
