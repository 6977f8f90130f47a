# MAE on Fashion-MNIST (60k 28x28 grey training images, labels unused), Debian package
# dataset-fashion-mnist (apt-get install dataset-fashion-mnist). 7x7 patches of 4x4;
# the classification / partial fine-tuning studies start from this checkpoint.
_base_ = ['../_base_/default_runtime.py']
data_root = '/usr/share/datasets/fashion-mnist'
mean, std = 0.2860, 0.3530
model = dict(
    type='MAEPretrainer',
    arch='mae_vit_tiny_patch16',
    img_size=28, patch_size=4, in_chans=1, depth=6, num_heads=3,
    decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
    mask_ratio=0.75, norm_pix_loss=True,
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[mean * 255], std=[std * 255]),
)
train_dataloader = dict(
    batch_size=256, num_workers=2, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    worker_init_fn=dict(type='seed_worker'),
    dataset=dict(type='FashionMNIST', root=data_root, split='train',
                 transform=dict(type='pretrain', img_size=28, scale=(0.5, 1.0))),
)
blr = 1.5e-4
optim_wrapper = dict(
    type='OptimWrapper', constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=None, betas=(0.9, 0.95), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=90, eta_min=0.0, by_epoch=True, begin=10, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100)
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=2))
custom_hooks = [dict(type='RNGStateHook'), dict(type='ModelSpecHook'),
                dict(type='ReconstructionHook', interval=10, num_images=8, mean=(mean,), std=(std,))]
