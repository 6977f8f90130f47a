# Paper recipe, ViT-H/14, 1600 epochs.
_base_ = './mae_vit-base-p16_8xb128-accum4-amp-1600e_in1k.py'
model = dict(arch='mae_vit_huge_patch14')
train_dataloader = dict(batch_size=32)
optim_wrapper = dict(accumulative_counts=16)
