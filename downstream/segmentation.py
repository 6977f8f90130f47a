"""Segmentation checks registered for mmseg configs: label ranges and class counts fail early and clearly.

mmseg leaves both to the loss: a label >= num_classes ends in an index error deep inside
``CrossEntropyLoss`` (or silently trains on garbage with some reductions), and a head built for
another class count than the dataset's trains without complaint.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.hooks import Hook
from torch import nn

from mae_backbone.engine.hooks import bare_model


class CheckSegLabels(BaseTransform):
    """Pipeline step after ``LoadAnnotations``: every label must be < ``num_classes`` or ``ignore_index``.

    Raises ``ValueError`` naming the file, the offending values and the likely fix
    (``reduce_zero_label`` or ``num_classes``).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        seg = results.get("gt_seg_map")
        if seg is None:
            raise ValueError("CheckSegLabels needs gt_seg_map: put it after LoadAnnotations")
        values = np.unique(seg)
        bad = values[(values >= self.num_classes) & (values != self.ignore_index)]
        if bad.size or (values < 0).any():
            bad = np.concatenate([values[values < 0], bad])
            raise ValueError(
                f"{results.get('seg_map_path', 'a label map')}: label values {bad.tolist()[:10]} are outside "
                f"0..{self.num_classes - 1} (and not the ignore index {self.ignore_index}); check num_classes "
                f"and reduce_zero_label (ADE20K-style maps store classes as 1..K with 0 = ignore)")
        return results


class SegClassCountCheckHook(Hook):
    """Before training / validation / testing: the heads' ``num_classes`` must equal the dataset's class count."""

    def _check(self, runner, loader) -> None:
        model = bare_model(runner.model)
        dataset = getattr(loader, "dataset", None)
        classes: Optional[tuple] = getattr(dataset, "metainfo", {}).get("classes") if dataset is not None else None
        if classes is None:
            return
        for name in ("decode_head", "auxiliary_head"):
            heads = getattr(model, name, None)
            if heads is None:
                continue
            for head in (heads if isinstance(heads, nn.ModuleList) else [heads]):
                if getattr(head, "num_classes", len(classes)) != len(classes):
                    raise ValueError(f"{name}.num_classes = {head.num_classes} but the dataset has {len(classes)} "
                                     f"classes ({', '.join(map(str, classes[:5]))}, ...): set "
                                     f"model.{name}.num_classes={len(classes)} or fix the dataset's metainfo")

    def before_train(self, runner) -> None:
        self._check(runner, runner.train_dataloader)

    def before_val(self, runner) -> None:
        self._check(runner, runner.val_dataloader)

    def before_test(self, runner) -> None:
        self._check(runner, runner.test_dataloader)
