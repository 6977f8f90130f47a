# ADE20K UperNet, MAE ViT-B: blocks 3, 5, 7, 11, relative position bias, layer decay 0.65, drop path 0.1,
# 160k iterations at batch 16 (8 GPUs x 2). Test: images resized to 512 short side, sliding 512x512 windows
# (stride 341); ..._ms-flip-test.py adds the multi-scale + flip protocol (tools/test.py --tta).
#   bash tools/dist_train.sh configs/upernet/upernet_mae-vit-b_8xb2-160k_ade20k-512x512.py 8
# Data: data/ade/ADEChallengeData2016/{images,annotations}/{training,validation}
_base_ = ['./_base_/upernet_mae-vit-b.py', './_base_/ade20k_160k_adamw-lrd.py']
model = dict(test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
