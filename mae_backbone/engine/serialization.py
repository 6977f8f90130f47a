"""Allow-list what mmengine pickles into its checkpoints, so ``torch.load(weights_only=True)``
(the torch >= 2.6 default, which mmengine's own resume and ``load_from`` use) reads them.
weights_only is never switched off.

``HistoryBuffer`` pickles its statistics functions as ``getattr(HistoryBuffer, 'mean')``.
The real ``builtins.getattr`` must not be allowed: it reaches ``getattr.__self__`` (the
builtins module) and from there any function's ``__globals__``. Instead a stand-in is
registered under that name which only returns HistoryBuffer's statistics methods.
"""
import pickle

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

try:  # numpy >= 2
    from numpy._core import multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray

_STATISTICS = ("min", "max", "current", "mean")


def history_buffer_getattr(obj, name):
    """``getattr`` for unpickling: only ``HistoryBuffer`` statistics methods, anything else is refused."""
    allowed = set(_STATISTICS) | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and isinstance(name, str) and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"refused getattr(<{type(obj).__name__}>, {name!r}) while unpickling: only "
                                 f"HistoryBuffer statistics methods are allowed")


_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")
SAFE_GLOBALS = [HistoryBuffer, (history_buffer_getattr, "builtins.getattr"),
                multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype,
                *{type(np.dtype(t)) for t in _DTYPES},
                # pickles written under numpy 1.x name the same functions under numpy.core
                (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                (multiarray.scalar, "numpy.core.multiarray.scalar")]
torch.serialization.add_safe_globals(SAFE_GLOBALS)
