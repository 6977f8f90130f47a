"""mmengine glue for classification: fine-tuning, linear probing and partial fine-tuning."""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import METRICS, MODELS
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy

from ..checkpoint import load_checkpoint
from ..compile import maybe_compile
from ..models import create_classifier
from ..partial import partial_finetune

logger = logging.getLogger(__name__)


@MODELS.register_module()
class MAEClassifier(BaseModel):
    """Classifier on the MAE encoder for mmengine.

    Args:
        arch: encoder preset, e.g. ``vit_base_patch16``.
        num_classes: classes of the dataset.
        pretrained: MAE (or any supported) checkpoint; the new head / fc_norm may be missing and the
            decoder (and the final norm under average pooling) may be unused; anything else fails.
        finetune_blocks: train the last k blocks (``'all'`` = full fine-tuning, 0 = linear probing).
        variant: ``blocks`` or ``mlp`` (the MLP of the last block only).
        mixup: timm ``Mixup`` arguments (mixup_alpha, cutmix_alpha, label_smoothing, ...) or None.
        label_smoothing: used when ``mixup`` is None.
        compile: opt-in ``torch.compile`` of the classifier (True or ``torch.compile`` options), eager with a
            warning if compilation fails (:func:`mae_backbone.compile.compile_module`).
        **model_kwargs: :class:`~mae_backbone.models.ViTClassifier` arguments (global_pool, linear_probe,
            img_size, drop_path_rate, ...).
    """

    def __init__(self, arch: str = "vit_base_patch16", num_classes: int = 1000, pretrained: Optional[str] = None,
                 finetune_blocks: Union[int, str] = "all", variant: str = "blocks", mixup: Optional[dict] = None,
                 label_smoothing: float = 0.0, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None, compile: Union[bool, dict] = False, **model_kwargs):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.arch, self.num_classes, self.model_kwargs = arch, num_classes, dict(model_kwargs)
        self.model = create_classifier(arch, num_classes, **model_kwargs)
        if pretrained:
            self.load_report = load_checkpoint(self.model, pretrained)  # the classifier's contract: head new, decoder unused
        self.freeze_report = partial_finetune(self.model, finetune_blocks, variant)
        logger.info("%s", self.freeze_report)
        maybe_compile(self.model, compile)
        if mixup and label_smoothing:
            raise ValueError("with mixup, set label smoothing inside it: mixup=dict(..., label_smoothing=0.1)")
        if mixup and not (mixup.get("mixup_alpha", 1.0) > 0 or mixup.get("cutmix_alpha", 0.0) > 0
                          or mixup.get("cutmix_minmax")):
            raise ValueError(f"mixup={mixup} mixes nothing: set mixup=None (and label_smoothing) instead")
        self.mixup = Mixup(num_classes=num_classes, **mixup) if mixup else None
        self.label_smoothing = label_smoothing

    def model_spec(self) -> Dict:
        """Plain-data description to rebuild the classifier (see ``ModelSpecHook``)."""
        return dict(arch=self.arch, num_classes=self.num_classes, kwargs=dict(self.model_kwargs))

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = "tensor", label=None, path=None):
        """``loss`` -> dict(loss); ``predict`` -> [dict(logits, label)] per sample; ``tensor`` -> logits."""
        if mode == "loss":
            if label is None:
                raise ValueError("classification training needs labels: the dataset items carry none")
            if self.mixup is not None:
                inputs, target = self.mixup(inputs, label)
                loss = SoftTargetCrossEntropy()(self.model(inputs), target)
            else:
                loss = F.cross_entropy(self.model(inputs), label, label_smoothing=self.label_smoothing)
            return dict(loss=loss)
        logits = self.model(inputs)
        if mode == "tensor":
            return logits
        if mode == "predict":
            labels = label if label is not None else [None] * len(logits)
            return [dict(logits=lg, label=lb) for lg, lb in zip(logits.float(), labels)]
        raise ValueError(f"unknown mode {mode!r}; expected 'loss', 'predict' or 'tensor'")


@METRICS.register_module()
class TopKAccuracy(BaseMetric):
    """Top-k accuracy in percent, e.g. ``dict(type='TopKAccuracy', topk=(1, 5))`` -> top1, top5."""
    default_prefix = "accuracy"

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = "cpu", prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not topk or any(k < 1 for k in topk):
            raise ValueError(f"topk must be positive integers, got {topk}")
        self.topk = tuple(topk)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            if s["label"] is None or int(s["label"]) < 0:
                raise ValueError("TopKAccuracy needs labelled samples, got label -1 (an image folder without class "
                                 "folders): give the dataset labelled=True and class folders or a labels_file")
            k = min(max(self.topk), s["logits"].numel())
            top = s["logits"].topk(k).indices.cpu()
            self.results.append([bool((top[:t] == int(s["label"])).any()) for t in self.topk])

    def compute_metrics(self, results: List[list]) -> Dict[str, float]:
        n = len(results)
        return {f"top{t}": 100.0 * sum(r[i] for r in results) / n for i, t in enumerate(self.topk)}
