# mmdet's own stock config, shipped in the mmdet package, with only the backbone (and the FPN's
# in_channels) switched to the MAE ViT-B (MAE-paper FPN adaptation). Everything else -- data
# pipeline (1333x800), SGD 1x schedule, heads -- is mmdet's. Not a paper recipe (no published ViT recipe
# resembles SGD 1x): expect far lower AP than the paper; the LSJ configs are the paper's.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['downstream'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='MAEViT',
        arch='base',
        out_indices=(2, 5, 8, 11),       # MAE paper A.3 taps, as in _base_/mask-rcnn_mae-vit-b_fpn.py
        pyramid=dict(rescales=(4, 2, 1, 0.5), norm='SyncBN'),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/mae_pretrain_vit_base.pth')),
    neck=dict(in_channels=[768, 768, 768, 768]))
# --amp bf16 runs the backbone in bf16 and keeps the rest in fp32 (mmcv's detection ops have no bf16 kernels);
# the config's own precision applies otherwise
autocast_modules = dict(backbone=None)
