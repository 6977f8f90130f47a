"""mae-backbone: Masked Autoencoder ViT backbones."""

__version__ = "0.1.0"
