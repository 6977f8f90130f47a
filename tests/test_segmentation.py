"""Segmentation transfer (issue 5, in progress): MAEViT in mmseg."""
import os.path as osp

import pytest
import torch

pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import downstream  # noqa: E402,F401

ROOT = osp.join(osp.dirname(__file__), "..")


def _unscoped(d):
    if isinstance(d, dict):
        return {k: _unscoped(v) for k, v in d.items() if k != "_scope_"}
    return [_unscoped(v) for v in d] if isinstance(d, (list, tuple)) else d


def test_stock_mmseg_mae_config_with_only_the_backbone_type_switched():
    import mmseg
    from mmseg.registry import MODELS
    ours = Config.fromfile(osp.join(ROOT, "configs", "upernet",
                                    "upernet_mae-vit-b_stock-mmseg-mae_8xb2-amp-160k_ade20k-512x512.py"))
    stock = Config.fromfile(osp.join(osp.dirname(mmseg.__file__), ".mim", "configs", "mae",
                                     "mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py"))
    a, b = _unscoped(ours.to_dict()), _unscoped(stock.to_dict())
    a.pop("custom_imports")
    assert a["model"]["backbone"].pop("type") == "MAEViT" and b["model"]["backbone"].pop("type") == "MAE"
    assert a["model"].pop("pretrained").endswith("mae_pretrain_vit_base.pth")
    b["model"].pop("pretrained")
    assert a == b  # every other key, the backbone's arguments included, is mmseg's
    init_default_scope("mmseg")
    ours.model.pretrained = None
    model = MODELS.build(ours.model).eval()
    assert model.backbone.grid == (32, 32) and model.backbone.blocks[0].ls1.gamma.shape == (768,)
    x = torch.randn(1, 3, 512, 512)
    meta = dict(img_shape=(512, 512), ori_shape=(512, 512), pad_shape=(512, 512))
    with torch.no_grad():
        feats = model.extract_feat(x)
        logits = model.encode_decode(x, [meta])
    assert [f.shape[-1] for f in feats] == [128, 64, 32, 16] and all(f.shape[1] == 768 for f in feats)
    assert logits.shape == (1, 150, 512, 512) and torch.isfinite(logits).all()
