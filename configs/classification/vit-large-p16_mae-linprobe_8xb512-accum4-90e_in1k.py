# Linear probing of an MAE ViT-L/16 (paper Table 10): the ViT-B recipe with the large encoder.
_base_ = './vit-base-p16_mae-linprobe_8xb512-accum4-90e_in1k.py'
model = dict(arch='vit_large_patch16', pretrained='checkpoints/mae_pretrain_vit_large.pth')
