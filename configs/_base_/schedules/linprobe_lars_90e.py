# MAE linear probing (paper Table 10): LARS, blr 0.1, wd 0, 10 warmup epochs then cosine, 90 epochs.
blr = 0.1
optim_wrapper = dict(
    type='AutocastOptimWrapper', dtype='bfloat16',
    constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='LARS', lr=None, weight_decay=0.0, momentum=0.9))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=80, eta_min=0.0, by_epoch=True, begin=10, end=90,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=90, val_interval=1)
