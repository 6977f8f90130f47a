# Multi-scale (0.5 .. 1.75) + flip evaluation of the ViT-L UperNet, sliding 512 windows at each scale:
#   python tools/test.py configs/upernet/upernet_mae-vit-l_8xb2-160k_ade20k-512x512_ms-flip-test.py CKPT --tta
_base_ = ['./upernet_mae-vit-l_8xb2-160k_ade20k-512x512.py']
tta_model = dict(type='SegTTAModel')
test_dataloader = dict(dataset=dict(pipeline={{_base_.tta_pipeline}}))
val_dataloader = test_dataloader
