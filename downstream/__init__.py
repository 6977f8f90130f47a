"""Registration of mae-backbone into mmdet and mmsegmentation.

``import downstream`` (or ``custom_imports=dict(imports=['downstream'])`` in a config) registers
``MAEViT`` (backbone) and ``ViTDetSimplePyramid`` (neck) in mmdet's and mmseg's ``MODELS`` when
those packages are installed, ``PadToCanvas`` in mmdet's ``TRANSFORMS`` (the ViTDet test canvas),
``CheckSegLabels`` in mmseg's ``TRANSFORMS``, ``LN2d`` (channel LayerNorm for ``norm_cfg``) in mmengine's
``MODELS``, ``SegClassCountCheckHook`` in mmengine's ``HOOKS``, plus mae-backbone's mmengine pieces (the
``layer_id()``-driven ``LayerDecayOptimWrapperConstructor``, the bf16 ``AutocastOptimWrapper``, hooks).

In mmseg's ``OPTIM_WRAPPER_CONSTRUCTORS`` it adds ``MAEViTLayerDecayOptimizerConstructor`` and
``MAEViTLearningRateDecayOptimizerConstructor`` (:mod:`downstream.mmseg_optim`): mmseg's layer-decay
constructors that give an ``MAEViT`` backbone its ``layer_id()`` grouping. mmseg's own
``LayerDecayOptimizerConstructor`` / ``LearningRateDecayOptimizerConstructor`` stay as mmseg registered them;
pairing one of them with an ``MAEViT`` backbone is refused when the runner is built
(:func:`mae_backbone.engine.launch.check_layer_decay_constructor`).

Nothing registered here replaces another registration: each name is added to a registry only when that
registry does not hold it yet (importing again changes nothing), and a name already taken by another
package's class raises :class:`RegistrationConflict` instead of overriding it.
"""
from __future__ import annotations

import importlib

import mae_backbone.engine  # noqa: F401  (optimizer constructor, wrappers, hooks)
from mae_backbone.models.pyramid import LayerNorm2d
from mmengine.registry import HOOKS as _HOOKS
from mmengine.registry import MODELS as _MMENGINE_MODELS

from .backbone import MAEViT
from .detection import PadToCanvas
from .necks import ViTDetSimplePyramid
from .segmentation import CheckSegLabels, SegClassCountCheckHook

REGISTERED = []


class RegistrationConflict(KeyError):
    """A name ``downstream`` registers is already taken in that registry by another package's class."""

    def __str__(self):  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


def _ours(taken, cls) -> bool:
    # the same class, or the same class from a reloaded module
    return taken is cls or (getattr(taken, "__module__", None) == cls.__module__
                            and getattr(taken, "__qualname__", None) == cls.__qualname__)


def register(registry, cls, name: str = None) -> None:
    """Add ``cls`` to ``registry`` as ``name`` (default: its class name) unless that registry already holds it.

    Only the registry's own ``module_dict`` is consulted (not its parents or children). A name taken by
    another class raises :class:`RegistrationConflict`, naming both: nothing is overridden."""
    name = name or cls.__name__
    taken = registry.module_dict.get(name)
    if taken is None:
        registry.register_module(name=name, module=cls)
    elif not _ours(taken, cls):
        raise RegistrationConflict(
            f"cannot register {cls.__module__}.{cls.__qualname__} as {name!r} in the {registry.name!r} registry "
            f"(scope {registry.scope!r}): the name is taken by {getattr(taken, '__module__', '?')}."
            f"{getattr(taken, '__qualname__', taken)}. mae-backbone does not override another package's "
            f"registration: remove the other registration, or import only one of the two packages")


# channel LayerNorm for conv heads: norm_cfg=dict(type='LN2d') (ViTDet's heads); mmcv's build_norm_layer
# looks it up through the calling scope's registry, whose root is mmengine's
register(_MMENGINE_MODELS, LayerNorm2d, "LN2d")

for _pkg in ("mmdet", "mmseg"):
    try:
        _registry = importlib.import_module(f"{_pkg}.registry").MODELS
    except ImportError:
        continue
    for _cls in (MAEViT, ViTDetSimplePyramid):
        register(_registry, _cls)
    REGISTERED.append(_pkg)
    if _pkg == "mmdet":
        register(importlib.import_module("mmdet.registry").TRANSFORMS, PadToCanvas)

try:
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as _SEG_CONSTRUCTORS
    from mmseg.registry import TRANSFORMS as _SEG_TRANSFORMS
except ImportError:
    pass
else:
    from . import mmseg_optim as _mmseg_optim
    register(_SEG_TRANSFORMS, CheckSegLabels)
    # under our own names, beside mmseg's: MAEViT backbones get their layer_id() grouping, others mmseg's rule
    for _cls in (_mmseg_optim.MAEViTLayerDecayOptimizerConstructor,
                 _mmseg_optim.MAEViTLearningRateDecayOptimizerConstructor):
        register(_SEG_CONSTRUCTORS, _cls)
register(_HOOKS, SegClassCountCheckHook)

__all__ = ["MAEViT", "PadToCanvas", "ViTDetSimplePyramid", "CheckSegLabels", "SegClassCountCheckHook", "REGISTERED",
           "RegistrationConflict", "register"]
