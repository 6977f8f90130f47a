# COCO Mask R-CNN, MAE ViT-B, the MAE paper's FPN variant (paper Table 4 "MAE" rows; A.3): blocks 2, 5, 8, 11,
# layer decay 0.7, drop path 0.1, batch 64 (16 GPUs x 4), 1024x1024 LSJ, ~100 epochs.
# Train:  bash tools/dist_train.sh configs/mask_rcnn/mask-rcnn_mae-vit-b-fpn_16xb4-lsj-100e_coco.py 8
#         (on 8 GPUs add --cfg-options train_dataloader.batch_size=8 to keep batch 64)
# Data:   data/coco/{train2017,val2017,annotations/instances_*2017.json}
# Weights: official mae_pretrain_vit_base.pth in checkpoints/ (loaded directly, strict, with a report).
#
# Heads: Li et al. 2021's improved Mask R-CNN, which MAE A.3 follows. The paper text is not available to us;
# the public code of that model is torchvision's maskrcnn_resnet50_fpn_v2 (torchvision/models/detection/
# mask_rcnn.py), matched here part by part:
#   FPN with BatchNorm in lateral and output convs  (_resnet_fpn_extractor(norm_layer=BatchNorm2d))
#   RPN with two 3x3 convs, no norm                 (RPNHead(conv_depth=2))
#   box head 4 x conv256 + BN + ReLU, fc 1024       (FastRCNNConvFCHead([256] * 4, [1024], norm_layer=BatchNorm2d))
#   mask head 4 x conv256 + BN + ReLU, deconv       (MaskRCNNHeads([256] * 4, 1, norm_layer=BatchNorm2d))
# BatchNorm as SyncBN: torchvision's v2 weights were trained with --sync-bn on 32 GPUs x 2 images (pytorch/vision
# PR #5773, the weights' recipe), statistics over the batch of 64 as here.
# Anchors, samplers and thresholds are mmdet's R50-FPN defaults, which equal detectron2's; torchvision keeps 2000
# proposals per image after the RPN's NMS in training where mmdet and detectron2 keep 1000.
# Optimiser, schedule, layer decay and drop path: MAE A.3 searched them per entry and did not publish them;
# ViTDet's (detectron2) values are used (_base_/lsj-100e_coco_adamw-lrd.py).
_base_ = ['./_base_/mask-rcnn_mae-vit-b_fpn.py', './_base_/lsj-100e_coco_adamw-lrd.py']
head_norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(batch_augments=[dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)]),
    neck=dict(norm_cfg=head_norm_cfg),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, fc_out_channels=1024,
                       norm_cfg=head_norm_cfg),
        mask_head=dict(num_convs=4, conv_out_channels=256, norm_cfg=head_norm_cfg)))
