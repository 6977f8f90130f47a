# Linear probing of an MAE ViT-H/14 (paper Table 10): the ViT-B recipe with the huge encoder.
_base_ = './vit-base-p16_mae-linprobe_8xb512-accum4-90e_in1k.py'
model = dict(arch='vit_huge_patch14', pretrained='checkpoints/mae_pretrain_vit_huge.pth')
