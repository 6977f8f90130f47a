# A tiny MAE ViT (192-d, 6 blocks) UperNet trained from scratch on the offline VOC / ARC label maps
# in the ADE20K layout (python tools/make_offline_ade.py data/offline_ade) on CPU, IoUMetric.
_base_ = ['./_base_/upernet_mae-vit-b.py']

data_root = 'data/offline_ade/'
metainfo = dict(
    classes=('bottle', 'burts_bees_baby_wipes', 'chair', 'diningtable', 'fiskars_scissors', 'hanes_socks',
             'ice_cube_tray', 'irish_spring_soap', 'laugh_out_loud_jokes', 'measuring_spoons', 'mouse_traps',
             'person'),  # == mae_backbone.data.offline_ade.offline_ade_classes(data_root)
    palette=[[128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128], [0, 128, 128],
             [128, 128, 128], [64, 0, 0], [192, 0, 0], [64, 128, 0], [192, 128, 0], [64, 0, 128]])
scale = (384, 288)
C = 128
autocast_modules = dict(backbone=None)  # fp32 on any CPU (--amp bf16 turns these parts to bf16)
model = dict(
    data_preprocessor=dict(size=None, size_divisor=32),
    backbone=dict(arch=dict(_delete_=True, embed_dim=192, depth=6, num_heads=3), img_size=(288, 384),
                  out_indices=(1, 2, 3, 5), pyramid=dict(norm='LN'), drop_path_rate=0.0,
                  final_norm=True, init_cfg=None),
    decode_head=dict(in_channels=[192] * 4, channels=C, num_classes=12, norm_cfg=dict(type='BN', requires_grad=True)),
    auxiliary_head=dict(in_channels=192, channels=64, num_classes=12, norm_cfg=dict(type='BN', requires_grad=True)))

pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegLabels', num_classes=12),  # labels outside 0..11 (other than 255) raise, naming the file
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='PackSegInputs'),
]
test_pipeline = [  # ground truth at the photo's size; predictions are resized back to it
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegLabels', num_classes=12),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
               seg_map_suffix='.png', reduce_zero_label=True, pipeline=pipeline)
train_dataloader = dict(batch_size=2, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=True),
                        dataset=dict(dataset, data_prefix=dict(img_path='images/training',
                                                               seg_map_path='annotations/training')))
val_dataloader = dict(batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset=dict(dataset, pipeline=test_pipeline,
                                   data_prefix=dict(img_path='images/validation',
                                                    seg_map_path='annotations/validation')))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 300
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', constructor='LayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay=1.0),
                     optimizer=dict(type='AdamW', lr=3e-4, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=30, end=max_iters),
]
default_hooks = dict(logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
