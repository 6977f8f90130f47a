"""Image transforms. Outputs stay uint8 (C, H, W): normalisation happens on the device."""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torchvision.transforms import v2 as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pretrain_transform(img_size: int = 224, scale: Tuple[float, float] = (0.2, 1.0),
                       hflip: float = 0.5) -> T.Compose:
    """MAE pretraining augmentation: RandomResizedCrop(scale 0.2-1, bicubic) + flip -> uint8 tensor."""
    return T.Compose([
        T.ToImage(),
        T.RandomResizedCrop(img_size, scale=tuple(scale), interpolation=T.InterpolationMode.BICUBIC,
                            antialias=True),
        T.RandomHorizontalFlip(hflip),
        T.ToDtype(torch.uint8, scale=True),
    ])


def eval_transform(img_size: int = 224, crop_pct: float = 0.875) -> T.Compose:
    """Resize the short side to img_size / crop_pct (bicubic), centre crop -> uint8 tensor."""
    return T.Compose([
        T.ToImage(),
        T.Resize(int(round(img_size / crop_pct)), interpolation=T.InterpolationMode.BICUBIC, antialias=True),
        T.CenterCrop(img_size),
        T.ToDtype(torch.uint8, scale=True),
    ])


def normalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 or [0, 1] float (B, C, H, W) -> normalised float."""
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def images_to_batch(images: Sequence, img_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """PIL images -> normalised (B, C, img_size, img_size): short side resized, centre crop, no margin."""
    tf = eval_transform(img_size, crop_pct=1.0)
    batch = torch.stack([tf(img) for img in images])
    return normalize(batch, mean[: batch.shape[1]], std[: batch.shape[1]])
