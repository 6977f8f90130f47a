# MAE end-to-end fine-tuning, ViT-B (the official FINETUNE.md recipe; paper Table 9 lists the setting): AdamW (0.9, 0.999), blr 5e-4
# (lr = blr x batch / 256), layer-wise lr decay 0.65, wd 0.05, 5 warmup epochs then cosine.
blr = 5e-4
optim_wrapper = dict(
    type='AutocastOptimWrapper', dtype='bfloat16',
    constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(layer_decay=0.65),
    optimizer=dict(type='AdamW', lr=None, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=95, eta_min=1e-6, by_epoch=True, begin=5, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100, val_interval=1)
