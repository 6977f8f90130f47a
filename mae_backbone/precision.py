"""What a requested precision means on the device at hand: the one rule every user of mixed precision calls.

``resolve_precision('bf16', device)`` answers:

* CUDA with native bf16 (compute capability >= 8.0, Ampere and later) -> bf16 autocast;
* an older GPU -> fp16 autocast with loss scaling when the caller can scale the loss (an optimizer wrapper
  with a grad scaler), else fp32; with a warning either way;
* a CPU with native bf16 (AVX512-BF16 or AMX on x86, the BF16 extension on Arm) -> bf16 autocast;
* any other CPU -> fp32 with a warning: there torch emulates bf16 (a ViT-B MAE training step ran ~30x
  slower under bf16 autocast than in fp32 on an AVX2 EPYC);
* other device types (mps, xpu, ...) -> the request unchanged: torch decides there.

``fp16`` needs loss scaling (mmengine's ``AmpOptimWrapper``, on CUDA and the other accelerators it supports):
asked of a part that cannot scale the loss it is an error; on a CPU it is an error when asked for explicitly
(``--amp fp16``) and fp32 with a warning when a config asks for it (``strict=False``).
``fp32`` (also ``off`` / ``None`` / ``float32``) is always fp32. Each distinct fallback warns once per process.
"""
from __future__ import annotations

import contextlib
import functools
import os
import platform
import warnings
from dataclasses import dataclass
from typing import Optional, Union

import torch

NAMES = ("bf16", "fp16", "fp32")
_ALIASES = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16", "half": "fp16",
            "fp32": "fp32", "float32": "fp32", "off": "fp32", "none": "fp32"}
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
_WARNED = set()


