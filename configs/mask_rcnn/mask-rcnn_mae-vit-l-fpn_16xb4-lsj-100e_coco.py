# COCO Mask R-CNN, MAE ViT-L, the MAE paper's FPN variant: the ViT-B config with the large encoder, blocks
# 5, 11, 17, 23 (MAE A.3: ends of 4 equal subsets of the 24 blocks), layer decay 0.8 and drop path 0.4
# (ViTDet's ViT-L values: detectron2 projects/ViTDet/configs/COCO/mask_rcnn_vitdet_l_100ep.py).
_base_ = ['./mask-rcnn_mae-vit-b-fpn_16xb4-lsj-100e_coco.py']
model = dict(
    backbone=dict(arch='large', out_indices=(5, 11, 17, 23), drop_path_rate=0.4,
                  init_cfg=dict(checkpoint='checkpoints/mae_pretrain_vit_large.pth')),
    neck=dict(in_channels=[1024, 1024, 1024, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay=0.8))
