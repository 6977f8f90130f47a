# The tiny offline Mask R-CNN (mask-rcnn_mae-vit-tiny-fpn_1xb2-300i_offline-voc-arc.py) cut to about half a
# minute of CPU training: a 128-d, 4-block ViT, 256x192 images, 32 RoIs per image, 80 iterations at lr 1e-3.
# It still learns the two photos (bbox AP50 0.81 on a 2-core Zen 5; the test suite asks >= 0.5).
#   python tools/make_offline_coco.py data/offline_coco
#   python tools/train.py configs/mask_rcnn/mask-rcnn_mae-vit-mini-fpn_1xb2-80i_offline-voc-arc.py
_base_ = ['./mask-rcnn_mae-vit-tiny-fpn_1xb2-300i_offline-voc-arc.py']
scale = (256, 192)
max_iters = 80
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dim=128, depth=4, num_heads=2), img_size=(192, 256),
                  out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[128] * 4),
    train_cfg=dict(rcnn=dict(sampler=dict(num=32))))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.0),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=8),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=8, end=max_iters, eta_min=1e-5),
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
