# Fine-tune the Fashion-MNIST MAE (configs/mae/mae_vit-tiny-p4_1xb256-100e_fashion-mnist.py) end to end:
# the paper's fine-tuning recipe scaled to a 6-block ViT on 28x28 images (no mixup, label smoothing 0.1).
_base_ = [
    '../_base_/datasets/fashion_mnist_cls.py',
    '../_base_/default_runtime.py',
]
pretrained = 'work_dirs/mae_vit-tiny-p4_1xb256-100e_fashion-mnist/epoch_100.pth'
finetune_blocks = 'all'
model = dict(
    type='MAEClassifier', arch='vit_tiny_patch16', num_classes=10, pretrained=pretrained,
    finetune_blocks=finetune_blocks, img_size=28, patch_size=4, in_chans=1, depth=6, num_heads=3,
    global_pool='avg', drop_path_rate=0.1, learnable_pos_embed=True, label_smoothing=0.1,
    data_preprocessor=dict(type='BaseDataPreprocessor'),
)
blr = 1e-3
optim_wrapper = dict(
    type='OptimWrapper', constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(layer_decay=0.75),
    optimizer=dict(type='AdamW', lr=None, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=2, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=18, eta_min=1e-6, by_epoch=True, begin=2, end=20,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=20, val_interval=5)
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=1))