def canonical_name(precision: Union[str, torch.dtype, None]) -> str:
    """``'bfloat16'`` / ``torch.bfloat16`` / ``'bf16'`` -> ``'bf16'`` (likewise fp16, fp32; None -> fp32)."""
    if precision is None:
        return "fp32"
    if isinstance(precision, torch.dtype):
        precision = str(precision).replace("torch.", "")
    name = _ALIASES.get(str(precision).lower())
    if name is None:
        raise ValueError(f"unknown precision {precision!r}: use one of bf16 / bfloat16, fp16 / float16, fp32 / off")
    return name


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` is what runs (``bf16`` / ``fp16`` / ``fp32``) on ``device_type``;
    ``requested`` what was asked for; ``reason`` says why they differ (empty when they do not)."""

    name: str
    requested: str
    device_type: str
    reason: str = ""

    @property
    def dtype(self) -> Optional[torch.dtype]:
        """The autocast dtype (None: fp32, no autocast)."""
        return _DTYPES[self.name]

    @property
    def dtype_name(self) -> Optional[str]:
        """``'bfloat16'`` / ``'float16'`` / None, as configs spell it."""
        return None if self.dtype is None else str(self.dtype).replace("torch.", "")

    @property
    def loss_scaling(self) -> bool:
        """fp16 gradients underflow without a loss scale."""
        return self.name == "fp16"

    def autocast(self):
        """``torch.autocast`` for this precision (a no-op context for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def _cpu_capabilities() -> dict:
    """The CPU's feature flags as torch's cpuinfo reads them (``torch.cpu.get_capabilities``, torch >= 2.9;
    the private per-feature helpers before that; ``/proc/cpuinfo`` last)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        return dict(get())
    caps = {}
    for flag, fn in (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_tile", "_is_amx_tile_supported")):
        if hasattr(torch.cpu, fn):
            caps[flag] = bool(getattr(torch.cpu, fn)())
    if not caps and os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
        caps = dict(avx512_bf16="avx512_bf16" in flags, amx_tile="amx_tile" in flags, bf16="bf16" in flags)
    caps.setdefault("architecture", platform.machine())
    return caps


# oneDNN (torch's CPU matmul / conv backend) can be capped below the hardware's ISA by its own documented
# variable; below AVX512_CORE_BF16 it emulates bf16 although the CPU has it
_ONEDNN_NATIVE_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "ALL")


def _onednn_isa_cap() -> Optional[str]:
    return os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")


@functools.lru_cache(maxsize=None)
def cpu_native_bf16() -> bool:
    """True when this CPU computes bf16 natively: AVX512-BF16 or AMX (x86), the BF16 extension (Arm)."""
    caps = _cpu_capabilities()
    if caps.get("architecture") in ("x86_64", "x86", "AMD64", "i686"):
        native = bool(caps.get("avx512_bf16") or caps.get("amx_bf16") or caps.get("amx_tile"))
        cap = _onednn_isa_cap()
        if native and cap and not cap.upper().startswith(_ONEDNN_NATIVE_BF16_ISAS):
            return False
        return native
    return bool(caps.get("bf16") or caps.get("sve_bf16"))


@functools.lru_cache(maxsize=None)
def cuda_native_bf16(index: int) -> bool:
    """True for GPUs of compute capability >= 8.0 (Ampere and later); earlier ones emulate bf16 or lack it."""
    return torch.cuda.get_device_capability(index) >= (8, 0)


def native_bf16(device: Union[str, torch.device, None] = None) -> bool:
    """Whether ``device`` (default: CUDA when available, else the CPU) computes bf16 natively."""
    device = _device(device)
    if device.type == "cuda":
        return cuda_native_bf16(device.index if device.index is not None else torch.cuda.current_device())
    if device.type == "cpu":
        return cpu_native_bf16()
    return True  # mps, xpu, ...: torch decides


def _device(device: Union[str, torch.device, None]) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _warn_once(key, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def resolve_precision(requested: Union[str, torch.dtype, None], device: Union[str, torch.device, None] = None,
                      loss_scaling: bool = True, strict: bool = True) -> Precision:
    """What ``requested`` (bf16 / fp16 / fp32) means on ``device`` (default: CUDA when available, else CPU).

    ``loss_scaling``: whether the caller can scale the loss (an optimizer wrapper with a grad scaler); when
    False, an old GPU asked for bf16 gets fp32 instead of fp16, and fp16 is refused. ``strict``: fp16 on a CPU
    is an error (an explicit request) rather than fp32 with a warning (a config's). See the module docstring."""
    want = canonical_name(requested)
    device = _device(device)
    kind = device.type
    if want == "fp32":
        return Precision("fp32", want, kind)
    if want == "fp16":
        return _resolve_fp16(device, loss_scaling, strict)
    if native_bf16(device):
        return Precision("bf16", want, kind)
    if kind == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        cc = ".".join(map(str, torch.cuda.get_device_capability(index)))
        got = "fp16" if loss_scaling else "fp32"
        reason = (f"this GPU (compute capability {cc}) has no native bf16 (needs >= 8.0): running {got}"
                  + (" with dynamic loss scaling" if loss_scaling else
                     " (this part cannot scale the loss; --amp fp16 runs the whole model in fp16)"))
    else:
        got = "fp32"
        isa = torch.backends.cpu.get_cpu_capability()
        cap = _onednn_isa_cap()
        reason = (f"this CPU ({isa}{', oneDNN capped at ' + cap if cap else ''}) has no native bf16 (AVX512-BF16 "
                  f"or AMX): torch would emulate it, many times slower than fp32, so running fp32")
    _warn_once((want, kind, got, device.index), f"precision {want} requested: {reason}")
    return Precision(got, want, kind, reason)


def _resolve_fp16(device: torch.device, loss_scaling: bool, strict: bool) -> Precision:
    if not loss_scaling:
        raise ValueError("fp16 needs loss scaling, which this part cannot do (it autocasts only its own forward): "
                         "use bf16 here, or --amp fp16, which runs the whole model in fp16 with loss scaling")
    if device.type != "cpu":
        return Precision("fp16", "fp16", device.type)
    reason = ("fp16 needs loss scaling, which mmengine's AmpOptimWrapper runs on CUDA (and NPU / MLU / MUSA), not "
              "on a CPU: use bf16 (fp32 where the CPU lacks native bf16) or fp32")
    if strict:
        raise ValueError(reason)
    _warn_once(("fp16", "cpu"), f"precision fp16 requested: {reason}; running fp32")
    return Precision("fp32", "fp16", "cpu", reason + "; running fp32")


def autocast(requested: Union[str, torch.dtype, None], device: Union[str, torch.device, None] = None):
    """``torch.autocast`` for ``requested`` on ``device`` as :func:`resolve_precision` decides it, for a part
    that cannot scale the loss itself (a module autocasting its own forward, a benchmark step)."""
    return resolve_precision(requested, device, loss_scaling=False).autocast()


# ------------------------------------------------------------------ parts of a model
class _ModuleAutocast:
    """Forward hooks that run one module's forward under :func:`autocast` for the device of its input and return
    its floating outputs in float32 (the module's class, state dict and ``forward`` stay as they are)."""

    def __init__(self, requested: str):
        self.requested = requested
        self._open = []  # autocast contexts of calls in progress (nested calls close in order)

    # torch.compile runs the hooks eagerly (dynamo cannot trace an autocast entered in one hook and left in another)
    # and traces the forward between them under the autocast state they set, which it guards on
    @torch._dynamo.disable
    def enter(self, module, args, kwargs):
        device = _first_device((args, kwargs))
        if device is None:
            device = next((t.device for t in (*module.parameters(), *module.buffers())), None)
        ctx = autocast(self.requested, device)
        ctx.__enter__()
        self._open.append(ctx)

    @torch._dynamo.disable
    def exit(self, module, args, kwargs, output):
        if self._open:  # empty when a hook registered before ours raised before ours ran
            self._open.pop().__exit__(None, None, None)
        return _float32(output)

    def __getstate__(self):  # a copy (deepcopy, pickle) has no call in progress
        return {"requested": self.requested, "_open": []}


def _first_device(obj):
    if isinstance(obj, torch.Tensor):
        return obj.device
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (tuple, list)) else ()
    return next((d for d in map(_first_device, items) if d is not None), None)


def _float32(out):
    if isinstance(out, torch.Tensor):
        return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # a namedtuple
        return type(out)(*(_float32(o) for o in out))
    if isinstance(out, (tuple, list)):
        return type(out)(_float32(o) for o in out)
    if isinstance(out, dict):
        return type(out)((k, _float32(v)) for k, v in out.items())
    return out


def autocast_module(module: torch.nn.Module, requested: Union[str, torch.dtype, None]) -> None:
    """Run ``module``'s forward (train, val and test) under ``requested`` precision, as :func:`resolve_precision`
    decides it for the device of each call's input, with float32 outputs: mixed precision for a part of a model
    whose neighbours must stay fp32 (e.g. a detection backbone before mmcv's RoIAlign / NMS, which have no bf16
    kernels). bf16 only (fp16 needs loss scaling over the whole model); ``None`` / ``'fp32'`` removes a previous
    setting, a second call replaces it."""
    for hooks in (module._forward_pre_hooks, module._forward_hooks):
        for key in [k for k, h in hooks.items() if isinstance(getattr(h, "__self__", None), _ModuleAutocast)]:
            del hooks[key]  # and the flags torch keeps beside a hook registered with_kwargs / always_call
            for flags in ("_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
                          "_forward_hooks_always_called"):
                getattr(module, flags, {}).pop(key, None)
    name = canonical_name(requested)
    if name == "fp32":
        return
    if name == "fp16":
        raise ValueError("a part of a model cannot run fp16: fp16 needs loss scaling over the whole model "
                         "(tools/train.py --amp fp16, mmengine's AmpOptimWrapper); use bf16 for a part")
    hooks = _ModuleAutocast(name)
    module.register_forward_pre_hook(hooks.enter, with_kwargs=True)
    module.register_forward_hook(hooks.exit, with_kwargs=True, always_call=True)


def module_precision(module: torch.nn.Module) -> str:
    """What :func:`autocast_module` set on ``module``: ``bf16``, or ``fp32`` when nothing is set."""
    found = [h.__self__.requested for h in module._forward_pre_hooks.values()
             if isinstance(getattr(h, "__self__", None), _ModuleAutocast)]
    return found[-1] if found else "fp32"


def autocast_modules(model: torch.nn.Module, modules: dict) -> None:
    """:func:`autocast_module` for each ``{submodule path: precision}`` of ``model`` (a config's
    ``autocast_modules = dict(backbone='bfloat16', neck='bfloat16')``); an unknown path is an error."""
    for path, requested in modules.items():
        try:
            part = model.get_submodule(path)
        except AttributeError:
            children = [n for n, _ in model.named_children()]
            raise ValueError(f"autocast_modules: {type(model).__name__} has no submodule {path!r} "
                             f"(its children: {children})") from None
        autocast_module(part, requested)
