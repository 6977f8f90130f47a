# Mask R-CNN with the MAE ViT-B as in ViTDet (Li et al. 2022): 14x14 window attention in all blocks
# but 2, 5, 8, 11 (global), decomposed relative positions (zero-init), absolute positions
# interpolated from the 14x14 pretraining grid, simple feature pyramid from the last map (strides
# 4 .. 64, LayerNorm), 2-conv RPN, 4conv1fc box head and mask head with LayerNorm (the paper's heads).
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
custom_imports = dict(imports=['downstream'], allow_failed_imports=False)

norm_cfg = dict(type='LN2d', requires_grad=True)
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='MAEViT',
        arch='base',
        img_size=224,
        out_indices=(11,),
        window_size=14,                  # grids that are not a multiple of 14 are padded per block
        global_block_indexes=(2, 5, 8, 11),
        rel_pos='decomposed',
        rel_pos_img_size=1024,
        drop_path_rate=0.1,
        grad_checkpointing=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mae_pretrain_vit_base.pth')),
    neck=dict(
        _delete_=True,
        type='ViTDetSimplePyramid',
        in_channels=768,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        norm='LN',
        extra_pool=True),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))
# mixed precision where the FLOPs are: backbone and simple pyramid in bf16, fp32 maps out; the heads stay fp32
# (mmcv's RoIAlign / NMS have no bf16 kernels). The device's rule applies (fp32 where it has no native bf16);
# --amp rewrites it (mae_backbone.precision.autocast_modules)
autocast_modules = dict(backbone='bfloat16', neck='bfloat16')
