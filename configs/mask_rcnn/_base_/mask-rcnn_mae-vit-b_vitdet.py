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
        use_rel_pos=True,
        rel_pos_img_size=1024,
        drop_path_rate=0.1,
        grad_checkpointing=False,
        autocast_dtype='bfloat16',       # bf16 backbone, fp32 maps out (heads fp32: mmcv ops lack bf16)
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mae_pretrain_vit_base.pth')),
    neck=dict(
        _delete_=True,
        type='ViTDetSimplePyramid',
        in_channels=768,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        norm='LN',
        extra_pool=True,
        autocast_dtype='bfloat16'),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))
