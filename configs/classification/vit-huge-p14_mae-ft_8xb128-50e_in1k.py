# ViT-H/14 fine-tuning: as ViT-L with drop path 0.3 (official FINETUNE.md recipe).
_base_ = './vit-large-p16_mae-ft_8xb128-50e_in1k.py'
pretrained = 'checkpoints/mae_pretrain_vit_huge.pth'
model = dict(arch='vit_huge_patch14', pretrained=pretrained, drop_path_rate=0.3)
