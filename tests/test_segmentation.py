"""Segmentation transfer, configs and data: the UperNet configs, the stock mmseg swap (model and layer
decay), the offline ADE-layout data, label and class-count checks, the overfit run (model side: test_segmentation_model.py)."""
import os.path as osp

import pytest
import torch

pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import downstream  # noqa: E402,F401

ROOT = osp.join(osp.dirname(__file__), "..")
TINY = osp.join(ROOT, "configs", "upernet", "upernet_mae-vit-tiny_1xb2-300i_offline-voc-arc.py")


def _unscoped(d):
    if isinstance(d, dict):
        return {k: _unscoped(v) for k, v in d.items() if k != "_scope_"}
    return [_unscoped(v) for v in d] if isinstance(d, (list, tuple)) else d


def test_stock_mmseg_mae_config_with_only_the_backbone_type_and_constructor_switched():
    import mmseg
    from mmseg.registry import MODELS
    ours = Config.fromfile(osp.join(ROOT, "configs", "upernet",
                                    "upernet_mae-vit-b_stock-mmseg-mae_8xb2-amp-160k_ade20k-512x512.py"))
    stock = Config.fromfile(osp.join(osp.dirname(mmseg.__file__), ".mim", "configs", "mae",
                                     "mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py"))
    a, b = _unscoped(ours.to_dict()), _unscoped(stock.to_dict())
    a.pop("custom_imports")
    assert a.pop("autocast_modules") == dict(backbone=None)  # --amp bf16: the backbone only
    assert a["model"]["backbone"].pop("type") == "MAEViT" and b["model"]["backbone"].pop("type") == "MAE"
    assert a["optim_wrapper"].pop("constructor") == "MAEViTLayerDecayOptimizerConstructor"
    assert b["optim_wrapper"].pop("constructor") == "LayerDecayOptimizerConstructor"
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


def _lr_scales(model, optim_cfg):
    from mmengine.optim import build_optim_wrapper
    wrapper = build_optim_wrapper(model, optim_cfg)
    ids = {id(p): n for n, p in model.named_parameters()}
    return {ids[id(p)]: (g["lr"] / optim_cfg.optimizer.lr, g["weight_decay"])
            for g in wrapper.optimizer.param_groups for p in g["params"]}


def test_stock_mmseg_mae_swap_builds_mmsegs_model_and_layer_decay():
    """The swapped stock config builds what mmseg's MAE builds (relative position bias in every block, layer
    scale, same parameter count), and its MAEViTLayerDecayOptimizerConstructor gives our blocks the lr per layer
    that mmseg's LayerDecayOptimizerConstructor gives mmseg's MAE."""
    import copy

    import mmseg
    from mmseg.registry import MODELS
    ours_cfg = Config.fromfile(osp.join(ROOT, "configs", "upernet",
                                        "upernet_mae-vit-b_stock-mmseg-mae_8xb2-amp-160k_ade20k-512x512.py"))
    stock_cfg = Config.fromfile(osp.join(osp.dirname(mmseg.__file__), ".mim", "configs", "mae",
                                         "mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py"))
    init_default_scope("mmseg")
    models = []
    for cfg in (ours_cfg, stock_cfg):
        cfg.model.pretrained = None
        for part in ("decode_head", "auxiliary_head", "neck"):
            cfg.model[part].pop("norm_cfg", None)  # SyncBN needs a process group: the heads' defaults (BN)
        models.append(MODELS.build(cfg.model))
    ours, stock = models
    bb = ours.backbone
    assert all(b.attn.rel_pos_bias is not None and b.ls1.gamma.shape == (768,) for b in bb.blocks)
    assert bb.blocks[0].attn.rel_pos_bias.table.shape == stock.backbone.layers[0].attn.relative_position_bias_table.shape
    n_ours = sum(p.numel() for n, p in ours.named_parameters() if n.startswith("backbone."))
    n_stock = sum(p.numel() for n, p in stock.named_parameters() if n.startswith("backbone."))
    assert n_ours == n_stock, (n_ours, n_stock)

    ours_lr = _lr_scales(ours, copy.deepcopy(ours_cfg.optim_wrapper))
    stock_lr = _lr_scales(stock, copy.deepcopy(stock_cfg.optim_wrapper))
    for i in range(12):  # per block: the same lr scale (0.65 ** (12 - i)) as mmseg's rule for its own MAE
        ours_scale = ours_lr[f"backbone.blocks.{i}.attn.qkv.weight"][0]
        assert ours_scale == pytest.approx(stock_lr[f"backbone.layers.{i}.attn.qkv.weight"][0], rel=1e-6)
        assert ours_scale == pytest.approx(0.65 ** (12 - i), rel=1e-6)
    assert ours_lr["backbone.patch_embed.proj.weight"][0] == pytest.approx(0.65 ** 13, rel=1e-6)
    assert ours_lr["backbone.pos_embed"][0] == pytest.approx(stock_lr["backbone.pos_embed"][0], rel=1e-6)
    assert ours_lr["decode_head.conv_seg.weight"] == (1.0, 0.05)
    # weight decay as mmseg's constructor applies it: its pos_embed / cls_token test never matches the
    # 'backbone.'-prefixed names, so position table, cls token and bias tables decay; norms and biases do not
    pairs = [("pos_embed", "pos_embed"), ("cls_token", "cls_token"), ("blocks.3.attn.rel_pos_bias.table",
             "layers.3.attn.relative_position_bias_table"), ("blocks.3.attn.qkv.weight", "layers.3.attn.qkv.weight"),
             ("blocks.3.norm1.weight", "layers.3.ln1.weight"), ("blocks.3.mlp.fc1.bias", "layers.3.ffn.layers.0.0.bias")]
    for ours_name, stock_name in pairs:
        assert ours_lr[f"backbone.{ours_name}"][1] == stock_lr[f"backbone.{stock_name}"][1], ours_name
    assert ours_lr["backbone.blocks.3.attn.rel_pos_bias.table"][1] == 0.05
    with pytest.raises(ValueError, match="num_layers=12"):
        bad = copy.deepcopy(ours_cfg.optim_wrapper)
        bad.paramwise_cfg.num_layers = 24
        _lr_scales(ours, bad)


