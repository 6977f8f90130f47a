"""Allow-list the classes mmengine pickles into its checkpoints, so ``torch.load(weights_only=True)``
(the torch >= 2.6 default, which mmengine's resume uses) reads them. Only these names are
allowed; weights_only is never switched off."""
import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

try:  # numpy >= 2
    from numpy._core import multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray

_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")
SAFE_GLOBALS = [HistoryBuffer, multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype,
                *{type(np.dtype(t)) for t in _DTYPES}]
# pickles written under numpy 1.x name the same functions under numpy.core
SAFE_GLOBALS += [(multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                 (multiarray.scalar, "numpy.core.multiarray.scalar")]
torch.serialization.add_safe_globals(SAFE_GLOBALS)
