"""Registration of mae-backbone into mmdet and mmsegmentation.

``import downstream`` (or ``custom_imports=dict(imports=['downstream'])`` in a config) registers
``MAEViT`` (backbone) and ``ViTDetSimplePyramid`` (neck) in mmdet's and mmseg's ``MODELS`` when
those packages are installed, ``PadToCanvas`` in mmdet's ``TRANSFORMS`` (the ViTDet test canvas), ``LN2d`` (channel LayerNorm for ``norm_cfg``) in mmengine's, plus mae-backbone's mmengine pieces (the ``layer_id()``-driven
``LayerDecayOptimWrapperConstructor``, the bf16 ``AutocastOptimWrapper``, hooks), and, over mmseg's
``LayerDecayOptimizerConstructor`` / ``LearningRateDecayOptimizerConstructor``, versions that give an
``MAEViT`` backbone its ``layer_id()`` grouping (mmseg's name-based rule does not know our block names).
"""
from __future__ import annotations

import importlib

import mae_backbone.engine  # noqa: F401  (optimizer constructor, wrappers, hooks)
from mae_backbone.models.pyramid import LayerNorm2d
from mmengine.registry import MODELS as _MMENGINE_MODELS

from .backbone import MAEViT
from .detection import PadToCanvas
from .necks import ViTDetSimplePyramid
from .segmentation import CheckSegLabels, SegClassCountCheckHook

REGISTERED = []

# channel LayerNorm for conv heads: norm_cfg=dict(type='LN2d') (ViTDet's heads); mmcv's build_norm_layer
# looks it up through the calling scope's registry, whose root is mmengine's
if _MMENGINE_MODELS.get("LN2d") is None:
    _MMENGINE_MODELS.register_module(name="LN2d", module=LayerNorm2d)

for _pkg in ("mmdet", "mmseg"):
    try:
        _registry = importlib.import_module(f"{_pkg}.registry").MODELS
    except ImportError:
        continue
    for _cls in (MAEViT, ViTDetSimplePyramid):
        _registry.register_module(name=_cls.__name__, module=_cls, force=True)
    REGISTERED.append(_pkg)
    if _pkg == "mmdet":
        importlib.import_module("mmdet.registry").TRANSFORMS.register_module(
            name="PadToCanvas", module=PadToCanvas, force=True)

try:
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as _SEG_CONSTRUCTORS
    from mmseg.registry import TRANSFORMS as _SEG_TRANSFORMS
except ImportError:
    pass
else:
    from . import mmseg_optim as _mmseg_optim
    _SEG_TRANSFORMS.register_module(name="CheckSegLabels", module=CheckSegLabels, force=True)
    for _cls in (_mmseg_optim.LayerDecayOptimizerConstructor, _mmseg_optim.LearningRateDecayOptimizerConstructor):
        # over mmseg's own: MAEViT backbones get their layer_id() grouping, others mmseg's rule unchanged
        _SEG_CONSTRUCTORS.register_module(name=_cls.__name__, module=_cls, force=True)
from mmengine.registry import HOOKS as _HOOKS  # noqa: E402
if _HOOKS.get("SegClassCountCheckHook") is None:
    _HOOKS.register_module(name="SegClassCountCheckHook", module=SegClassCountCheckHook)

__all__ = ["MAEViT", "PadToCanvas", "ViTDetSimplePyramid", "CheckSegLabels", "SegClassCountCheckHook", "REGISTERED"]
