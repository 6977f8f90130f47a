# COCO Mask R-CNN, MAE ViT-L (ViTDet variant): the ViT-B config with the large encoder, global attention in
# blocks 5, 11, 17, 23, layer decay 0.8, drop path 0.4 (detectron2 projects/ViTDet/configs/COCO/
# mask_rcnn_vitdet_l_100ep.py).
_base_ = ['./mask-rcnn_mae-vit-b-vitdet_16xb4-lsj-100e_coco.py']
model = dict(
    backbone=dict(arch='large', out_indices=(23,), global_block_indexes=(5, 11, 17, 23), drop_path_rate=0.4,
                  init_cfg=dict(checkpoint='checkpoints/mae_pretrain_vit_large.pth')),
    neck=dict(in_channels=1024))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay=0.8))
