# MAE end-to-end fine-tuning, ViT-B: the official recipe of facebookresearch/mae FINETUNE.md (ViT-B command:
# --blr 5e-4 --layer_decay 0.65 --weight_decay 0.05 --drop_path 0.1 --epochs 100; the paper's Table 9 lists
# blr 1e-3 / layer decay 0.75 for every size, FINETUNE.md gives these per size and is what the released numbers
# use). AdamW (0.9, 0.999) (main_finetune.py: torch defaults), lr = blr x batch / 256, 5 warmup epochs, then
# half-cycle cosine to min_lr 1e-6 x each group's lr scale (util/lr_sched.py applies min_lr before the
# layer-decay scale: LayerScaledCosineAnnealingLR).
# Weight decay: none on 1-D tensors, biases, cls_token and pos_embed (util/lr_decay.param_groups_lrd with
# no_weight_decay_list = model.no_weight_decay(): rule 'norm_bias_declared').
blr = 5e-4
optim_wrapper = dict(
    type='AutocastOptimWrapper', dtype='bfloat16',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay=0.65, weight_decay_rule='norm_bias_declared'),
    optimizer=dict(type='AdamW', lr=None, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='LayerScaledCosineAnnealingLR', T_max=95, eta_min=1e-6, by_epoch=True, begin=5, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100, val_interval=1)
