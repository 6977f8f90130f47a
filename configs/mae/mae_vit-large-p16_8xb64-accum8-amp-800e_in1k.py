# Paper recipe, ViT-L/16, 800 epochs: batch 4096 = 8 GPUs x 64 x 8 accumulation steps.
_base_ = './mae_vit-base-p16_8xb128-accum4-amp-800e_in1k.py'
model = dict(arch='mae_vit_large_patch16')
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(accumulative_counts=8)
