# Paper recipe, ViT-B/16, 800 epochs: batch 4096 = 8 GPUs x 128 x 4 accumulation steps.
_base_ = [
    '../_base_/models/mae_vit-base-p16.py',
    '../_base_/datasets/imagenet_mae.py',
    '../_base_/schedules/mae_pretrain_800e.py',
    '../_base_/default_runtime.py',
]
optim_wrapper = dict(accumulative_counts=4)
custom_hooks = [dict(type='RNGStateHook'), dict(type='ModelSpecHook'), dict(type='ReconstructionHook', interval=50)]
