# Linear probing on Fashion-MNIST: cls token, BatchNorm1d(affine=False) + Linear, LARS (paper Table 10
# scaled down: blr 0.1, batch 256, one epoch); RandomResizedCrop + flip only.
_base_ = './vit-d96-p4_mae-ft_1xb256-1e_fashion-mnist.py'
model = dict(finetune_blocks=0, global_pool='token', linear_probe=True, drop_path_rate=0.0,
             learnable_pos_embed=False, label_smoothing=0.0)
train_dataloader = dict(dataset=dict(transform=dict(re_prob=0.0)))
blr = 0.1
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper', constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='LARS', lr=None, weight_decay=0.0, momentum=0.9))
