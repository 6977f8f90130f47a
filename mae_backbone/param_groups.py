"""Optimizer parameter groups: weight-decay exemptions and layer-wise lr decay.

Driven by the model's own ``layer_id(name)`` and ``no_weight_decay()`` (BEiT / official MAE
``param_groups_lrd``): a parameter in layer ``i`` of a model with ``depth`` blocks gets
``lr_scale = layer_decay ** (depth + 1 - i)``. Which tensors are exempt from weight decay is a named rule,
because the published recipes differ (:data:`WEIGHT_DECAY_RULES`); each paper config names the rule of its
source.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

from torch import nn

# Which parameters get no weight decay. Each rule is the one a published code base applies:
WEIGHT_DECAY_RULES = {
    # facebookresearch/mae main_pretrain.py: timm 0.3.2 optim_factory.add_weight_decay(model, wd) with no skip
    # list (1-D tensors and *.bias only: cls_token and mask_token decay). mmseg's and BEiT's segmentation
    # LayerDecayOptimizerConstructor behave the same: their ``name in ('pos_embed', 'cls_token')`` test sees
    # 'backbone.'-prefixed names and never matches, so position tables, cls token and bias tables decay.
    "norm_bias": "1-D tensors (norm weights, biases) and *.bias",
    # facebookresearch/mae main_finetune.py: util/lr_decay.param_groups_lrd(no_weight_decay_list=
    # model.no_weight_decay()), timm's convention (cls_token, pos_embed; BEiT adds its bias tables).
    "norm_bias_declared": "1-D tensors, *.bias and the model's no_weight_decay() names",
    # detectron2 solver/build.py get_default_optimizer_params(weight_decay_norm=0.0, overrides={'pos_embed':
    # {'weight_decay': 0.0}}) as ViTDet's common/optim.py sets it: only parameters of torch's normalisation
    # layers and pos_embed are exempt; biases and relative-position tables decay. Channel LayerNorm2d (like
    # detectron2's own LayerNorm in the ViTDet neck / heads) is not a torch norm layer and decays too.
    "norm_layers_pos_embed": "parameters of torch normalisation layers, and pos_embed",
}
DEFAULT_WEIGHT_DECAY_RULE = "norm_bias_declared"
# torch's normalisation layers, as detectron2's get_default_optimizer_params lists them
NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm,
               nn.LocalResponseNorm)

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


def check_weight_decay_rule(rule: str) -> str:
    if rule not in WEIGHT_DECAY_RULES:
        raise ValueError(f"unknown weight_decay_rule {rule!r}; choose one of "
                         + "; ".join(f"{k!r} ({v})" for k, v in WEIGHT_DECAY_RULES.items()))
    return rule


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0,
                 weight_decay_rule: str = DEFAULT_WEIGHT_DECAY_RULE) -> List[Dict]:
    """Groups ``dict(params, weight_decay, lr_scale, layer_id, names)`` for trainable parameters.

    ``weight_decay_rule`` names which tensors get no weight decay (:data:`WEIGHT_DECAY_RULES`).

    Parameters outside the described backbone (heads, necks) sit in the top layer
    (``lr_scale`` 1). Frozen parameters are left out. Names are read through torch's wrappers (FSDP with
    ``use_orig_params=True``, activation-checkpoint wrappers, ``torch.compile``): :func:`clean_name`.
    """
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    check_weight_decay_rule(weight_decay_rule)
    prefix, backbone = find_described_module(model)
    depth = getattr(backbone, "depth", 0)
    declared = backbone.no_weight_decay() if backbone is not None else set()
    in_norm_layer = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS)
                     for p in m.parameters(recurse=False)} if weight_decay_rule == "norm_layers_pos_embed" else set()
    groups: Dict[Tuple[int, bool], Dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        name = clean_name(name)
        inner = name[len(prefix):] if backbone is not None and name.startswith(prefix) else None
        layer = backbone.layer_id(inner) if inner is not None else depth + 1
        if weight_decay_rule == "norm_layers_pos_embed":
            decay = not (id(p) in in_norm_layer or name.split(".")[-1] == "pos_embed")
        else:
            decay = not (p.ndim <= 1 or name.endswith(".bias")
                         or (weight_decay_rule == "norm_bias_declared" and inner is not None and inner in declared))
        g = groups.setdefault((layer, decay), dict(
            params=[], names=[], layer_id=layer, weight_decay=weight_decay if decay else 0.0,
            lr_scale=layer_decay ** (depth + 1 - layer)))
        g["params"].append(p)
        g["names"].append(name)
    return [groups[k] for k in sorted(groups)]
