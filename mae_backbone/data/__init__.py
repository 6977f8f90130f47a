"""Datasets (pure torch / torchvision / PIL) and transforms."""
from .datasets import FashionMNIST, ImageFolder, open_image, read_idx
from .sample_photos import SAMPLE_PHOTOS, export_sample_photos
from .transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, pretrain_transform

__all__ = ["FashionMNIST", "ImageFolder", "open_image", "read_idx", "SAMPLE_PHOTOS", "export_sample_photos",
           "IMAGENET_MEAN", "IMAGENET_STD", "eval_transform", "pretrain_transform"]
