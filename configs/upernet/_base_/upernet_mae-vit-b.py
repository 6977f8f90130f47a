# UperNet + auxiliary FCN head on the MAE ViT-B (MAE paper Sec. 5, ADE20K, after BEiT): blocks 3, 5, 7,
# 11 rescaled to strides 4, 8, 16, 32 (2x deconv twice, 2x deconv, identity, max-pool) inside the
# backbone, relative position bias in every block (zero-initialised, transfer only), drop path 0.1.
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['downstream'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(512, 512),
    # test: pad to a multiple of the patch size (multi-scale crops, odd sizes); predictions are cropped back
    test_cfg=dict(size_divisor=16))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='MAEViT',
        arch='base',
        img_size=512,                    # position table resized from the 14x14 checkpoint at load (reported)
        out_indices=(3, 5, 7, 11),
        pyramid=dict(rescales=(4, 2, 1, 0.5), norm='SyncBN'),
        rel_pos='bias',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mae_pretrain_vit_base.pth')),
    decode_head=dict(
        type='UPerHead', in_channels=[768, 768, 768, 768], in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
        channels=768, dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead', in_channels=768, in_index=2, channels=256, num_convs=1, concat_input=False,
        dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
# the backbone (with its rescaling pyramid) in bf16, fp32 maps to the heads; the device's rule applies (fp32 where
# it has no native bf16); --amp rewrites it (mae_backbone.precision.autocast_modules)
autocast_modules = dict(backbone='bfloat16')

# TensorBoard scalars (loss terms, lr, metrics) next to mmengine's local logs, as the pretraining configs do
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(vis_backends=vis_backends)
# fail early and clearly when the heads' num_classes differs from the dataset's class count
custom_hooks = [dict(type='SegClassCountCheckHook')]
