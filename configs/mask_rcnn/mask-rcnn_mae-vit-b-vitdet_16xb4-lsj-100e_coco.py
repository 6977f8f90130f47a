# COCO Mask R-CNN, MAE ViT-B (vitdet variant), layer decay 0.7, drop path 0.1, batch 64 (16 GPUs x 4).
# Train:  bash tools/dist_train.sh configs/mask_rcnn/mask-rcnn_mae-vit-b-vitdet_16xb4-lsj-100e_coco.py 8
# Data:   data/coco/{train2017,val2017,annotations/instances_*2017.json}
# Weights: official mae_pretrain_vit_base.pth in checkpoints/ (loaded directly, strict, with a report).
_base_ = ['./_base_/mask-rcnn_mae-vit-b_vitdet.py', './_base_/lsj-100e_coco_adamw-lrd.py']
model = dict(data_preprocessor=dict(batch_augments=[dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)]),)
