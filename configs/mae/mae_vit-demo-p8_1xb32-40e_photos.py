# `make demo`: a small ViT MAE on the real photos that ship offline (scikit-image,
# scikit-learn, PyWavelets), exported by tools/demo.py into data/sample_photos as an
# ImageNet-style folder. A few minutes on 2 CPU cores.
_base_ = ['../_base_/default_runtime.py']
model = dict(
    type='MAEPretrainer',
    arch='mae_vit_tiny_patch16',
    img_size=96, patch_size=8, depth=6, num_heads=3,
    decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
    mask_ratio=0.75, norm_pix_loss=False,
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]),
)
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    worker_init_fn=dict(type='seed_worker'),
    dataset=dict(type='ImageFolder', root='data/sample_photos', repeat=16,
                 transform=dict(type='pretrain', img_size=96, scale=(0.2, 1.0))),
)
blr = 1.5e-4
optim_wrapper = dict(
    type='OptimWrapper', constructor='LayerDecayOptimWrapperConstructor',
    # cls / mask tokens exempt from weight decay (the rule the demo was tuned with); the paper configs decay them as
    # main_pretrain.py does (weight_decay_rule='norm_bias')
    paramwise_cfg=dict(weight_decay_rule='norm_bias_declared'),
    # a small model on 21 photos learns faster with a larger lr than blr * 32 / 256
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.95), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=4, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=36, eta_min=1e-5, by_epoch=True, begin=4, end=40,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=40)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=10, max_keep_ckpts=1))
custom_hooks = [dict(type='RNGStateHook'), dict(type='ModelSpecHook'), dict(type='ReconstructionHook', interval=10, num_images=8)]
log_processor = dict(window_size=10, by_epoch=True)
