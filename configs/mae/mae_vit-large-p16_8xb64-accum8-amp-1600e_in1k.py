# Paper recipe, ViT-L/16, 1600 epochs (the paper's main ViT-L result).
_base_ = './mae_vit-base-p16_8xb128-accum4-amp-1600e_in1k.py'
model = dict(arch='mae_vit_large_patch16')
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(accumulative_counts=8)
