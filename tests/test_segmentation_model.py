"""Segmentation transfer, the model side: feature strides, the official checkpoint through init_cfg,
one training step on the ADE-layout photos, sliding-window, test-time padding and multi-scale + flip inference."""
import os.path as osp

import pytest
import torch

pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import downstream  # noqa: E402,F401

ROOT = osp.join(osp.dirname(__file__), "..")
TINY = osp.join(ROOT, "configs", "upernet", "upernet_mae-vit-tiny_1xb2-300i_offline-voc-arc.py")


def test_sliding_window_inference_returns_a_full_size_map():
    from mmseg.registry import MODELS
    cfg = Config.fromfile(TINY)
    cfg.model.test_cfg = dict(mode="slide", crop_size=(128, 128), stride=(85, 85))
    init_default_scope("mmseg")
    model = MODELS.build(cfg.model).eval()
    x = torch.randn(1, 3, 224, 352)  # larger than the crop in both directions, not a multiple of the stride
    meta = dict(img_shape=(224, 352), ori_shape=(224, 352), pad_shape=(224, 352))
    with torch.no_grad():
        logits = model.inference(x, [meta])
    assert logits.shape == (1, 12, 224, 352) and torch.isfinite(logits).all()


def test_multi_scale_flip_test_config_runs_on_odd_sizes(tmp_path):
    """The ms-flip test config end to end on the ADE-layout photos (a tiny backbone in the ViT-B config):
    12 views (6 scales of the 512 test size x 2 flips), scaled sizes that are not multiples of the patch
    size (the preprocessor pads at test time), sliding windows, one full-size prediction per image."""
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import DATASETS, MODELS

    from mae_backbone.data.offline_ade import write_offline_ade
    write_offline_ade(tmp_path)
    cfg = _small_paper_cfg("upernet_mae-vit-b_8xb2-160k_ade20k-512x512_ms-flip-test.py")
    # 12 output classes, as many as the offline maps hold: sliding-window inference pads and resizes the logits of
    # every view at full size, which for ADE20K's 150 classes is most of this test's time
    cfg.model.decode_head.num_classes = cfg.model.auxiliary_head.num_classes = 12
    ds_cfg = cfg.test_dataloader.dataset
    ds_cfg.update(data_root=f"{tmp_path}/", data_prefix=dict(img_path="images/validation",
                                                             seg_map_path="annotations/validation"))
    cfg.tta_model.module = cfg.model
    init_default_scope("mmseg")
    ds = DATASETS.build(ds_cfg)
    tta = MODELS.build(cfg.tta_model).eval()
    for i in range(1):  # the 500 x 375 VOC photo: 250 x 188 .. 1194 x 896 views
        item = ds[i]
        shapes = {tuple(s.img_shape) for s in item["data_samples"]}
        assert len(item["inputs"]) == 12 and any(h % 16 or w % 16 for h, w in shapes), shapes
        with torch.no_grad():
            (pred,) = tta.test_step(pseudo_collate([item]))
        h, w = item["data_samples"][0].ori_shape
        assert pred.pred_sem_seg.data.shape == (1, h, w)
        assert pred.gt_sem_seg.data.shape == (1, h, w)


def _small_paper_cfg(name="upernet_mae-vit-b_8xb2-160k_ade20k-512x512.py", embed=64, depth=4, heads=2):
    """A ViT-B paper config with a small encoder (same code path: rel-pos bias, pyramid, UperNet + FCN)."""
    cfg = Config.fromfile(osp.join(ROOT, "configs", "upernet", name))
    m = cfg.model
    m.backbone.update(arch=dict(embed_dim=embed, depth=depth, num_heads=heads), out_indices=(0, 1, 2, 3),
                      init_cfg=None)
    cfg.autocast_modules = dict(backbone=None)  # fp32, as on any CPU
    m.backbone.pyramid.norm = "BN"
    m.decode_head.update(in_channels=[embed] * 4, channels=32, norm_cfg=dict(type="BN"))
    m.auxiliary_head.update(in_channels=embed, channels=16, norm_cfg=dict(type="BN"))
    return cfg


