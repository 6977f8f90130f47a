"""Opt-in ``torch.compile`` with a fallback to eager (issue 6 lever).

``compile_module(model)`` compiles ``model.forward`` in place. The first call compiles; if compilation itself
fails (no C++ compiler for inductor on CPU, no Triton for the GPU, an unsupported backend, a dynamo internal
error), a warning names the cause and the fix and the module runs eagerly from then on: a training run never
dies for an optimisation. Errors of the model itself (wrong shapes, ...) are raised as in eager mode.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn


def _compile_errors():
    from torch._dynamo import exc as dynamo_exc
    from torch._inductor import exc as inductor_exc

    names = [(dynamo_exc, "BackendCompilerFailed"), (dynamo_exc, "InternalTorchDynamoError"),
             (dynamo_exc, "InvalidBackend"), (inductor_exc, "CppCompileError"), (inductor_exc, "InvalidCxxCompiler")]
    return tuple(getattr(mod, n) for mod, n in names if hasattr(mod, n))


def compile_module(module: nn.Module, mode: Optional[str] = None, backend: str = "inductor", fallback: bool = True,
                   **options) -> nn.Module:
    """Compile ``module.forward`` with ``torch.compile(mode=..., backend=..., **options)``; returns ``module``.

    ``fallback``: on a compilation failure, warn and run eagerly (False: raise). ``module.compiled`` tells which
    path is in use: ``None`` before the first call, then True (compiled) or False (eager after a failure)."""
    if getattr(module, "compiled", None) is not None or "_eager_forward" in module.__dict__:
        raise RuntimeError(f"{type(module).__name__} is already compiled")
    eager = module.forward
    compiled = torch.compile(eager, mode=mode, backend=backend, **options)
    module._eager_forward = eager
    module.compiled = None

    def forward(*args, **kwargs):
        if module.compiled is False:
            return eager(*args, **kwargs)
        try:
            out = compiled(*args, **kwargs)
        except _compile_errors() as e:
            if not fallback:
                raise
            warnings.warn(f"torch.compile failed for {type(module).__name__}, running eagerly instead "
                          f"({type(e).__name__}: {' '.join(str(e).split())[:300]}). Fix: install a C++ compiler "
                          "(CPU inductor) or Triton (GPU), or turn compile off.", RuntimeWarning)
            module.compiled = False
            return eager(*args, **kwargs)
        module.compiled = True
        return out

    module.forward = forward
    return module
