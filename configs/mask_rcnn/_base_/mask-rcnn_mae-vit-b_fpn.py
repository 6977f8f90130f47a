# Mask R-CNN with the MAE ViT-B through the MAE paper's FPN adaptation (Sec. 5 / appendix A.3,
# after Li et al. 2021 "Benchmarking detection transfer learning with ViTs"): blocks 3, 5, 7, 11
# (evenly spaced) rescaled to strides 4, 8, 16, 32 (2x deconv twice, 2x deconv, identity, 2x
# max-pool), then mmdet's FPN. Stock mmdet RPN / RoI heads.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
custom_imports = dict(imports=['downstream'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='MAEViT',
        arch='base',
        img_size=224,                    # MAE pretraining grid 14x14; interpolated to the input grid
        out_indices=(3, 5, 7, 11),
        pyramid=dict(rescales=(4, 2, 1, 0.5), norm='SyncBN'),
        drop_path_rate=0.1,
        grad_checkpointing=False,        # True: recompute blocks in backward (less activation memory)
        autocast_dtype='bfloat16',       # bf16 backbone, fp32 maps out (heads fp32: mmcv ops lack bf16)
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mae_pretrain_vit_base.pth')),
    neck=dict(in_channels=[768, 768, 768, 768]))
