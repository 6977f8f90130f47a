# COCO instance segmentation, 1024x1024 large-scale jitter (scale 0.1-2.0), ~100 epochs
# (RepeatDataset x4 for 25 epochs, lr steps at 88 / 96 epochs), batch 64 = 16 GPUs x 4,
# AdamW lr 1e-4 wd 0.1 with layer-wise lr decay from the backbone's layer_id(). Mixed precision:
# the model configs run the backbone (and ViTDet neck) in bf16 autocast (autocast_dtype); mmcv's
# RoIAlign / NMS have no bf16 kernels, so the heads stay fp32 (fp16 on GPU: --amp fp16).
# CocoMetric (pycocotools) for bbox and segm. Model configs set layer_decay.
_base_ = ['mmdet::common/lsj-100e_coco-instance.py']

image_size = (1024, 1024)
# (model configs pad every batch to image_size: data_preprocessor.batch_augments=BatchFixedSizePad)

backend_args = None
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),  # long side 1024; the data preprocessor pads
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=4, num_workers=4)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay=0.7),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    clip_grad=None)

max_epochs = 25
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[22, 24], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2, save_last=True))
custom_hooks = [dict(type='RNGStateHook'), dict(type='ModelSpecHook')]
auto_scale_lr = dict(enable=False, base_batch_size=64)
