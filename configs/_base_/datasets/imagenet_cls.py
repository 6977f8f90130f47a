# ImageNet-1K classification (any ImageNet-style folder: train/<wnid>/*.JPEG, val/<wnid>/*.JPEG).
# Fine-tuning augmentation (official recipe, paper Table 9): RandomResizedCrop (bicubic), flip, RandAugment(9, 0.5),
# random erasing 0.25; no colour jitter. Evaluation: resize 256, centre crop 224.
data_root = 'data/imagenet/'
# labelled: root/<class>/<image> (or a flat val folder with labels_file=.../LOC_val_solution.csv); the
# class count must match the model's (a val split missing a class would shift every later index)
num_classes = 1000
train_dataloader = dict(
    # drop_last: timm Mixup needs even batches, and a last batch of 1 breaks the probe's BatchNorm
    batch_size=128, num_workers=10, persistent_workers=False, pin_memory=True, drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    worker_init_fn=dict(type='seed_worker'),
    dataset=dict(type='ImageFolder', root=data_root + 'train', labelled=True, num_classes=num_classes,
                 transform=dict(type='timm_train', img_size=224, interpolation='bicubic',
                                auto_augment='rand-m9-mstd0.5-inc1', color_jitter=None,
                                re_prob=0.25, re_mode='pixel', re_count=1)),
)
val_dataloader = dict(
    batch_size=256, num_workers=10, persistent_workers=False, pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageFolder', root=data_root + 'val', labelled=True, num_classes=num_classes,
                 transform=dict(type='timm_eval', img_size=224, crop_pct=0.875, interpolation='bicubic')),
)
val_evaluator = dict(type='TopKAccuracy', topk=(1, 5))
val_cfg = dict(type='ValLoop')
test_dataloader = val_dataloader
test_evaluator = val_evaluator
test_cfg = dict(type='TestLoop')
