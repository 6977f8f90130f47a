# mmseg's own stock MAE config, shipped in the mmsegmentation package, with only the backbone type
# (and the checkpoint) switched to mae-backbone's MAEViT. Its mmseg-style arguments (embed_dims,
# num_layers, init_values, ...) are understood as they are; the official MAE .pth loads directly.
_base_ = ['mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py']
custom_imports = dict(imports=['downstream'], allow_failed_imports=False)

model = dict(
    pretrained='checkpoints/mae_pretrain_vit_base.pth',
    backbone=dict(type='MAEViT'))
