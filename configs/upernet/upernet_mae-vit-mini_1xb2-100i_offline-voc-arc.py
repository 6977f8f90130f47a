# The tiny offline UperNet (upernet_mae-vit-tiny_1xb2-300i_offline-voc-arc.py) cut to about 20 s of CPU
# training: a 128-d, 4-block ViT, 256x192 images, 64-channel heads, 100 iterations at lr 2e-3.
# It still learns the two label maps (mIoU 52.9 on a 2-core Zen 5; the test suite asks >= 40).
#   python tools/make_offline_ade.py data/offline_ade
#   python tools/train.py configs/upernet/upernet_mae-vit-mini_1xb2-100i_offline-voc-arc.py
_base_ = ['./upernet_mae-vit-tiny_1xb2-300i_offline-voc-arc.py']
scale = (256, 192)
max_iters = 100
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dim=128, depth=4, num_heads=2), img_size=(192, 256),
                  out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=[128] * 4, channels=64),
    auxiliary_head=dict(in_channels=128, channels=32))
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegLabels', num_classes=12),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegLabels', num_classes=12),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=10),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=10, end=max_iters),
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
