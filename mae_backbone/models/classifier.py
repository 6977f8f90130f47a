"""Classification on the one encoder: fine-tuning (pooled head) and linear probing (MAE paper App. A.2/A.3).

``ViTClassifier`` extends :class:`VisionTransformer`, so official fine-tuned checkpoints and timm
classifiers keep their flat keys (``blocks.N.*``, ``fc_norm``, ``head``).
"""
from __future__ import annotations

from typing import List

import torch
from timm.layers import trunc_normal_
from torch import nn

from .vit import LayerNorm6, VisionTransformer

POOLS = ("avg", "token")


class ViTClassifier(VisionTransformer):
    """ViT + classification head.

    Args (besides the :class:`VisionTransformer` ones):
        num_classes: output classes.
        global_pool: ``avg`` (mean of patch tokens -> ``fc_norm`` -> head; the official fine-tuning
            default, which drops the final ``norm``) or ``token`` (cls token after ``norm``; the
            official linear-probing input).
        linear_probe: head = ``BatchNorm1d(affine=False, eps=1e-6)`` + Linear (paper Table 10).
        head_drop: dropout before the head.
    """

    def __init__(self, num_classes: int = 1000, global_pool: str = "avg", linear_probe: bool = False,
                 head_drop: float = 0.0, **vit_kwargs):
        super().__init__(**vit_kwargs)
        if global_pool not in POOLS:
            raise ValueError(f"global_pool must be one of {POOLS}, got {global_pool!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.global_pool, self.linear_probe = num_classes, global_pool, linear_probe
        norm_layer = vit_kwargs.get("norm_layer", LayerNorm6)
        if global_pool == "avg":
            self.norm = nn.Identity()  # official models_vit.py deletes it under global pooling
            self.fc_norm = norm_layer(self.embed_dim)
        else:
            self.fc_norm = nn.Identity()
        self.head_drop = nn.Dropout(head_drop)
        linear = nn.Linear(self.embed_dim, num_classes)
        trunc_normal_(linear.weight, std=0.01 if linear_probe else 2e-5)  # official init per recipe
        nn.init.zeros_(linear.bias)
        self.head = nn.Sequential(nn.BatchNorm1d(self.embed_dim, affine=False, eps=1e-6), linear) \
            if linear_probe else linear

    def expected_new_keys(self) -> List[str]:
        """The encoder's, plus the head and its norm (an MAE checkpoint has neither)."""
        return super().expected_new_keys() + [r"^(head|fc_norm)\."]

    def expected_unused_keys(self) -> List[str]:
        """The encoder's, plus the final ``norm`` under average pooling (it is replaced by ``fc_norm``)."""
        return super().expected_unused_keys() + ([r"^norm\."] if self.global_pool == "avg" else [])

    def check_checkpoint_keys(self, missing) -> None:
        """The head is new as a whole or not at all: a checkpoint with some of ``head`` / ``fc_norm`` but not the
        rest (a token-pooling classifier's head for an average-pooling one, a head without its norm) is refused."""
        head = {k for k in self.state_dict() if k.startswith(("head.", "fc_norm."))}
        lacking = head & set(missing)
        if lacking and lacking != head:
            raise ValueError(f"the checkpoint has part of the classification head but not {sorted(lacking)}: a "
                             f"classifier of another pooling (this one: global_pool={self.global_pool!r}) or a "
                             f"damaged file. Build the classifier to match, or drop the checkpoint's head")

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, 1 + L, D) from ``forward_features`` -> pooled features (B, D)."""
        if self.global_pool == "avg":
            return self.fc_norm(x[:, self.num_prefix_tokens:].mean(dim=1))
        return x[:, 0]

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, D) -> logits (B, num_classes)."""
        return self.head(self.head_drop(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> logits (B, num_classes)."""
        return self.forward_head(self.pool(self.forward_features(x)))
