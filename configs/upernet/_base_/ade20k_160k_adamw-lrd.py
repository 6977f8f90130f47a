# ADE20K 512x512 (mmseg's ADE20KDataset, reduce_zero_label, IoUMetric mIoU / mAcc / aAcc), 160k iterations,
# batch 16 (8 GPUs x 2), AdamW lr 1e-4 wd 0.05, layer decay 0.65 from the backbone's layer_id(), 1500
# warm-up iterations then poly. Mixed precision: the backbone's bf16 autocast (model configs).
# mmseg's pipelines, each with CheckSegLabels right after LoadAnnotations: a label map with values outside
# 0..149 (other than 255) stops with the file's name instead of a CUDA assert inside the loss.
_base_ = ['mmseg::_base_/datasets/ade20k.py', 'mmseg::_base_/schedules/schedule_160k.py']

num_classes = 150
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegLabels', num_classes=num_classes),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),  # after Resize: metrics on the original label map
    dict(type='CheckSegLabels', num_classes=num_classes),
    dict(type='PackSegInputs'),
]
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
# Multi-scale + flip test: ratios of the single-scale test size (2048, 512), as mmseg 0.x's MultiScaleFlipAug that
# BEiT / MAE used (mmseg 1.x's stock tta_pipeline scales the original image instead), with the short side never
# below the 512 crop: BEiT semantic_segmentation/configs/beit/upernet/upernet_beit_base_12_512_slide_160k_ade20k_ms.py
# resizes with SETR_Resize(crop_size=(512, 512), setr_multi_scale=True) (mmcv_custom/resize_transform.py), which sets
# the short side to max(512 * r, 512) and lets the long side follow the aspect ratio; mmseg's configs/mae/README.md
# evaluates with min_size=512 (mmseg 0.x Resize(min_size=...), the same rule). So r = 0.5 and 0.75 give the r = 1
# size, as in BEiT. (1 << 16): a long-side bound that never binds, so the short side alone sets the scale.
tta_short_sides = [max(int(512 * r), crop_size[0]) for r in img_ratios]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(1 << 16, short), keep_ratio=True) for short in tta_short_sides],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],  # reduce_zero_label from the dataset
        [dict(type='CheckSegLabels', num_classes=num_classes)],
        [dict(type='PackSegInputs')]]),
]

train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    # lr 1e-4, wd 0.05, layer decay 0.65 (ViT-B): mmseg configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py.
    # Weight decay on everything but 1-D tensors and biases: mmseg's (and BEiT's) LayerDecayOptimizerConstructor
    # tests `name in ('pos_embed', 'cls_token')` on 'backbone.'-prefixed names, which never matches, so position
    # table, cls token and relative-position bias tables decay there (rule 'norm_bias').
    paramwise_cfg=dict(layer_decay=0.65, weight_decay_rule='norm_bias'),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
