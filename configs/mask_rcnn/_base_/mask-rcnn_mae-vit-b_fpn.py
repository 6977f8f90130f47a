# Mask R-CNN with the MAE ViT-B through the MAE paper's FPN adaptation (Sec. 5 / appendix A.3,
# after Li et al. 2021 "Benchmarking detection transfer learning with ViTs"): the 12 blocks "equally divided
# into 4 subsets" (A.3), the last block of each tapped -- blocks 2, 5, 8, 11 -- and rescaled to strides 4, 8,
# 16, 32 (2x deconv twice, 2x deconv, identity, 2x max-pool), then mmdet's FPN. This base keeps mmdet's stock
# R50-FPN heads, which the tiny offline configs use; the COCO configs (mask-rcnn_mae-vit-*-fpn_16xb4-*)
# switch to the normalised FPN and heads of Li et al.'s improved Mask R-CNN.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
custom_imports = dict(imports=['downstream'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='MAEViT',
        arch='base',
        img_size=224,                    # MAE pretraining grid 14x14; interpolated to the input grid
        out_indices=(2, 5, 8, 11),       # MAE paper A.3: ends of 4 equal subsets (ViT-L: 5, 11, 17, 23)
        pyramid=dict(rescales=(4, 2, 1, 0.5), norm='SyncBN'),
        drop_path_rate=0.1,
        grad_checkpointing=False,        # True: recompute blocks in backward (less activation memory)
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mae_pretrain_vit_base.pth')),
    neck=dict(in_channels=[768, 768, 768, 768]))
# mixed precision where the FLOPs are: the backbone (with its rescaling pyramid) in bf16, fp32 maps out; the FPN
# and heads stay fp32 (mmcv's RoIAlign / NMS have no bf16 kernels). The device's rule applies (fp32 where it has
# no native bf16); --amp rewrites it (mae_backbone.precision.autocast_modules)
autocast_modules = dict(backbone='bfloat16')
