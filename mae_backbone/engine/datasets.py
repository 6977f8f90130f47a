"""Register the pure-torch datasets with mmengine; transforms are built from dicts."""
from __future__ import annotations

import os
import random

import numpy as np
import torch
from mmengine.registry import DATASETS, FUNCTIONS

from .. import data
from ..data import transforms as T

def timm_train_transform(img_size: int = 224, **kwargs):
    """timm's fine-tuning augmentation (RandAugment, random erasing, ...); outputs normalised floats."""
    from timm.data import create_transform
    return create_transform(img_size, is_training=True, **kwargs)


def timm_eval_transform(img_size: int = 224, crop_pct: float = 0.875, **kwargs):
    """timm's evaluation transform (resize, centre crop, normalise)."""
    from timm.data import create_transform
    return create_transform(img_size, is_training=False, crop_pct=crop_pct, **kwargs)


_TRANSFORMS = {"pretrain": T.pretrain_transform, "eval": T.eval_transform,
               "timm_train": timm_train_transform, "timm_eval": timm_eval_transform}


def build_transform(cfg):
    """``dict(type='pretrain'|'eval', **kwargs)`` -> callable; a callable passes through."""
    if cfg is None or callable(cfg):
        return cfg
    cfg = dict(cfg)
    kind = cfg.pop("type")
    if kind not in _TRANSFORMS:
        raise ValueError(f"unknown transform type {kind!r}; choose one of {sorted(_TRANSFORMS)}")
    return _TRANSFORMS[kind](**cfg)


@DATASETS.register_module(name="ImageFolder")
def image_folder(transform=None, **kwargs) -> data.ImageFolder:
    """Registered builder for :class:`mae_backbone.data.ImageFolder`."""
    return data.ImageFolder(transform=build_transform(transform), **kwargs)


@DATASETS.register_module(name="FashionMNIST")
def fashion_mnist(transform=None, **kwargs) -> data.FashionMNIST:
    """Registered builder for :class:`mae_backbone.data.FashionMNIST`."""
    return data.FashionMNIST(transform=build_transform(transform), **kwargs)


@FUNCTIONS.register_module()
def seed_worker(worker_id: int) -> None:
    """Seed a data-loader worker from torch's per-epoch worker seed (drawn from the main RNG) and the rank.

    mmengine's default fixes each worker's seed for the whole run, so non-persistent workers
    replay the same augmentations every epoch. Deriving the seed from the main process RNG
    (saved in checkpoints by :class:`RNGStateHook`) gives fresh augmentations per epoch and
    an exact replay after resume.
    """
    seed = (torch.initial_seed() + 1_000_003 * int(os.environ.get("RANK", 0))) % 2 ** 63
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)
