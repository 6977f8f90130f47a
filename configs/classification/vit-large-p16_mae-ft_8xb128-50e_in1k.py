# ViT-L/16 fine-tuning: blr 1e-3, layer decay 0.75, drop path 0.2, 50 epochs (facebookresearch/mae FINETUNE.md,
# ViT-L command), min_lr 1e-6 x each group's lr scale.
_base_ = './vit-base-p16_mae-ft_8xb128-100e_in1k.py'
pretrained = 'checkpoints/mae_pretrain_vit_large.pth'
model = dict(arch='vit_large_patch16', pretrained=pretrained, drop_path_rate=0.2)
blr = 1e-3
optim_wrapper = dict(paramwise_cfg=dict(layer_decay=0.75))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
    dict(type='LayerScaledCosineAnnealingLR', T_max=45, eta_min=1e-6, by_epoch=True, begin=5, end=50,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=50)
