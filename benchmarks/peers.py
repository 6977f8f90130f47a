"""Benchmark peers that live in the OpenMMLab stack (mm* imports stay in ``downstream/``).

mmpretrain is an optional peer, never a dependency, and it is kept out of the project's environment:
mmpretrain 1.2 imports its BLIP / LLaVA code whenever transformers is installed, that code fails under
transformers 5 (``TypeError: NoneType takes no arguments``), and mmdet 3.3 imports mmpretrain when it can, so an
mmpretrain in ``.venv`` would break ``import mmdet.models``. ``make bench`` installs it (no dependencies pulled)
into ``.bench-peers/``, which only the benchmark puts on ``sys.path``, after turning the multimodal import off.
"""
from __future__ import annotations

import logging
import os.path as osp
import sys
import warnings

import torch

PEERS_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), ".bench-peers")


def enable_mmpretrain_peer(peers_dir: str = PEERS_DIR) -> bool:
    """Make the mmpretrain peer importable (``peers_dir`` on ``sys.path`` when it exists) with its multimodal
    models switched off (the placeholders mmpretrain registers instead raise on use; MAE needs none of them).
    Call before anything imports mmdet. Returns whether mmpretrain can be imported."""
    if osp.isdir(peers_dir) and peers_dir not in sys.path:
        sys.path.append(peers_dir)  # after the venv: never shadows an installed package
    try:
        import mmpretrain.utils.dependency as dependency
    except Exception as e:  # noqa: BLE001  not installed, or an mmcv / transformers version it rejects
        if not isinstance(e, ImportError):
            warnings.warn(f"the mmpretrain peer cannot be imported ({type(e).__name__}: {e}); it is skipped")
        return False
    dependency.WITH_MULTIMODAL = False
    return True


def import_mmpretrain_models():
    """Import ``mmpretrain.models`` (MAE, MAEViT, MAEPretrainDecoder, MAEPretrainHead) via
    :func:`enable_mmpretrain_peer`; returns mmpretrain's ``MODELS`` registry."""
    if not enable_mmpretrain_peer():
        raise ImportError("the mmpretrain peer is not installed: run `make bench` (it installs mmpretrain into "
                          ".bench-peers/, outside the project's environment)")
    import mmpretrain.models  # noqa: F401  registers the MAE parts
    from mmpretrain.registry import MODELS
    return MODELS


def mmpretrain_twin(model: torch.nn.Module, mask_ratio: float = 0.75) -> torch.nn.Module:
    """mmpretrain's MAE (``MAEViT`` + ``MAEPretrainDecoder`` + ``MAEPretrainHead``, its stock pretraining
    model with the pixel L2 loss) with the shape of our MAE ``model``; initialised by mmpretrain."""
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    if model.in_chans != 3:
        raise ValueError(f"mmpretrain's MAEPretrainHead patchifies 3-channel images only; this model has "
                         f"{model.in_chans} channels: compare with the hf peer instead")
    MODELS = import_mmpretrain_models()
    init_default_scope("mmpretrain")
    blk, dec = model.blocks[0], model.decoder_blocks[0]
    d = model.embed_dim
    cfg = dict(
        type="MAE",
        backbone=dict(type="MAEViT", img_size=model.img_size[0], patch_size=model.patch_size, mask_ratio=mask_ratio,
                      patch_cfg=dict(in_channels=model.in_chans),
                      arch=dict(embed_dims=d, num_layers=len(model.blocks), num_heads=blk.attn.num_heads,
                                feedforward_channels=blk.mlp.fc1.out_features)),
        neck=dict(type="MAEPretrainDecoder", num_patches=model.grid[0] * model.grid[1], patch_size=model.patch_size,
                  in_chans=model.in_chans, embed_dim=d, decoder_embed_dim=model.decoder_embed_dim,
                  decoder_depth=len(model.decoder_blocks), decoder_num_heads=dec.attn.num_heads,
                  mlp_ratio=dec.mlp.fc1.out_features / model.decoder_embed_dim),
        head=dict(type="MAEPretrainHead", norm_pix=model.norm_pix_loss, patch_size=model.patch_size,
                  loss=dict(type="PixelReconstructionLoss", criterion="L2")))
    peer = MODELS.build(cfg)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter's initialiser at INFO
    try:
        peer.init_weights()
    finally:
        logger.setLevel(level)
    return peer
