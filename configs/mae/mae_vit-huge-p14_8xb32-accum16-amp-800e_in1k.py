# Paper recipe, ViT-H/14, 800 epochs: batch 4096 = 8 GPUs x 32 x 16 accumulation steps.
_base_ = './mae_vit-base-p16_8xb128-accum4-amp-800e_in1k.py'
model = dict(arch='mae_vit_huge_patch14')
train_dataloader = dict(batch_size=32)
optim_wrapper = dict(accumulative_counts=16)
