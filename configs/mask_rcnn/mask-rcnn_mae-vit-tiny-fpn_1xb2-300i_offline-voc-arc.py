# A tiny MAE ViT (fpn variant, 192-d, 6 blocks) Mask R-CNN trained from scratch on the offline
# VOC / ARC photos (tools/make_offline_coco.py) on CPU in minutes, evaluated by CocoMetric.
#   python tools/make_offline_coco.py data/offline_coco
#   python tools/train.py configs/mask_rcnn/mask-rcnn_mae-vit-tiny-fpn_1xb2-300i_offline-voc-arc.py
#   python tools/test.py  configs/mask_rcnn/mask-rcnn_mae-vit-tiny-fpn_1xb2-300i_offline-voc-arc.py \
#       work_dirs/mask-rcnn_mae-vit-tiny-fpn_1xb2-300i_offline-voc-arc/iter_300.pth --show-dir vis
_base_ = ['./_base_/mask-rcnn_mae-vit-b_fpn.py', './_base_/offline-voc-arc_instance.py']
C = 128  # neck / head width (stock 256)
autocast_modules = dict(backbone=None)  # fp32 on any CPU (--amp bf16 turns these parts to bf16)
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dim=192, depth=6, num_heads=3), img_size=(288, 384), out_indices=(1, 2, 3, 5),
                  pyramid=dict(norm='LN'), drop_path_rate=0.0, init_cfg=None,
                  final_norm=True),  # LayerNorm the maps: from scratch, unnormalised ViT maps train far slower
    neck=dict(in_channels=[192, 192, 192, 192], out_channels=C),
    rpn_head=dict(in_channels=C, feat_channels=C),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=C),
        bbox_head=dict(in_channels=C, fc_out_channels=256, num_classes=12),
        mask_roi_extractor=dict(out_channels=C),
        mask_head=dict(in_channels=C, conv_out_channels=C, num_classes=12)),
    # CPU-sized sampling: 128 RoIs per image (stock 512), fewer proposals
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=500), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)))

