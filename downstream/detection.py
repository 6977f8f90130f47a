"""Detection pipeline pieces for mmdet configs."""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import mmcv
from mmcv.transforms import BaseTransform


class PadToCanvas(BaseTransform):
    """Pad the image at the bottom / right to a fixed ``size`` = (width, height) canvas, keeping ``img_shape``.

    detectron2's ViTDet runs inference on a 1024 x 1024 canvas (``ImageList.from_tensors(...,
    padding_constraints={'square_size': 1024})``), the size it trains on, so a ViT with absolute and global
    relative position tables always sees the 64 x 64 grid. mmdet's ``DetDataPreprocessor`` applies its batch
    augments (``BatchFixedSizePad``) in training only, and mmcv's ``Pad`` overwrites ``img_shape`` with the padded
    size, after which the heads clip boxes to the canvas instead of the image. This keeps ``img_shape`` (the
    resized image, what the heads clip to, as detectron2 clips to the unpadded size) and records ``pad_shape``.
    ``pad_val``: per channel in the loaded image's order (BGR for mmdet's LoadImageFromFile).
    """

    def __init__(self, size: Tuple[int, int] = (1024, 1024), pad_val: Union[float, Sequence[float]] = 0):
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"size must be (width, height) > 0, got {size}")
        self.size = (int(size[0]), int(size[1]))
        self.pad_val = tuple(pad_val) if isinstance(pad_val, (list, tuple)) else pad_val

    def transform(self, results: dict) -> dict:
        img = results["img"]
        h, w = img.shape[:2]
        width, height = self.size
        if h > height or w > width:
            raise ValueError(f"image {w}x{h} (w x h) is larger than the {width}x{height} canvas of PadToCanvas: put a "
                             f"Resize(scale={self.size}, keep_ratio=True) before it")
        results["img"] = mmcv.impad(img, shape=(height, width), pad_val=self.pad_val)
        results["img_shape"] = (h, w)
        results["pad_shape"] = results["img"].shape[:2]
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, pad_val={self.pad_val})"
