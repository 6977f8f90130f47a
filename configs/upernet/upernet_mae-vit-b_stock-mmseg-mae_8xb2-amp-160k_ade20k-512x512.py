# mmseg's own stock MAE config, shipped in the mmsegmentation package, with only the backbone type
# (and the checkpoint) switched to mae-backbone's MAEViT, and the optimizer constructor to its MAEViT-aware
# counterpart (below). Its mmseg-style arguments (embed_dims, num_layers, init_values, ...) are understood
# as they are; the official MAE .pth loads directly.
_base_ = ['mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py']
custom_imports = dict(imports=['downstream'], allow_failed_imports=False)

model = dict(
    pretrained='checkpoints/mae_pretrain_vit_base.pth',
    backbone=dict(type='MAEViT'))
# The optimizer constructor is switched too, to the one `downstream` registers beside mmseg's (same
# paramwise_cfg: num_layers=12, layer_decay_rate=0.65). mmseg's LayerDecayOptimizerConstructor groups layers
# by the parameter name `backbone.layers.N`, while our blocks are `backbone.blocks.N`: it would train every
# block at lr scale 1. MAEViTLayerDecayOptimizerConstructor gives block i mmseg's 0.65 ** (12 - i).
optim_wrapper = dict(constructor='MAEViTLayerDecayOptimizerConstructor')
# --amp bf16 runs the backbone in bf16 and keeps the rest in fp32 (mmcv's detection ops have no bf16 kernels);
# the config's own precision applies otherwise
autocast_modules = dict(backbone=None)
