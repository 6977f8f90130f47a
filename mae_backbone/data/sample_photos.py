"""Real photographs that ship offline inside pip packages (CC0 / public domain / permissive).

:func:`export_sample_photos` writes them as JPEG files into an ImageNet-style folder
so that demos and tests exercise the real :class:`~mae_backbone.data.ImageFolder` loader.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
from PIL import Image

from .offline_io import require

logger = logging.getLogger(__name__)


def _skimage(name: str, index=None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        img = getattr(require("skimage.data", "the bundled sample photos"), name)()
        return img[index] if index is not None else img
    return load


def _sklearn(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return require("sklearn.datasets", "the bundled sample photos").load_sample_images().images[index]
    return load


def _pywt(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return np.clip(getattr(require("pywt.data", "the bundled sample photos"), name)(), 0, 255).astype(np.uint8)
    return load


# name -> loader; photographs only (no synthetic test patterns).
SAMPLE_PHOTOS: Dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"), "chelsea": _skimage("chelsea"), "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"), "hubble_deep_field": _skimage("hubble_deep_field"),
    "retina": _skimage("retina"), "immunohistochemistry": _skimage("immunohistochemistry"),
    "motorcycle_left": _skimage("stereo_motorcycle", 0), "motorcycle_right": _skimage("stereo_motorcycle", 1),
    "camera": _skimage("camera"), "moon": _skimage("moon"), "coins": _skimage("coins"),
    "brick": _skimage("brick"), "grass": _skimage("grass"), "gravel": _skimage("gravel"),
    "cell": _skimage("cell"), "page": _skimage("page"),
    "china": _sklearn(0), "flower": _sklearn(1),
    "aero": _pywt("aero"), "ascent": _pywt("ascent"),
}


def to_rgb_uint8(img: np.ndarray) -> np.ndarray:
    """Grey, RGB or RGBA array of any numeric dtype -> (H, W, 3) uint8."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(img * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


def export_sample_photos(out_dir: str, names=None, quality: int = 95) -> List[Path]:
    """Write the offline photos to ``out_dir/<name>.jpg`` (existing files are kept); returns paths.

    A photo whose package is missing is skipped with a warning; no photo at all is an error.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names or SAMPLE_PHOTOS:
        if name not in SAMPLE_PHOTOS:
            raise ValueError(f"unknown sample photo {name!r}; choose from {sorted(SAMPLE_PHOTOS)}")
        path = out / f"{name}.jpg"
        if not path.exists():
            try:
                img = to_rgb_uint8(SAMPLE_PHOTOS[name]())
            except (ImportError, OSError, ValueError) as e:
                logger.warning("sample photo %s unavailable: %s", name, e)
                continue
            tmp = path.with_suffix(".tmp.jpg")
            Image.fromarray(img).save(tmp, quality=quality)
            tmp.replace(path)
        paths.append(path)
    if not paths:
        raise RuntimeError("no sample photo could be exported: install scikit-image, scikit-learn "
                           "or PyWavelets (make install does)")
    return paths
