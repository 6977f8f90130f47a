# COCO instance segmentation, 1024x1024 large-scale jitter (scale 0.1-2.0), ~100 epochs
# (RepeatDataset x4 for 25 epochs, lr steps at 88 / 96 epochs), batch 64 = 16 GPUs x 4,
# AdamW lr 1e-4 wd 0.1 with layer-wise lr decay from the backbone's layer_id(). Mixed precision:
# the model configs run the backbone (and ViTDet neck) in bf16 autocast (autocast_modules); mmcv's
# RoIAlign / NMS have no bf16 kernels, so the heads stay fp32 (fp16 on GPU: --amp fp16).
# CocoMetric (pycocotools) for bbox and segm. Model configs set layer_decay.
_base_ = ['mmdet::common/lsj-100e_coco-instance.py']  # the model bases import downstream (PadToCanvas)

image_size = (1024, 1024)
# Canvas: every image is seen on a 1024x1024 canvas (a 64x64 token grid), in training and at test time.
# Training: the paper configs' data_preprocessor.batch_augments=BatchFixedSizePad pads each batch to 1024x1024
# with 0 after normalisation. mmdet's DetDataPreprocessor runs batch augments in training only, so the test
# pipeline pads itself (PadToCanvas below): detectron2 pads the inference batch to a 1024 square as well
# (configs/common/models/mask_rcnn_vitdet.py square_pad=1024 -> modeling/meta_arch/rcnn.py preprocess_image ->
# ImageList.from_tensors(..., padding_constraints={'square_size': 1024}), pad value 0 after normalisation);
# mmdet projects/ViTDet/configs/lsj-100e_coco-instance.py has Pad(size=(1024, 1024)) in its test_pipeline.
# Without it a 4:3 image would run on a 64x48 grid, never seen in training (absolute and global-block
# relative position tables re-interpolated). PadToCanvas rather than mmcv's Pad: Pad overwrites img_shape with
# the canvas, so boxes would be clipped to the canvas instead of the image (detectron2 clips to the image).
# Pad value: the ImageNet mean in the loaded image's BGR order, i.e. 0 after normalisation as in detectron2
# (mmdet's ViTDet project pads with 114 grey).
test_pad_value = (104, 116, 124)

backend_args = None
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),  # long side 1024 (detectron2 ResizeShortestEdge(1024, max_size=1024))
    dict(type='PadToCanvas', size=image_size, pad_val=test_pad_value),  # bottom / right, to the 1024x1024 canvas
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=4, num_workers=4)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    # layer decay 0.7 (ViT-B; L configs 0.8): detectron2 projects/ViTDet/configs/COCO/mask_rcnn_vitdet_{b,l}_100ep.py
    # weight-decay exemptions: detectron2's (norm layers and pos_embed only; biases and relative-position tables
    # decay): projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py optimizer = configs/common/optim.py AdamW
    # with params.overrides={'pos_embed': {'weight_decay': 0}} -> solver/build.py get_default_optimizer_params
    # (weight_decay_norm=0)
    paramwise_cfg=dict(layer_decay=0.7, weight_decay_rule='norm_layers_pos_embed'),
    # lr 1e-4, betas (0.9, 0.999), wd 0.1, no clipping: detectron2 configs/common/optim.py AdamW as
    # projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py sets it
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    clip_grad=None)

max_epochs = 25
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[22, 24], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2, save_last=True))
custom_hooks = [dict(type='RNGStateHook'), dict(type='ModelSpecHook')]
# TensorBoard scalars (loss terms, lr, metrics) next to mmengine's local logs, as the pretraining configs do
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(vis_backends=vis_backends)
auto_scale_lr = dict(enable=False, base_batch_size=64)
