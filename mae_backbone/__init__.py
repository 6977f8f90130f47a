"""mae-backbone: Masked Autoencoder ViT backbones."""

__version__ = "0.1.0"

from . import weights  # noqa: E402,F401  (official weights by name / URL; pretrained= of the model presets)
