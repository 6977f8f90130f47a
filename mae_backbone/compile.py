"""Opt-in ``torch.compile`` with a fallback to eager.

``compile_module(model)`` replaces ``model.forward`` with a :class:`CompiledForward`. The first call compiles
(forward and, with ``force_non_lazy_backward_lowering``, the backward graph too, so a backward compilation
failure surfaces in the same call); if compiling fails (no C++ compiler for inductor on CPU, no Triton for the
GPU, an unknown backend, a dynamo internal error), a warning names the cause and the fix and the module runs
eagerly from then on. Failures of a later recompilation (a new input shape, eval mode) fall back for that call
only. Errors of the model itself (wrong shapes, ...) are raised as in eager mode.

Copies stay correct: ``copy.deepcopy`` (mmengine's EMA hooks) and pickling give a module whose forward
computes with the copy's own weights (the compiled function is rebuilt lazily for it).
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Optional, Union

import torch
from torch import nn


def _compile_errors():
    from torch._dynamo import exc as dynamo_exc
    from torch._inductor import exc as inductor_exc

    names = [(dynamo_exc, "BackendCompilerFailed"), (dynamo_exc, "InternalTorchDynamoError"),
             (dynamo_exc, "InvalidBackend"), (inductor_exc, "CppCompileError"), (inductor_exc, "InvalidCxxCompiler")]
    return tuple(getattr(mod, n) for mod, n in names if hasattr(mod, n))


def _eager_backward_lowering():
    """Compile the backward graph with the forward (AOTAutograd lowers it lazily, at the first backward)."""
    from torch._functorch import config
    if not hasattr(config, "force_non_lazy_backward_lowering"):  # an older torch: backward failures then surface
        return contextlib.nullcontext()                           # in loss.backward() (patch() fails only on entry)
    return config.patch(force_non_lazy_backward_lowering=True)


class CompiledForward:
    """``module.forward`` under ``torch.compile``; see the module docstring. ``module.compiled``: None before
    the first call, then True (compiled) or False (eager after the first compilation failed)."""

    def __init__(self, module: nn.Module, fallback: bool, options: dict):
        self.module, self.fallback, self.options = module, fallback, options
        self._fn = None

    def __getstate__(self):  # deepcopy / pickle: the copy compiles its own forward on first use
        state = dict(self.__dict__)
        state["_fn"] = None
        return state

    def eager(self, *args, **kwargs):
        return type(self.module).forward(self.module, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        m = self.module
        if m.compiled is False:
            return self.eager(*args, **kwargs)
        first = m.compiled is None
        try:
            if self._fn is None:
                self._fn = torch.compile(self.eager, **self.options)
            with _eager_backward_lowering() if first else contextlib.nullcontext():
                out = self._fn(*args, **kwargs)
        except _compile_errors() as e:
            if not self.fallback:
                raise
            warnings.warn(f"torch.compile failed for {type(m).__name__}, running eagerly "
                          f"{'from now on' if first else 'for this call'} "
                          f"({type(e).__name__}: {' '.join(str(e).split())[:300]}). Fix: install a C++ compiler "
                          "(CPU inductor) or Triton (GPU), or turn compile off.", RuntimeWarning)
            if first:
                m.compiled = False
            return self.eager(*args, **kwargs)
        m.compiled = True
        return out


def compile_module(module: nn.Module, mode: Optional[str] = None, backend: str = "inductor", fallback: bool = True,
                   **options) -> nn.Module:
    """Compile ``module.forward`` with ``torch.compile(mode=..., backend=..., **options)``; returns ``module``.

    ``fallback``: on a compilation failure, warn and run eagerly (False: raise)."""
    if isinstance(module.__dict__.get("forward"), CompiledForward):
        raise RuntimeError(f"{type(module).__name__} is already compiled")
    module.compiled = None
    module.forward = CompiledForward(module, fallback, dict(options, mode=mode, backend=backend))
    return module


def maybe_compile(module: nn.Module, compile: Union[bool, dict, None]) -> nn.Module:
    """A model's ``compile`` argument: False / None leaves ``module`` eager, True compiles it with the defaults,
    a dict passes ``torch.compile`` options (``mode``, ``backend``, ...) to :func:`compile_module`."""
    if compile:
        compile_module(module, **(compile if isinstance(compile, dict) else {}))
    return module