@pytest.mark.parametrize("hw", [(256, 256), (224, 352)])
def test_feature_shapes_at_strides_4_to_32(hw):
    from mmseg.registry import MODELS
    init_default_scope("mmseg")
    model = MODELS.build(_small_paper_cfg().model).eval()
    H, W = hw
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, H, W))
        logits = model.encode_decode(torch.randn(1, 3, H, W), [dict(img_shape=hw, ori_shape=hw, pad_shape=hw)])
    assert [tuple(f.shape[-2:]) for f in feats] == [(H // s, W // s) for s in (4, 8, 16, 32)]
    assert all(f.shape[1] == 64 for f in feats)  # the pyramid keeps the encoder's width
    assert logits.shape == (1, 150, H, W)


def test_official_mae_checkpoint_loads_through_init_cfg(tmp_path, monkeypatch):
    """An official-layout MAE checkpoint (224 pretraining, full model with decoder) loads into the 512 UperNet
    backbone: the position table is resized to 32 x 32 and reported; only the relative position tables and the
    pyramid are missing; the decoder, mask token and final norm are the only unused tensors; the log has the report."""
    import re

    from mmseg.registry import MODELS

    from mae_backbone.models import MaskedAutoencoder
    mae = MaskedAutoencoder(img_size=224, patch_size=16, embed_dim=64, depth=4, num_heads=2, decoder_embed_dim=32,
                            decoder_depth=1, decoder_num_heads=2)
    sd = mae.state_dict()
    ckpt = tmp_path / "mae_pretrain_small.pth"
    torch.save({"model": sd, "epoch": 1599}, ckpt)
    cfg = _small_paper_cfg()
    cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(ckpt))
    init_default_scope("mmseg")
    model = MODELS.build(cfg.model)
    import downstream.backbone as backbone_module
    logged = []
    monkeypatch.setattr(backbone_module, "print_log", lambda msg, **kw: logged.append((msg, kw)))
    model.init_weights()
    bb = model.backbone
    report = bb.load_report
    assert report.source == "official" and bb.grid == (32, 32)
    assert report.resized == ["pos_embed (1, 197, 64)->(1, 1025, 64)"], report.resized
    new = re.compile(r"^(blocks\.\d+\.attn\.rel_pos_bias\.table|pyramid\..*)$")
    assert all(new.match(k) for k in report.missing), report.missing
    assert sum(k.endswith("rel_pos_bias.table") for k in report.missing) == 4
    assert any(k.startswith("pyramid.") for k in report.missing)
    unused = set(report.unexpected)
    assert {"mask_token", "norm.weight", "norm.bias"} <= unused and all(
        k in ("mask_token", "norm.weight", "norm.bias") or k.startswith("decoder_") for k in unused), unused
    for k in ("blocks.3.attn.qkv.weight", "patch_embed.proj.weight", "cls_token"):
        assert torch.equal(bb.state_dict()[k], sd[k])
    assert bb.pos_embed.shape == (1, 1 + 32 * 32, 64)
    assert all((b.attn.rel_pos_bias.table == 0).all() for b in bb.blocks)  # zero-initialised
    (msg, kw), = [m for m in logged if "MAEViT: loaded" in m[0]]  # the report goes to mmengine's current logger
    assert str(report) in msg and "resized 1 (pos_embed" in msg and kw.get("logger") == "current"


def test_one_training_iteration_on_ade_layout_data(tmp_path):
    """Two samples of the ADE-layout photos through the tiny config's pipeline: finite decode / auxiliary
    losses, gradients reach the first block, the relative position tables and the patch embedding."""
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import DATASETS, MODELS

    from mae_backbone.data.offline_ade import write_offline_ade
    write_offline_ade(tmp_path)
    torch.manual_seed(0)
    cfg = Config.fromfile(TINY)
    cfg.model.backbone.rel_pos = "bias"  # the paper setting, in the tiny encoder
    init_default_scope("mmseg")
    ds = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=f"{tmp_path}/"))
    model = MODELS.build(cfg.model).train()
    data = model.data_preprocessor(pseudo_collate([ds[0], ds[1]]), True)
    losses = model(**data, mode="loss")
    for k in ("decode.loss_ce", "aux.loss_ce"):
        assert torch.isfinite(losses[k]) and losses[k].item() > 0, k
    sum(v for k, v in losses.items() if "loss" in k).backward()
    bb = model.backbone
    for p in (bb.blocks[0].attn.qkv.weight, bb.blocks[0].attn.rel_pos_bias.table, bb.patch_embed.proj.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_test_time_padding_is_cropped_back_exactly():
    """An image whose size is not a multiple of 16: the config's preprocessor pads it (bottom / right) for the
    backbone, and the prediction equals the padded forward cropped back (not resized), pixel for pixel."""
    import torch.nn.functional as F
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    torch.manual_seed(0)
    cfg = _small_paper_cfg()
    cfg.model.test_cfg = dict(mode="whole")
    init_default_scope("mmseg")
    model = MODELS.build(cfg.model).eval()
    h, w = 100, 150
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
    sample.gt_sem_seg = PixelData(data=torch.zeros(1, h, w, dtype=torch.long))
    with torch.no_grad():
        (pred,) = model.test_step(dict(inputs=[img], data_samples=[sample]))
        pre = model.data_preprocessor
        x = (img.float()[[2, 1, 0]] - pre.mean) / pre.std  # bgr_to_rgb, normalise
        x = F.pad(x, (0, 160 - w, 0, 112 - h))[None]
        logits = model.encode_decode(x, [dict(img_shape=(112, 160), pad_shape=(112, 160), ori_shape=(112, 160))])
    assert pred.seg_logits.data.shape == (150, h, w)
    torch.testing.assert_close(pred.seg_logits.data, logits[0, :, :h, :w], rtol=1e-5, atol=1e-5)
