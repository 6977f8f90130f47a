"""mae-backbone: Masked Autoencoder ViT backbones."""

__version__ = "0.1.0"

from . import checkpoint as _checkpoint  # noqa: E402
from . import weights  # noqa: E402,F401  (official weights by name / URL; pretrained= of the model presets)

_mmengine_allowed = False


def _allow_mmengine_checkpoints() -> bool:
    """Reading a training checkpoint of mmengine's: its classes' weights-only allow-list (mae_backbone.engine),
    registered once, when the first such file is refused; True if newly registered."""
    global _mmengine_allowed
    if _mmengine_allowed:
        return False
    try:
        from .engine import serialization  # noqa: F401  (registers on import)
    except ImportError:  # mmengine not installed: nothing to allow
        return False
    _mmengine_allowed = True
    return True


_checkpoint.register_allowlist_provider(_allow_mmengine_checkpoints)
