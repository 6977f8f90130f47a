"""Optimizer constructor driven by the model's ``layer_id()`` / ``no_weight_decay()``."""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from typing import Optional

from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.optim.scheduler import CosineAnnealingLR
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS, PARAM_SCHEDULERS
from timm.optim import Lars
from torch import nn

from ..param_groups import DEFAULT_WEIGHT_DECAY_RULE, WEIGHT_DECAY_RULES, check_weight_decay_rule, param_groups
from ..precision import canonical_name, resolve_precision
from .hooks import bare_model

logger = logging.getLogger(__name__)

FUSABLE = ("Adam", "AdamW")


def default_fused(cfg: dict, params) -> dict:
    """``fused=True`` for torch Adam / AdamW unless the config chose ``fused`` or ``foreach``: one kernel over all
    tensors instead of a loop of small ops (docs/benchmarks.md measures it; the same update within float
    rounding, tested). Left off where torch's fused
    kernel cannot run: tensors that are not floating point on CPU / CUDA."""
    if cfg.get("type") not in FUSABLE or "fused" in cfg or "foreach" in cfg:
        return cfg
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    if tensors and all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors):
        cfg = dict(cfg, fused=True)
    return cfg


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Builds ``optimizer`` over :func:`~mae_backbone.param_groups.param_groups`.

    ``paramwise_cfg=dict(layer_decay=0.65, weight_decay_rule='norm_bias_declared')``: layer-wise lr decay (1.0 =
    none, as in MAE pretraining) and which tensors are exempt from ``optimizer.weight_decay``, by the name of
    the published rule (:data:`~mae_backbone.param_groups.WEIGHT_DECAY_RULES`; default: norms, biases and the
    model's ``no_weight_decay()`` names). Adam / AdamW run torch's fused kernel unless the optimizer config
    sets ``fused`` or ``foreach`` (:func:`default_fused`).
    """

    def __call__(self, model: nn.Module):
        model = bare_model(model)
        paramwise = dict(self.paramwise_cfg or {})
        unknown = set(paramwise) - {"layer_decay", "weight_decay_rule"}
        if unknown:
            raise ValueError(f"LayerDecayOptimWrapperConstructor understands paramwise_cfg=dict(layer_decay=..., "
                             f"weight_decay_rule=...) only, got {sorted(unknown)}: weight-decay exemptions are "
                             f"one of the named rules {sorted(WEIGHT_DECAY_RULES)}; use "
                             f"DefaultOptimWrapperConstructor for name-based rules")
        cfg = self.optimizer_cfg.copy()
        lr, wd = cfg.get("lr"), cfg.get("weight_decay", 0.0)
        if lr is None:
            raise ValueError("optimizer lr is None: set optim_wrapper.optimizer.lr, or set blr in the "
                             "config and start through tools/train.py, which derives lr = blr * batch / 256")
        layer_decay = float(paramwise.get("layer_decay", 1.0))
        rule = check_weight_decay_rule(paramwise.get("weight_decay_rule", DEFAULT_WEIGHT_DECAY_RULE))
        groups = param_groups(model, weight_decay=wd, layer_decay=layer_decay, weight_decay_rule=rule)
        for g in groups:
            g["lr"] = lr * g["lr_scale"]
            g.pop("names")
        cfg = default_fused(cfg, groups)
        cfg["params"] = groups
        optimizer = OPTIMIZERS.build(cfg)
        n_decay = sum(p.numel() for g in groups if g["weight_decay"] for p in g["params"])
        n_all = sum(p.numel() for g in groups for p in g["params"])
        logger.info("optimizer %s%s: %d groups, %d trainable tensors, %.2fM params (%.2fM with weight decay), "
                    "layer_decay %.3g, weight_decay_rule %s", cfg["type"], " (fused)" if cfg.get("fused") else "", len(groups),
                    sum(len(g["params"]) for g in groups), n_all / 1e6, n_decay / 1e6, layer_decay, rule)
        wrapper_cfg = self.optim_wrapper_cfg.copy()
        wrapper_cfg.setdefault("type", "OptimWrapper")
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))


@OPTIMIZERS.register_module(name="LARS")
class MAELars(Lars):
    """timm's ``Lars`` with the official MAE rule (util/lars.py, paper Table 10 linear probing).

    The trust ratio applies to every tensor with ndim > 1 and never to biases / norm parameters,
    whatever the weight decay (timm's ``Lars`` adapts only when weight_decay != 0 unless
    ``always_adapt``): each parameter group is split by dimensionality and flagged accordingly.
    """

    def __init__(self, params, **kwargs):
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [dict(params=groups)]
        split = []
        for g in groups:
            tensors = list(g["params"])
            for matrices in (True, False):
                chosen = [t for t in tensors if (t.ndim > 1) == matrices]
                if chosen:
                    split.append({**g, "params": chosen, "always_adapt": matrices})
        super().__init__(split, **kwargs)


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Mixed precision by ``torch.autocast`` on CPU or GPU, without loss scaling (for bfloat16).

    mmengine's ``AmpOptimWrapper`` refuses CPUs and always scales the loss; bfloat16 has float32's range and
    needs no scaling. What bfloat16 means on the device is :func:`mae_backbone.precision.resolve_precision`'s
    answer: fp32 (with a warning) on a CPU or GPU without native bf16 (``build_runner`` turns a config's
    request into fp16 with loss scaling on such GPUs before this is built).
    """

    def __init__(self, dtype: str = "bfloat16", device_type: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        if canonical_name(dtype) != "bf16":
            raise ValueError(f"AutocastOptimWrapper runs bfloat16 only (got {dtype!r}): float16 needs loss "
                             f"scaling, use type='AmpOptimWrapper', dtype='float16' on CUDA (--amp fp16)")
        if device_type is None:
            from mmengine.device import get_device
            device_type = get_device()  # cuda, npu, mlu, musa, mps or cpu: where mmengine puts the model
        self.precision = resolve_precision(dtype, device_type, loss_scaling=False)
        self.dtype = self.precision.dtype  # None when the device runs fp32
        self.device_type = self.precision.device_type

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), self.precision.autocast():
            yield


@PARAM_SCHEDULERS.register_module()
class LayerScaledCosineAnnealingLR(CosineAnnealingLR):
    """Cosine annealing whose floor is ``eta_min`` times each group's ``lr_scale`` (layer-wise lr decay).

    The official MAE schedule (facebookresearch/mae util/lr_sched.py ``adjust_learning_rate``) anneals
    ``min_lr + (lr - min_lr) * cos_term`` and then multiplies by the group's ``lr_scale``, so a group's floor is
    ``min_lr * lr_scale``. mmengine's ``CosineAnnealingLR(eta_min=...)`` gives every group the same absolute
    floor: with layer decay the lowest groups of a deep model start *below* it (ViT-H fine-tuning: 4e-3 *
    0.75 ** 33 = 3e-7 < 1e-6) and their lr would rise during training. Groups without ``lr_scale`` use 1.
    """

    def _floors(self):
        return [self.eta_min * group.get("lr_scale", 1.0) for group in self.optimizer.param_groups]

    def _get_value(self) -> list:
        groups = self.optimizer.param_groups
        if self.eta_min_ratio is not None:  # a ratio of each group's own start value is per group already
            return super()._get_value()
        if self.last_step == 0:
            return [group[self.param_name] for group in groups]
        floors = self._floors()
        if (self.last_step - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [group[self.param_name] + (base - floor) * (1 - math.cos(math.pi / self.T_max)) / 2
                    for base, floor, group in zip(self.base_values, floors, groups)]
        ratio = ((1 + math.cos(math.pi * self.last_step / self.T_max))
                 / (1 + math.cos(math.pi * (self.last_step - 1) / self.T_max)))
        return [ratio * (group[self.param_name] - floor) + floor for floor, group in zip(floors, groups)]
