# Linear probing (paper Table 10): cls token, BatchNorm1d(affine=False) + Linear head, everything
# else frozen; LARS, blr 0.1, batch 16384 = 8 GPUs x 512 x 4 accumulation; RandomResizedCrop + flip.
_base_ = [
    '../_base_/datasets/imagenet_cls.py',
    '../_base_/schedules/linprobe_lars_90e.py',
    '../_base_/default_runtime.py',
]
model = dict(
    type='MAEClassifier', arch='vit_base_patch16', num_classes=1000,
    pretrained='checkpoints/mae_pretrain_vit_base.pth',
    finetune_blocks=0, global_pool='token', linear_probe=True,
    data_preprocessor=dict(type='BaseDataPreprocessor'),
)
train_dataloader = dict(
    batch_size=512,
    dataset=dict(transform=dict(_delete_=True, type='timm_train', img_size=224, interpolation='bicubic',
                                scale=(0.08, 1.0), color_jitter=None, auto_augment=None, re_prob=0.0)))
optim_wrapper = dict(accumulative_counts=4)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2, save_best='accuracy/top1', rule='greater'))
