# Linear probing on Fashion-MNIST: cls token, BatchNorm1d(affine=False) + Linear, LARS (paper Table 10
# scaled down: blr 0.1, batch 256, 2 warmup epochs, 20 epochs); RandomResizedCrop + flip only.
_base_ = [
    '../_base_/datasets/fashion_mnist_cls.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='MAEClassifier', arch='vit_tiny_patch16', num_classes=10,
    pretrained='work_dirs/mae_vit-tiny-p4_1xb256-100e_fashion-mnist/epoch_100.pth',
    finetune_blocks=0, img_size=28, patch_size=4, in_chans=1, depth=6, num_heads=3,
    global_pool='token', linear_probe=True,
    data_preprocessor=dict(type='BaseDataPreprocessor'),
)
train_dataloader = dict(dataset=dict(transform=dict(re_prob=0.0)))
blr = 0.1
optim_wrapper = dict(
    type='OptimWrapper', constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='LARS', lr=None, weight_decay=0.0, momentum=0.9))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=2, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=18, eta_min=0.0, by_epoch=True, begin=2, end=20,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=20, val_interval=5)
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=1))