def test_offline_config_classes_match_the_written_dataset(tmp_path):
    from mae_backbone.data.offline_ade import offline_ade_metainfo, write_offline_ade
    write_offline_ade(tmp_path)
    cfg = Config.fromfile(TINY)
    meta = offline_ade_metainfo(tmp_path)
    assert tuple(cfg.metainfo.classes) == tuple(meta["classes"])
    assert [list(c) for c in cfg.metainfo.palette] == [list(c) for c in meta["palette"]]
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == len(meta["classes"])


MINI = osp.join(ROOT, "configs", "upernet", "upernet_mae-vit-mini_1xb2-100i_offline-voc-arc.py")


@pytest.mark.parametrize("config, iters, min_miou", [
    (MINI, 100, 40.0),  # 128-d 4-block ViT, 256x192, 64-channel heads: ~30 s on a 2-core Zen 5 (mIoU 52.9 there)
    pytest.param(TINY, 300, 50.0, marks=pytest.mark.slow)],  # 192-d 6-block, 384x288: ~4 min (mIoU 81.5)
    ids=["mini", "tiny"])
def test_overfit_two_photos_reaches_miou(tmp_path, config, iters, min_miou):
    """tools/train.py then tools/test.py (IoUMetric) on the two offline label maps; predicting the most frequent
    class everywhere scores 2.4 mIoU over their 12 classes."""
    import re
    import subprocess
    import sys

    from PIL import Image

    from mae_backbone.data.offline_ade import write_offline_ade
    data = tmp_path / "ade"
    write_offline_ade(data)
    opts = [f"train_dataloader.dataset.data_root={data}/", f"val_dataloader.dataset.data_root={data}/",
            f"test_dataloader.dataset.data_root={data}/"]
    work = tmp_path / "work"
    train = subprocess.run([sys.executable, "tools/train.py", config, "--work-dir", str(work), "--cfg-options", *opts,
                            "train_cfg.val_interval=100000"], cwd=ROOT, capture_output=True, text=True)
    assert train.returncode == 0, train.stderr[-3000:]
    assert list(work.glob("*/vis_data/events.out.tfevents.*")), "no TensorBoard scalars written"
    vis = tmp_path / "vis"
    test = subprocess.run([sys.executable, "tools/test.py", config, str(work / f"iter_{iters}.pth"), "--work-dir",
                           str(tmp_path / "t"), "--show-dir", str(vis), "--out", str(tmp_path / "labels"),
                           "--cfg-options", *opts], cwd=ROOT, capture_output=True, text=True)
    assert test.returncode == 0, test.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "labels").glob("*.png")) == ["arc2017.png", "voc.png"]  # --out: label maps
    metrics = dict(re.findall(r"(mIoU|mAcc|aAcc): ([0-9.]+)", test.stdout))
    miou = float(metrics["mIoU"])
    print(f"mIoU {miou:.2f} mAcc {metrics['mAcc']} aAcc {metrics['aAcc']}")
    assert miou >= min_miou, metrics  # mmseg reports percent
    for name, (w, h) in (("voc", (500, 375)), ("arc2017", (640, 480))):
        png = vis / f"{name}.png"
        assert png.is_file(), list(vis.iterdir())
        assert Image.open(png).size == (2 * w, h)  # ground truth | colour-coded prediction
    # the trained segmenter on one's own image, through mmseg's MMSegInferencer
    out = tmp_path / "infer"
    img = next((data / "images" / "validation").glob("*.jpg"))
    run = subprocess.run([sys.executable, "tools/inference.py", config, str(work / f"iter_{iters}.pth"), str(img),
                          "--out-dir", str(out), "--device", "cpu"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert list((out / "vis").iterdir()) and list((out / "preds").iterdir())


@pytest.mark.parametrize("name", ["upernet_mae-vit-b_8xb2-160k_ade20k-512x512.py",
                                  "upernet_mae-vit-l_8xb2-160k_ade20k-512x512.py"])
def test_paper_configs_build_from_registry(name):
    from mmseg.registry import MODELS
    cfg = Config.fromfile(osp.join(ROOT, "configs", "upernet", name))
    large = "-l_" in name
    # ViT-B: mmseg's MAE config; ViT-L: ViTDet's ViT-L decay (no published MAE-L value; configs/upernet/README.md)
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay == (0.8 if large else 0.65)
    assert cfg.optim_wrapper.paramwise_cfg.weight_decay_rule == "norm_bias"
    assert cfg.optim_wrapper.optimizer.lr == 1e-4 and cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.train_cfg.max_iters == 160000 and cfg.train_dataloader.batch_size * 8 == 16
    warm, poly = cfg.param_scheduler
    assert warm.type == "LinearLR" and warm.end == 1500 and poly.type == "PolyLR" and poly.begin == 1500
    assert cfg.train_dataloader.dataset.type == "ADE20KDataset" and cfg.val_evaluator.type == "IoUMetric"
    assert cfg.model.test_cfg.mode == "slide" and cfg.autocast_modules == dict(backbone="bfloat16")
    init_default_scope("mmseg")
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    bb = model.backbone
    assert bb.out_indices == ((7, 11, 15, 23) if large else (3, 5, 7, 11)) and bb.grid == (32, 32)
    assert all(b.attn.rel_pos_bias is not None for b in bb.blocks)
    assert bb.pyramid.rescales == (4.0, 2.0, 1.0, 0.5)
    tta = Config.fromfile(osp.join(ROOT, "configs", "upernet", name.replace(".py", "_ms-flip-test.py")))
    assert tta.tta_model.type == "SegTTAModel" and tta.model.backbone.arch == ("large" if large else "base")
    (aug,) = [t for t in tta.test_dataloader.dataset.pipeline if t.type == "TestTimeAug"]
    # short side 512 r, never below the 512 crop (BEiT SETR_Resize); the long side follows the aspect ratio
    assert [min(r.scale) for r in aug.transforms[0]] == [512, 512, 512, 640, 768, 896]
    assert all(max(r.scale) >= 8 * min(r.scale) and r.keep_ratio for r in aug.transforms[0])


def _corrupt_voc_label(ds_cfg, png, value):
    """Write ``value`` into one pixel of the VOC label map; rebuild the dataset; return (dataset, VOC index)."""
    import numpy as np
    from PIL import Image
    from mmseg.registry import DATASETS
    bad = np.array(Image.open(png))
    bad[0, 0] = value
    Image.fromarray(bad).save(png)
    ds = DATASETS.build(ds_cfg)
    return ds, [i for i in range(len(ds)) if ds.get_data_info(i)["seg_map_path"].endswith("voc.png")][0]


def test_labels_outside_the_class_range_raise_naming_the_file(tmp_path):
    import numpy as np
    from mmseg.registry import DATASETS

    from mae_backbone.data.offline_ade import write_offline_ade
    write_offline_ade(tmp_path)
    cfg = Config.fromfile(TINY)
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = f"{tmp_path}/"
    init_default_scope("mmseg")
    ds = DATASETS.build(ds_cfg)
    labels = np.unique(np.concatenate([ds[i]["data_samples"].gt_sem_seg.data.numpy().ravel() for i in range(2)]))  # written maps pass
    assert set(labels.tolist()) <= set(range(12)) | {255}
    # 40 after reduce_zero_label: 39, outside 0..11
    ds, idx = _corrupt_voc_label(ds_cfg, tmp_path / "annotations" / "training" / "voc.png", 40)
    with pytest.raises(ValueError, match=r"voc\.png.*\[39\].*num_classes"):
        ds[idx]


@pytest.mark.parametrize("which", ["train", "test", "tta"])
def test_paper_config_pipelines_load_ade_layout_and_check_labels(tmp_path, which):
    """The ViT-B config's own ADE20KDataset pipelines read the ADE layout (reduce_zero_label) and stop on a
    label outside 0..149 naming the file (CheckSegLabels after LoadAnnotations in each pipeline)."""
    import numpy as np
    from mmseg.registry import DATASETS

    from mae_backbone.data.offline_ade import write_offline_ade
    write_offline_ade(tmp_path)
    cfg = Config.fromfile(osp.join(ROOT, "configs", "upernet",
                                   "upernet_mae-vit-b_8xb2-160k_ade20k-512x512_ms-flip-test.py"))
    loader = cfg.train_dataloader if which == "train" else cfg.test_dataloader
    ds_cfg = loader.dataset
    if which == "test":
        ds_cfg.pipeline = cfg.test_pipeline
    split = "training" if which == "train" else "validation"
    ds_cfg.update(data_root=f"{tmp_path}/", data_prefix=dict(img_path=f"images/{split}", seg_map_path=f"annotations/{split}"))
    init_default_scope("mmseg")
    ds = DATASETS.build(ds_cfg)
    assert ds.metainfo["classes"][0] == "wall" and len(ds.metainfo["classes"]) == 150 and len(ds) == 2
    out = ds[0]
    samples = out["data_samples"] if which == "tta" else [out["data_samples"]]
    if which == "tta":
        assert len(samples) == 12  # 6 scales x 2 flips
    for sample in samples:
        labels = set(np.unique(sample.gt_sem_seg.data.numpy()).tolist())
        assert labels <= set(range(12)) | {255} and 255 in labels and len(labels) > 2  # 0 -> ignore, 1..K -> 0..K-1
    # 200 after reduce_zero_label: 199, outside 0..149
    ds, idx = _corrupt_voc_label(ds_cfg, tmp_path / "annotations" / split / "voc.png", 200)
    with pytest.raises(ValueError, match=r"voc\.png.*\[199\].*0\.\.149"):
        ds[idx]


def test_head_class_count_must_match_the_dataset(tmp_path):
    from types import SimpleNamespace

    from mmseg.registry import DATASETS, MODELS

    from downstream import SegClassCountCheckHook
    from mae_backbone.data.offline_ade import write_offline_ade
    write_offline_ade(tmp_path)
    cfg = Config.fromfile(TINY)
    cfg.train_dataloader.dataset.data_root = f"{tmp_path}/"
    init_default_scope("mmseg")
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    hook = SegClassCountCheckHook()
    model = MODELS.build(cfg.model)
    hook.before_train(SimpleNamespace(model=model, train_dataloader=SimpleNamespace(dataset=ds)))  # 12 == 12
    cfg.model.decode_head.num_classes = 150
    wrong = MODELS.build(cfg.model)
    with pytest.raises(ValueError, match="decode_head.num_classes = 150 but the dataset has 12"):
        hook.before_train(SimpleNamespace(model=wrong, train_dataloader=SimpleNamespace(dataset=ds)))


def test_openmmlab_relative_position_switches_map_onto_rel_pos():
    """mmdet ViTDet's use_rel_pos, mmpretrain BEiT's use_rel_pos_bias and mmseg's MAE argument set (init_values) build
    the kind they mean; two kinds, or a switch beside rel_pos, are refused."""
    from downstream import MAEViT
    tiny = dict(arch=dict(embed_dim=32, depth=2, num_heads=2), img_size=32, out_indices=(1,))
    assert MAEViT(**tiny).rel_pos is None
    assert MAEViT(**tiny, use_rel_pos=True).rel_pos == "decomposed"
    assert not MAEViT(**tiny, use_rel_pos=True).use_cls_token  # decomposed tables index patch tokens only
    assert MAEViT(**tiny, use_rel_pos_bias=True).rel_pos == "bias"
    assert MAEViT(**tiny, init_values=0.1).rel_pos == "bias"  # mmseg's MAE backbone always has the bias
    assert MAEViT(**tiny, init_values=0.1, use_rel_pos_bias=False).rel_pos is None  # unless switched off
    assert MAEViT(**tiny, rel_pos=None, init_values=0.1).rel_pos is None
    assert MAEViT(**tiny, init_values=0.1, use_rel_pos=False).rel_pos == "bias"  # says nothing of BEiT's bias
    with pytest.raises(ValueError, match="autocast_modules"):  # a config dumped before the precision mechanism
        MAEViT(**tiny, autocast_dtype="bfloat16")
    with pytest.raises(ValueError, match="one kind of relative position"):
        MAEViT(**tiny, use_rel_pos=True, use_rel_pos_bias=True)
    with pytest.raises(ValueError, match="either rel_pos or"):
        MAEViT(**tiny, rel_pos="bias", use_rel_pos_bias=True)
