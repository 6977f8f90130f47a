# MAE ViT-B/16 with the paper's default decoder (512-d, 8 blocks, 16 heads).
model = dict(
    type='MAEPretrainer',
    arch='mae_vit_base_patch16',
    img_size=224,
    mask_ratio=0.75,
    norm_pix_loss=True,
    masking='random',
    data_preprocessor=dict(
        type='ImgDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375]),
)
