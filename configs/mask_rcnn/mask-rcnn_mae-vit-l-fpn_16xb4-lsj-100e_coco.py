# COCO Mask R-CNN, MAE ViT-L (fpn variant), layer decay 0.8, drop path 0.4, batch 64 (16 GPUs x 4).
_base_ = ['./_base_/mask-rcnn_mae-vit-b_fpn.py', './_base_/lsj-100e_coco_adamw-lrd.py']
model = dict(
    data_preprocessor=dict(batch_augments=[dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)]),
    backbone=dict(arch='large', out_indices=(7, 11, 15, 23), drop_path_rate=0.4,
                  init_cfg=dict(checkpoint='checkpoints/mae_pretrain_vit_large.pth')),
    neck=dict(in_channels=[1024, 1024, 1024, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay=0.8))
