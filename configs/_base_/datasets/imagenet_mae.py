# ImageNet-1K (any ImageNet-style folder) with the MAE pretraining augmentation:
# RandomResizedCrop(224, scale=(0.2, 1.0), bicubic) + horizontal flip; no labels used.
data_root = 'data/imagenet/'
train_dataloader = dict(
    batch_size=128,
    num_workers=10,
    # non-persistent workers + seed_worker: fresh augmentations each epoch, exact on resume
    persistent_workers=False,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    worker_init_fn=dict(type='seed_worker'),
    dataset=dict(
        type='ImageFolder',
        root=data_root + 'train',
        on_error='raise',
        transform=dict(type='pretrain', img_size=224, scale=(0.2, 1.0))),
)
