# MAE pretraining schedule (paper Table 8): AdamW(0.9, 0.95), wd 0.05, lr = blr * batch / 256,
# blr 1.5e-4, 40 warmup epochs then cosine. lr=None: tools/train.py derives it from blr and the
# effective batch (per-GPU batch x accumulation x GPUs).
blr = 1.5e-4
optim_wrapper = dict(
    type='AutocastOptimWrapper',  # bf16 autocast on GPU or CPU; --amp fp16 for fp16 with loss scaling
    dtype='bfloat16',
    constructor='LayerDecayOptimWrapperConstructor',
    # no weight decay on 1-D tensors and biases only; cls_token and mask_token decay: facebookresearch/mae
    # main_pretrain.py optim_factory.add_weight_decay(model, 0.05) (timm 0.3.2, no skip list)
    paramwise_cfg=dict(weight_decay_rule='norm_bias'),
    optimizer=dict(type='AdamW', lr=None, betas=(0.9, 0.95), weight_decay=0.05),
    accumulative_counts=1,
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=40,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=760, eta_min=0.0, by_epoch=True, begin=40, end=800,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=800)
