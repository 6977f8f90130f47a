# ADE20K UperNet, MAE ViT-L (mmseg ships no ViT-L MAE config): blocks 7, 11, 15, 23, layer decay 0.65
# (the MAE paper's ADE20K setting for both sizes), drop path 0.2.
_base_ = ['./upernet_mae-vit-b_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(arch='large', out_indices=(7, 11, 15, 23), drop_path_rate=0.2,
                  init_cfg=dict(checkpoint='checkpoints/mae_pretrain_vit_large.pth')),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024))
