# Fashion-MNIST classification (Debian package dataset-fashion-mnist): 60k train / 10k test, 28x28 grey.
data_root = '/usr/share/datasets/fashion-mnist'
mean, std = (0.2860,), (0.3530,)
train_dataloader = dict(
    batch_size=256, num_workers=2, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    worker_init_fn=dict(type='seed_worker'),
    dataset=dict(type='FashionMNIST', root=data_root, split='train',
                 transform=dict(type='timm_train', img_size=28, scale=(0.5, 1.0), interpolation='bicubic',
                                color_jitter=None, auto_augment=None, re_prob=0.25, mean=mean, std=std)),
)
val_dataloader = dict(
    batch_size=512, num_workers=2, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='FashionMNIST', root=data_root, split='test',
                 transform=dict(type='timm_eval', img_size=28, crop_pct=1.0, interpolation='bicubic',
                                mean=mean, std=std)),
)
val_evaluator = dict(type='TopKAccuracy', topk=(1, 5))
val_cfg = dict(type='ValLoop')
test_dataloader = val_dataloader
test_evaluator = val_evaluator
test_cfg = dict(type='TestLoop')
