# MAE on Fashion-MNIST (60k 28x28 grey training images, labels unused), Debian package
# dataset-fashion-mnist. A 6-block, 96-d ViT on 7x7 patches of 4x4, sized for a 2-core CPU
# (80 s per epoch there); the partial fine-tuning study (docs/partial_finetuning.md) starts from it.
_base_ = ['../_base_/default_runtime.py']
data_root = '/usr/share/datasets/fashion-mnist'
mean, std = 0.2860, 0.3530
model = dict(
    type='MAEPretrainer',
    arch='mae_vit_tiny_patch16',
    img_size=28, patch_size=4, in_chans=1, embed_dim=96, depth=6, num_heads=3,
    decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2,
    mask_ratio=0.75, norm_pix_loss=True,
    data_preprocessor=dict(type='ImgDataPreprocessor', mean=[mean * 255], std=[std * 255]),
)
train_dataloader = dict(
    batch_size=256, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    worker_init_fn=dict(type='seed_worker'),
    dataset=dict(type='FashionMNIST', root=data_root, split='train',
                 transform=dict(type='pretrain', img_size=28, scale=(0.5, 1.0))),
)
# a short schedule: blr 1.5e-3 (10x the paper's, which assumes 800 epochs at batch 4096)
blr = 1.5e-3
optim_wrapper = dict(
    type='OptimWrapper', constructor='LayerDecayOptimWrapperConstructor',
    # cls / mask tokens exempt from weight decay (the rule that produced docs/partial_finetuning.md); the paper configs decay them as
    # main_pretrain.py does (weight_decay_rule='norm_bias')
    paramwise_cfg=dict(weight_decay_rule='norm_bias_declared'),
    optimizer=dict(type='AdamW', lr=None, betas=(0.9, 0.95), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=9, eta_min=1e-5, by_epoch=True, begin=1, end=10,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=10)
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=5, max_keep_ckpts=2))
custom_hooks = [dict(type='RNGStateHook'), dict(type='ModelSpecHook'),
                dict(type='ReconstructionHook', interval=5, num_images=8, mean=(mean,), std=(std,))]
