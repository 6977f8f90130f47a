# ADE20K 512x512 (mmseg's ADE20KDataset, reduce_zero_label, IoUMetric mIoU / mAcc / aAcc), 160k iterations,
# batch 16 (8 GPUs x 2), AdamW lr 1e-4 wd 0.05, layer decay 0.65 from the backbone's layer_id(), 1500
# warm-up iterations then poly. Mixed precision: the backbone's bf16 autocast (model configs).
_base_ = ['mmseg::_base_/datasets/ade20k.py', 'mmseg::_base_/schedules/schedule_160k.py']

train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay=0.65),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
