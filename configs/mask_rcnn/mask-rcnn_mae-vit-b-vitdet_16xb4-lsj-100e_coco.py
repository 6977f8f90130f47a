# COCO Mask R-CNN, MAE ViT-B (ViTDet variant, Li et al. 2022; detectron2 projects/ViTDet/configs/COCO/
# mask_rcnn_vitdet_b_100ep.py): layer decay 0.7, drop path 0.1, batch 64 (16 GPUs x 4), 1024x1024 LSJ, ~100 epochs.
# Train:  bash tools/dist_train.sh configs/mask_rcnn/mask-rcnn_mae-vit-b-vitdet_16xb4-lsj-100e_coco.py 8
#         (on 8 GPUs add --cfg-options train_dataloader.batch_size=8 to keep batch 64)
# Data:   data/coco/{train2017,val2017,annotations/instances_*2017.json}
# Weights: official mae_pretrain_vit_base.pth in checkpoints/ (loaded directly, strict, with a report).
_base_ = ['./_base_/mask-rcnn_mae-vit-b_vitdet.py', './_base_/lsj-100e_coco_adamw-lrd.py']
model = dict(data_preprocessor=dict(batch_augments=[dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)]))
