# Paper recipe, ViT-B/16, 1600 epochs.
_base_ = './mae_vit-base-p16_8xb128-accum4-amp-800e_in1k.py'
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=40,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=1560, eta_min=0.0, by_epoch=True, begin=40, end=1600,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=1600)
