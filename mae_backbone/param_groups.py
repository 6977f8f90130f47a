"""Optimizer parameter groups: weight-decay exemptions and layer-wise lr decay.

Driven entirely by the model's own ``layer_id(name)`` and ``no_weight_decay()``
(BEiT / official MAE ``param_groups_lrd``): a parameter in layer ``i`` of a model
with ``depth`` blocks gets ``lr_scale = layer_decay ** (depth + 1 - i)``. Tensors
with one dimension (norms, biases) and the model's ``no_weight_decay()`` names get
no weight decay.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

from torch import nn

# path segments torch's wrappers insert into parameter names: FSDP units (use_orig_params=True), activation
# checkpoint wrappers, torch.compile
_WRAPPER_SEGMENTS = re.compile(r"(^|\.)(_fsdp_wrapped_module|_checkpoint_wrapped_module|_orig_mod)(?=\.|$)")


def clean_name(name: str) -> str:
    """A parameter / module name without torch wrappers' segments: ``model._fsdp_wrapped_module.blocks.0.
    _fsdp_wrapped_module.attn.qkv.weight`` -> ``model.blocks.0.attn.qkv.weight``."""
    return _WRAPPER_SEGMENTS.sub("", name).lstrip(".")


def find_described_module(model: nn.Module) -> Tuple[str, Optional[nn.Module]]:
    """The outermost submodule that describes itself (has ``layer_id`` and ``no_weight_decay``)."""
    for name, module in model.named_modules():
        name = clean_name(name)
        if callable(getattr(module, "layer_id", None)) and callable(getattr(module, "no_weight_decay", None)):
            return (name + "." if name else ""), module
    return "", None


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> List[Dict]:
    """Groups ``dict(params, weight_decay, lr_scale, layer_id, names)`` for trainable parameters.

    Parameters outside the described backbone (heads, necks) sit in the top layer
    (``lr_scale`` 1). Frozen parameters are left out. Names are read through torch's wrappers (FSDP with
    ``use_orig_params=True``, activation-checkpoint wrappers, ``torch.compile``): :func:`clean_name`.
    """
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    prefix, backbone = find_described_module(model)
    depth = getattr(backbone, "depth", 0)
    no_decay = backbone.no_weight_decay() if backbone is not None else set()
    groups: Dict[Tuple[int, bool], Dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        name = clean_name(name)
        inner = name[len(prefix):] if backbone is not None and name.startswith(prefix) else None
        layer = backbone.layer_id(inner) if inner is not None else depth + 1
        decay = not (p.ndim <= 1 or (inner is not None and inner in no_decay) or name.endswith(".bias"))
        g = groups.setdefault((layer, decay), dict(
            params=[], names=[], layer_id=layer, weight_decay=weight_decay if decay else 0.0,
            lr_scale=layer_decay ** (depth + 1 - layer)))
        g["params"].append(p)
        g["names"].append(name)
    return [groups[k] for k in sorted(groups)]
