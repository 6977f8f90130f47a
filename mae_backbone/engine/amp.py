"""A config's mixed precision made to fit the device: ``--amp`` and every run built by ``build_runner``.

Where a config asks for precision: ``optim_wrapper`` (``AutocastOptimWrapper`` bf16, ``AmpOptimWrapper`` fp16 /
bf16), the ``autocast_dtype`` of an ``MAEViT`` backbone and a ``ViTDetSimplePyramid`` neck (detection: mmcv's
RoIAlign / NMS have no bf16 kernels, so only those parts autocast and the heads stay fp32), and an FSDP
strategy's ``model_wrapper.mixed_precision``. :func:`set_amp` reads the request (or takes ``--amp``), asks
:func:`mae_backbone.precision.resolve_precision` what it means on this device, and writes the answer into each
of those places, so that they agree.
"""
from __future__ import annotations

from typing import Optional

from mmengine.config import Config
from mmengine.logging import print_log

from ..precision import Precision, canonical_name, resolve_precision

AMP_CHOICES = ("bf16", "fp16", "off")
_PART_TYPES = {"backbone": ("MAEViT",), "neck": ("ViTDetSimplePyramid",)}  # parts that autocast themselves


def _autocast_parts(cfg: Config) -> list:
    """The model parts that autocast their own forward (detection: MAEViT backbone and ViTDet neck)."""
    model = cfg.get("model", {})
    if model.get("backbone", {}).get("type") != "MAEViT":
        return []
    return [model[p] for p, types in _PART_TYPES.items() if model.get(p, {}).get("type") in types]


def requested_precision(cfg: Config) -> str:
    """What the config asks for: ``bf16``, ``fp16`` or ``fp32`` (the optimizer wrapper first, then the parts)."""
    ow = cfg.get("optim_wrapper", {}) or {}
    kind = ow.get("type", "OptimWrapper")
    if kind == "AutocastOptimWrapper":
        return canonical_name(ow.get("dtype", "bfloat16"))
    if kind == "AmpOptimWrapper":
        return canonical_name(ow.get("dtype") or "float16")
    for part in _autocast_parts(cfg):
        if part.get("autocast_dtype"):
            return canonical_name(part.autocast_dtype)
    fsdp = (cfg.get("strategy") or {}).get("model_wrapper", {}) or {}
    return canonical_name((fsdp.get("mixed_precision") or {}).get("param_dtype"))


def _set_wrapper(ow, kind: str, **fields) -> None:
    for key in ("dtype", "loss_scale", "device_type"):
        ow.pop(key, None)
    ow.type = kind
    ow.update(fields)


def set_amp(cfg: Config, amp: Optional[str] = None, device: Optional[str] = None) -> Optional[Precision]:
    """Make ``cfg`` run ``amp`` (``bf16`` / ``fp16`` / ``off``; None: what the config asks for) as the device
    allows (:func:`~mae_backbone.precision.resolve_precision`); returns the resolved precision, or None for a
    config without an ``optim_wrapper`` of a kind this understands and no ``amp`` given.

    bf16 -> ``AutocastOptimWrapper`` (detection: the backbone / neck ``autocast_dtype``, heads fp32);
    fp16 -> ``AmpOptimWrapper`` with dynamic loss scaling over the whole model (mmcv's ops have fp16 kernels);
    fp32 -> ``OptimWrapper``. An FSDP strategy's ``mixed_precision.param_dtype`` follows."""
    if amp is not None and amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {AMP_CHOICES}, got {amp!r}")
    ow = cfg.get("optim_wrapper")
    if amp is None and (ow is None or ow.get("type", "OptimWrapper") not in
                        ("OptimWrapper", "AutocastOptimWrapper", "AmpOptimWrapper")):
        return None
    if device is None:
        from mmengine.device import get_device
        device = get_device()
    want = canonical_name(amp) if amp is not None else requested_precision(cfg)
    prec = resolve_precision(want, device, loss_scaling=True)
    parts = _autocast_parts(cfg)
    for part in parts:
        part.autocast_dtype = prec.dtype_name if prec.name == "bf16" else None
    if ow is not None:
        if prec.name == "fp16":
            _set_wrapper(ow, "AmpOptimWrapper", dtype="float16", loss_scale="dynamic")
        elif prec.name == "bf16" and not parts:
            _set_wrapper(ow, "AutocastOptimWrapper", dtype="bfloat16")
        else:
            _set_wrapper(ow, "OptimWrapper")
    _set_fsdp_precision(cfg, prec)
    if prec.name != want or amp is not None:
        print_log(f"precision: {want} requested, {prec.name} on {prec.device_type}"
                  + (f" ({prec.reason})" if prec.reason else ""), logger="current")
    return prec


def _set_fsdp_precision(cfg: Config, prec: Precision) -> None:
    """FSDP's own mixed precision (parameters all-gathered in bf16 / fp16) follows the resolved precision;
    gradients are reduced in float32 either way."""
    strategy = cfg.get("strategy") or {}
    wrapper = strategy.get("model_wrapper") or {}
    if "mixed_precision" not in wrapper:
        return
    if prec.dtype is None:
        wrapper.pop("mixed_precision")
    else:
        mp = dict(wrapper.mixed_precision or {})
        mp["param_dtype"] = prec.dtype_name
        mp.setdefault("reduce_dtype", "float32")
        mp.setdefault("buffer_dtype", "float32")
        wrapper.mixed_precision = mp
