# End-to-end fine-tuning of an MAE ViT-B/16 (official FINETUNE.md recipe): batch 1024 = 8 GPUs x 128,
# drop path 0.1, mixup 0.8, cutmix 1.0, label smoothing 0.1, global average pooling.
_base_ = [
    '../_base_/datasets/imagenet_cls.py',
    '../_base_/schedules/finetune_adamw_100e.py',
    '../_base_/default_runtime.py',
]
pretrained = 'checkpoints/mae_pretrain_vit_base.pth'
finetune_blocks = 'all'  # number of last blocks to train: 'all', or k for partial fine-tuning
model = dict(
    type='MAEClassifier', arch='vit_base_patch16', num_classes=1000, pretrained=pretrained,
    finetune_blocks=finetune_blocks, global_pool='avg', drop_path_rate=0.1, learnable_pos_embed=True,
    mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1),
    data_preprocessor=dict(type='BaseDataPreprocessor'),
)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2, save_best='accuracy/top1', rule='greater'))
