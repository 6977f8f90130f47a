"""mmseg's layer-decay optimizer constructors, taught the ``layer_id()`` of ``MAEViT``, under names of their own.

mmseg's stock BEiT / MAE configs name ``constructor='LayerDecayOptimizerConstructor'`` with
``paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.65)``. mmseg assigns layers by parameter name
(``backbone.layers.N``); our blocks are ``backbone.blocks.N``, so mmseg's rule would put every block in the
top layer (lr scale 1) and only the patch embedding and position table at 0.65^13, silently.

``MAEViTLayerDecayOptimizerConstructor`` (mmseg's ``LayerDecayOptimizerConstructor``: ``layer_decay_rate``) and
``MAEViTLearningRateDecayOptimizerConstructor`` (mmseg's ``LearningRateDecayOptimizerConstructor``:
``decay_rate``, ``decay_type='layer_wise'``) take the same ``paramwise_cfg`` as mmseg's and are registered in
mmseg's ``OPTIM_WRAPPER_CONSTRUCTORS`` under these names when ``downstream`` is imported; mmseg's own names
keep mmseg's classes. A model whose backbone is an ``MAEViT`` goes to
:func:`mae_backbone.param_groups.param_groups` (the same grouping as ``LayerDecayOptimWrapperConstructor``:
block i at ``rate ** (depth - i)``, patch embedding / position table at ``rate ** (depth + 1)``, heads and
neck at 1); any other backbone keeps mmseg's own rule unchanged. A config that pairs mmseg's name with an
``MAEViT`` backbone is refused when the runner is built
(:func:`mae_backbone.engine.launch.check_layer_decay_constructor`).
Weight decay follows mmseg's constructor as it behaves: no decay on 1-D tensors and biases only (its
``name in ('pos_embed', 'cls_token')`` test sees ``backbone.``-prefixed names and never matches), the
``'norm_bias'`` rule; ``paramwise_cfg.weight_decay_rule`` picks another named rule.
"""
from __future__ import annotations

from mmengine.logging import print_log
from mmseg.engine.optimizers.layer_decay_optimizer_constructor import (
    LayerDecayOptimizerConstructor as _MMSegLayerDecay,
    LearningRateDecayOptimizerConstructor as _MMSegLRDecay,
)

from mae_backbone.param_groups import check_weight_decay_rule, param_groups

from .backbone import MAEViT


def _mae_vit_param_groups(self, params: list, module) -> bool:
    backbone = getattr(module, "backbone", None)
    if not isinstance(backbone, MAEViT):
        return False
    cfg = self.paramwise_cfg
    decay_type = cfg.get("decay_type", "layer_wise")
    if decay_type not in ("layer_wise", "layer_wise_vit"):
        raise ValueError(f"paramwise_cfg decay_type={decay_type!r}: MAEViT supports layer-wise decay only "
                         f"(decay_type='layer_wise')")
    num_layers = cfg.get("num_layers")
    if num_layers is not None and num_layers != backbone.depth:
        raise ValueError(f"paramwise_cfg num_layers={num_layers} but the MAEViT backbone has {backbone.depth} "
                         f"blocks: set paramwise_cfg.num_layers={backbone.depth}")
    rate = float(cfg.get("decay_rate", 1.0))
    rule = check_weight_decay_rule(cfg.get("weight_decay_rule", "norm_bias"))
    groups = param_groups(module, weight_decay=self.base_wd or 0.0, layer_decay=rate, weight_decay_rule=rule)
    for g in groups:
        g["lr"] = self.base_lr * g["lr_scale"]
        names = g.pop("names")
        print_log(f"layer {g['layer_id']} (lr scale {g['lr_scale']:.3g}, weight decay {g['weight_decay']}): "
                  f"{len(names)} tensors, e.g. {names[0]}", logger="current")
    params.extend(groups)
    return True


class MAEViTLearningRateDecayOptimizerConstructor(_MMSegLRDecay):
    """mmseg's ``LearningRateDecayOptimizerConstructor``; MAEViT backbones get their ``layer_id()`` grouping
    (module docstring)."""

    def add_params(self, params, module, **kwargs):
        if not _mae_vit_param_groups(self, params, module):
            super().add_params(params, module, **kwargs)


class MAEViTLayerDecayOptimizerConstructor(_MMSegLayerDecay):
    """mmseg's BEiT-era ``LayerDecayOptimizerConstructor`` (``layer_decay_rate``); MAEViT backbones as above."""

    def add_params(self, params, module, **kwargs):
        if not _mae_vit_param_groups(self, params, module):
            super().add_params(params, module, **kwargs)
