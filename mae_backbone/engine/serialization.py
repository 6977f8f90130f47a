"""Allow-list what mmengine pickles into its checkpoints, so ``torch.load(weights_only=True)``
(the torch >= 2.6 default, which mmengine's own resume and ``load_from`` use) reads them.
weights_only is never switched off.

``HistoryBuffer`` pickles its statistics functions as ``getattr(HistoryBuffer, 'mean')``, so
``builtins.getattr`` must be allowed for any mmengine checkpoint to load. That is safe under the
weights-only unpickler: REDUCE may only *call* allow-listed callables, so attributes fetched by
``getattr`` are inert data (tests/test_checkpoint.py shows a getattr chain to ``eval`` refused).
"""
import builtins

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

try:  # numpy >= 2
    from numpy._core import multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray

_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")
SAFE_GLOBALS = [HistoryBuffer, builtins.getattr, multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype,
                *{type(np.dtype(t)) for t in _DTYPES}]
# pickles written under numpy 1.x name the same functions under numpy.core
SAFE_GLOBALS += [(multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                 (multiarray.scalar, "numpy.core.multiarray.scalar")]
torch.serialization.add_safe_globals(SAFE_GLOBALS)
