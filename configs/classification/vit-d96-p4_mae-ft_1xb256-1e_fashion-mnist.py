# Fine-tune the Fashion-MNIST MAE (configs/mae/mae_vit-d96-p4_1xb256-10e_fashion-mnist.py) end to end:
# the paper's fine-tuning recipe scaled to a 6-block, 96-d ViT on 28x28 images and a one-epoch budget
# (235 iterations at batch 256: 20 warmup iterations, then cosine), no mixup, label smoothing 0.1.
# For longer runs set train_cfg.max_epochs and the schedulers' end / T_max together.
_base_ = [
    '../_base_/datasets/fashion_mnist_cls.py',
    '../_base_/default_runtime.py',
]
pretrained = 'work_dirs/mae_vit-d96-p4_1xb256-10e_fashion-mnist/epoch_10.pth'
finetune_blocks = 'all'
model = dict(
    type='MAEClassifier', arch='vit_tiny_patch16', num_classes=10, pretrained=pretrained,
    finetune_blocks=finetune_blocks, img_size=28, patch_size=4, in_chans=1, embed_dim=96, depth=6,
    num_heads=3, global_pool='avg', drop_path_rate=0.1, learnable_pos_embed=True, label_smoothing=0.1,
    data_preprocessor=dict(type='BaseDataPreprocessor'),
)
train_dataloader = dict(num_workers=0)
val_dataloader = dict(num_workers=0)
blr = 1e-3
optim_wrapper = dict(
    type='OptimWrapper', constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(layer_decay=0.75),
    optimizer=dict(type='AdamW', lr=None, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', T_max=215, eta_min=1e-6, by_epoch=False, begin=20, end=235),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=1, max_keep_ckpts=1))
