"""A config's mixed precision made to fit the device: ``--amp`` and every run built by ``build_runner``.

Where a config asks for precision: ``optim_wrapper`` (``AutocastOptimWrapper`` bf16, ``AmpOptimWrapper`` fp16 /
bf16), the top-level ``autocast_modules = dict(backbone='bfloat16', ...)`` for parts of the model
(:func:`mae_backbone.precision.autocast_modules`; detection: mmcv's RoIAlign / NMS have no bf16 kernels, so only
the backbone and neck autocast and the heads stay fp32), and an FSDP strategy's ``model_wrapper.mixed_precision``.
:func:`set_amp` reads the request (or takes ``--amp``), asks :func:`mae_backbone.precision.resolve_precision` what
it means on this device, and writes the answer back: into the places that asked (a config's own request), or into
every place that can take it (``--amp``).
"""
from __future__ import annotations

from typing import Optional

from mmengine.config import Config
from mmengine.logging import print_log

from ..precision import Precision, canonical_name, resolve_precision

AMP_CHOICES = ("bf16", "fp16", "off")
# optimizer wrappers this understands, and the arguments only each of them takes
_WRAPPER_KEYS = {"OptimWrapper": (), "AutocastOptimWrapper": ("dtype", "device_type"),
                 "AmpOptimWrapper": ("dtype", "loss_scale", "use_fsdp")}


def _parts(cfg: Config) -> dict:
    """The config's ``autocast_modules``: {submodule path: precision or None}."""
    return cfg.get("autocast_modules") or {}


def _fsdp_precision(cfg: Config):
    """The FSDP strategy's ``mixed_precision`` dict (None when the config sets none)."""
    return (((cfg.get("strategy") or {}).get("model_wrapper") or {}).get("mixed_precision")) or None


def _parts_request(cfg: Config) -> Optional[str]:
    """What the parts in ``autocast_modules`` ask for (the first that asks), or None."""
    return next((canonical_name(v) for v in _parts(cfg).values() if canonical_name(v) != "fp32"), None)


def _set_parts(cfg: Config, value: Optional[str], every: bool) -> bool:
    """Set the parts that asked (``every``: all listed parts) to ``value``; whether any part was set."""
    parts = _parts(cfg)
    chosen = [k for k, v in parts.items() if every or canonical_name(v) != "fp32"]
    for key in chosen:
        cfg.autocast_modules[key] = value
    return bool(chosen)


def requested_precision(cfg: Config) -> str:
    """What the config asks for: ``bf16``, ``fp16`` or ``fp32`` (the optimizer wrapper first, then the parts,
    then FSDP's parameter dtype)."""
    ow = cfg.get("optim_wrapper", {}) or {}
    kind = ow.get("type", "OptimWrapper")
    if kind == "AutocastOptimWrapper":
        return canonical_name(ow.get("dtype", "bfloat16"))
    if kind == "AmpOptimWrapper":
        return canonical_name(ow.get("dtype") or "float16")
    return _parts_request(cfg) or canonical_name((_fsdp_precision(cfg) or {}).get("param_dtype"))


def _wrapper_kind(kind: str, prec: Precision, explicit: bool, parts: bool) -> str:
    if prec.name == "fp16":
        return "AmpOptimWrapper"  # anything in fp16 needs the loss scaled
    if prec.name == "fp32":
        return "OptimWrapper"
    if explicit:
        return "OptimWrapper" if parts else "AutocastOptimWrapper"
    if kind == "AmpOptimWrapper" and prec.device_type == "cpu":
        return "AutocastOptimWrapper"  # mmengine's AMP wrapper refuses CPUs; bf16 needs no loss scale anyway
    return kind  # bf16 as the config asked: its own wrapper (autocast, AMP in bf16, or parts / FSDP in bf16)


def _set_wrapper(ow, kind: str, prec: Precision) -> None:
    old = ow.get("type", "OptimWrapper")
    if kind != old:
        for key in _WRAPPER_KEYS[old]:
            ow.pop(key, None)
        ow.type = kind
    if kind == "AmpOptimWrapper" and prec.name == "fp16":
        ow.dtype = "float16"
        ow.setdefault("loss_scale", "dynamic")  # a config's own loss scale (e.g. 512.) stays
    elif kind == "AutocastOptimWrapper":
        ow.dtype = "bfloat16"


def set_amp(cfg: Config, amp: Optional[str] = None, device: Optional[str] = None) -> Precision:
    """Make ``cfg`` run ``amp`` (``bf16`` / ``fp16`` / ``off``; None: what the config asks for) as the device
    allows (:func:`~mae_backbone.precision.resolve_precision`); returns the resolved precision.

    bf16 -> ``AutocastOptimWrapper`` (a config with ``autocast_modules``: those parts, the rest fp32);
    fp16 -> ``AmpOptimWrapper`` with dynamic loss scaling (a config's own ``loss_scale`` is kept) over the whole
    model (mmcv's ops have fp16 kernels); fp32 -> ``OptimWrapper``. An FSDP strategy's ``mixed_precision`` follows.
    A config's own request only changes the places that asked; ``amp`` sets them all and refuses an optimizer
    wrapper type it does not know (with such a wrapper, only the parts in ``autocast_modules`` follow the device).
    A config's fp16 on a CPU runs fp32 with a warning (``--amp fp16`` is refused)."""
    if amp is not None and amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {AMP_CHOICES}, got {amp!r}")
    explicit = amp is not None
    ow = cfg.get("optim_wrapper")
    kind = ow.get("type", "OptimWrapper") if ow is not None else None
    unknown = kind is not None and kind not in _WRAPPER_KEYS
    if unknown and explicit:
        raise ValueError(f"--amp {amp} cannot change optim_wrapper type {kind!r} (it knows "
                         f"{', '.join(_WRAPPER_KEYS)}): set the precision in the config instead")
    if device is None:
        from mmengine.device import get_device
        device = get_device()
    if unknown:  # not ours to change: only the parts in autocast_modules follow the device
        prec = resolve_precision(_parts_request(cfg) or "fp32", device, loss_scaling=False)
        _set_parts(cfg, prec.dtype_name, every=False)
        return prec
    want = canonical_name(amp) if explicit else requested_precision(cfg)
    prec = resolve_precision(want, device, loss_scaling=True, strict=explicit)
    parts = _set_parts(cfg, prec.dtype_name if prec.name == "bf16" else None, every=explicit)
    if ow is not None:
        _set_wrapper(ow, _wrapper_kind(kind, prec, explicit, parts), prec)
    mp = _fsdp_precision(cfg)
    if mp is not None:
        cfg.strategy.model_wrapper.mixed_precision = None if prec.dtype is None else dict(
            mp, param_dtype=prec.dtype_name, reduce_dtype=mp.get("reduce_dtype", "float32"),
            buffer_dtype=mp.get("buffer_dtype", "float32"))
    if prec.name != want or explicit:
        print_log(f"precision: {want} requested, {prec.name} on {prec.device_type}"
                  + (f" ({prec.reason})" if prec.reason else ""), logger="current")
    return prec
