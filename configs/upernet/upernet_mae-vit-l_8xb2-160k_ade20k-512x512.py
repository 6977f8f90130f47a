# ADE20K UperNet, MAE ViT-L (mmseg ships no ViT-L MAE config): blocks 7, 11, 15, 23 (BEiT-L's taps:
# unilm beit/semantic_segmentation/configs/beit/upernet/upernet_beit_large_24_512_slide_160k_ade20k_pt2ft.py),
# drop path 0.2 (BEiT-L), decode head 1024 channels (BEiT-L), lr 1e-4 (the ViT-B config's).
# Layer decay 0.8: the MAE paper (A.4) searched lr per entry and publishes no layer decay for ADE20K. 0.8 is
# ViTDet's published ViT-L value (detectron2 projects/ViTDet/configs/COCO/mask_rcnn_vitdet_l_100ep.py,
# lr 1e-4, as here), and it keeps block 0 at the same lr scale as ViT-B at 0.65 (0.8 ** 24 = 4.7e-3 vs
# 0.65 ** 12 = 5.7e-3). 0.65 over 24 blocks would leave block 0 at 3e-5 x lr (the lower half effectively
# frozen). The other published ViT-L UperNet recipe, BEiT-L's (unilm beit/semantic_segmentation/configs/beit/upernet/
# upernet_beit_large_24_512_slide_160k_ade20k{,_pt2ft}.py), is lr 2e-5 with layer decay 0.95, tuned for BEiT weights.
_base_ = ['./upernet_mae-vit-b_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(arch='large', out_indices=(7, 11, 15, 23), drop_path_rate=0.2,
                  init_cfg=dict(checkpoint='checkpoints/mae_pretrain_vit_large.pth')),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay=0.8))
