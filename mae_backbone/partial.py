"""Partial fine-tuning (MAE paper Sec. 4.3, Fig. 9): train the last k blocks, freeze the rest.

One implementation for classification, detection and segmentation: it calls the model's own
``freeze()`` and groups parameters by ``layer_id()``; nothing here parses parameter names.
"""
from __future__ import annotations

import dataclasses
from typing import List, Union

from torch import nn

VARIANTS = ("blocks", "mlp")


@dataclasses.dataclass
class FreezeReport:
    """Trainable / frozen parameter counts per layer (0 = embeddings, i = block i-1, depth+1 = top)."""
    k: int
    variant: str
    rows: List[dict]

    @property
    def trainable(self) -> int:
        return sum(r["trainable"] for r in self.rows)

    @property
    def frozen(self) -> int:
        return sum(r["frozen"] for r in self.rows)

    def __str__(self) -> str:
        lines = [f"partial fine-tuning k={self.k} ({self.variant}): {self.trainable:,} trainable, "
                 f"{self.frozen:,} frozen parameters", "| layer | trainable | frozen |", "|---|---|---|"]
        lines += [f"| {r['layer']} | {r['trainable']:,} | {r['frozen']:,} |" for r in self.rows]
        return "\n".join(lines)


def _backbone(model: nn.Module):
    from .param_groups import find_described_module
    prefix, backbone = find_described_module(model)
    if backbone is None or not callable(getattr(backbone, "freeze", None)):
        raise TypeError(f"{type(model).__name__} holds no module with freeze() and layer_id(); partial "
                        f"fine-tuning needs the mae_backbone VisionTransformer (or a model containing it)")
    return prefix, backbone


def freeze_report(model: nn.Module, k: int = -1, variant: str = "blocks") -> FreezeReport:
    """Count trainable / frozen parameters per layer of the described backbone (others in the top row)."""
    prefix, backbone = _backbone(model)
    depth = backbone.depth
    counts = {i: [0, 0] for i in range(depth + 2)}
    for name, p in model.named_parameters():
        layer = backbone.layer_id(name[len(prefix):]) if name.startswith(prefix) else depth + 1
        counts[layer][0 if p.requires_grad else 1] += p.numel()
    names = {0: "embeddings", depth + 1: "norm + head"}
    rows = [dict(layer=names.get(i, f"block {i - 1}"), trainable=t, frozen=f) for i, (t, f) in counts.items()]
    return FreezeReport(k=k, variant=variant, rows=rows)


def partial_finetune(model: nn.Module, k: Union[int, str], variant: str = "blocks") -> FreezeReport:
    """Train only the last ``k`` blocks (+ final norm + head); ``k = 0`` is linear probing, ``'all'`` = depth.

    ``variant='mlp'`` trains only the MLP sub-block (with its norm) of the last block (paper Fig. 9 text).
    Frozen modules stay in eval mode; returns what trains.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown partial fine-tuning variant {variant!r}; choose one of {VARIANTS}")
    _, backbone = _backbone(model)
    depth = backbone.depth
    if k == "all":
        k = depth
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= depth:
        raise ValueError(f"k (blocks to fine-tune) must be an int in [0, {depth}] or 'all', got {k!r}")
    if variant == "mlp" and k != 1:
        raise ValueError(f"variant 'mlp' fine-tunes the MLP of the last block only: use k=1, got k={k}")
    for p in model.parameters():  # start from "everything trains", then freeze
        p.requires_grad_(True)
    backbone.freeze(depth - k)
    if variant == "mlp":  # the last block stays in train mode (drop path on) with its attention frozen
        last = backbone.blocks[-1]
        for m in (last.norm1, last.attn):
            m.requires_grad_(False)
    if k == 0:  # linear probing: the final norm is part of the frozen encoder
        backbone.norm.requires_grad_(False)
    model.train(model.training)
    return freeze_report(model, k, variant)
