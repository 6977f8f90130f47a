# Fine-tune the Fashion-MNIST MAE (configs/mae/mae_vit-d96-p4_1xb256-10e_fashion-mnist.py) end to end:
# the paper's fine-tuning recipe scaled to a 6-block, 96-d ViT on 28x28 images and a one-epoch budget
# (235 iterations at batch 256: 20 warm-up iterations, cosine to the end), no mixup, label smoothing 0.1.
# Longer budgets: --cfg-options epochs=E (docs/partial_finetuning.md: 1 epoch on a CPU, 20 on a GPU).
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
# 20 warm-up iterations, and a cosine over the whole budget counted in epochs, so that `--cfg-options epochs=E`
# (tools/train.py) or `--epochs E` (tools/partial_finetune_study.py) moves its end with the budget while the warm-up
# keeps its length (main_finetune.py keeps --warmup_epochs when --epochs changes). The two overlap as in mmdet's
# schedules (the warm-up factor multiplies the cosine): the lr peaks at 0.98x base at iteration 20 of one epoch.
# Each group's floor is eta_min x its layer-decay scale, as util/lr_sched.py applies min_lr before the scale.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
    dict(type='LayerScaledCosineAnnealingLR', T_max=1, eta_min=1e-6, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=1, max_keep_ckpts=1))
