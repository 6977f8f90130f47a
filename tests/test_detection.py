"""Detection transfer: MAEViT in mmdet, window attention, rel-pos, pyramids, loading, training."""
from __future__ import annotations

import copy
import os.path as osp
import re

import pytest
import torch

pytest.importorskip("mmdet")

from mmengine.config import Config  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import downstream  # noqa: E402,F401
from downstream import MAEViT  # noqa: E402
from mae_backbone.checkpoint import CheckpointError  # noqa: E402
from mae_backbone.models import MaskedAutoencoder  # noqa: E402

ROOT = osp.join(osp.dirname(__file__), "..")
CFG_DIR = osp.join(ROOT, "configs", "mask_rcnn")
TINY = {v: osp.join(CFG_DIR, f"mask-rcnn_mae-vit-tiny-{v}_1xb2-300i_offline-voc-arc.py") for v in ("fpn", "vitdet")}
TINY_ARCH = dict(embed_dim=64, depth=4, num_heads=2)


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    from mae_backbone.data.offline_coco import write_offline_coco
    out = tmp_path_factory.mktemp("offline_coco")
    write_offline_coco(out)
    return out


def tiny_cfg(variant: str, coco_dir=None) -> Config:
    cfg = Config.fromfile(TINY[variant])
    if coco_dir is not None:
        root = str(coco_dir) + "/"
        for split in ("train_dataloader", "val_dataloader", "test_dataloader"):
            cfg[split].dataset.data_root = root
        cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = root + "annotations/instances_val.json"
    return cfg


def build_detector(cfg: Config):
    from mmdet.registry import MODELS
    init_default_scope("mmdet")
    return MODELS.build(cfg.model)


def train_batch(cfg: Config, n: int = 2):
    from mmdet.registry import DATASETS
    init_default_scope("mmdet")
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    return pseudo_collate([ds[i] for i in range(n)])


def total_loss(losses: dict) -> torch.Tensor:
    out = 0
    for k, v in losses.items():
        if "loss" in k:
            out = out + (sum(v) if isinstance(v, (list, tuple)) else v)
    return out


# ----------------------------------------------------------------------------- configs and shapes
@pytest.mark.parametrize("name", ["mask-rcnn_mae-vit-b-fpn_16xb4-lsj-100e_coco.py",
                                  "mask-rcnn_mae-vit-b-vitdet_16xb4-lsj-100e_coco.py",
                                  "mask-rcnn_mae-vit-l-fpn_16xb4-lsj-100e_coco.py",
                                  "mask-rcnn_mae-vit-l-vitdet_16xb4-lsj-100e_coco.py"])
def test_paper_configs_build_from_registry(name):
    cfg = Config.fromfile(osp.join(CFG_DIR, name))
    large = "-l-" in name
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay == (0.8 if large else 0.7)
    assert cfg.optim_wrapper.optimizer.lr == 1e-4 and cfg.optim_wrapper.optimizer.weight_decay == 0.1
    assert cfg.autocast_modules.backbone == "bfloat16"
    assert cfg.train_dataloader.batch_size == 4 and "16xb4" in name  # 16 GPUs x 4 = 64
    assert cfg.val_evaluator.type == "CocoMetric" and set(cfg.val_evaluator.metric) == {"bbox", "segm"}
    model = build_detector(cfg)
    bb = model.backbone
    assert isinstance(bb, MAEViT) and bb.blocks[-1].drop_path.drop_prob == pytest.approx(0.4 if large else 0.1)
    assert bb.embed_dim == (1024 if large else 768) and bb.depth == (24 if large else 12)
    if "vitdet" in name:
        assert bb.global_block_indexes == ((5, 11, 17, 23) if large else (2, 5, 8, 11))
        windows = [blk.window_size for blk in bb.blocks]
        assert all(w == (0 if i in bb.global_block_indexes else 14) for i, w in enumerate(windows))
        assert bb.blocks[0].attn.rel_pos_h.shape[0] == 27 and bb.blocks[bb.global_block_indexes[0]].attn.rel_pos_h.shape[0] == 127
        assert not bb.use_cls_token
    else:
        # MAE paper A.3: the blocks "equally divided into 4 subsets", the last of each tapped
        assert bb.out_indices == ((5, 11, 17, 23) if large else (2, 5, 8, 11))
        assert bb.pyramid is not None and not any(b.window_size for b in bb.blocks)
        # Li et al.'s improved Mask R-CNN heads as torchvision's maskrcnn_resnet50_fpn_v2 builds them: normalised
        # FPN, 2-conv RPN (no norm), 4 conv + 1 fc box head and 4-conv mask head with norm (SyncBN here)
        sync = torch.nn.SyncBatchNorm
        assert all(isinstance(m.bn, sync) for m in (*model.neck.lateral_convs, *model.neck.fpn_convs))
        assert len(model.rpn_head.rpn_conv) == 2 and not any(c.with_norm for c in model.rpn_head.rpn_conv)
        box = model.roi_head.bbox_head
        assert len(box.shared_convs) == 4 and all(isinstance(c.bn, sync) for c in box.shared_convs)
        assert [fc.out_features for fc in box.shared_fcs] == [1024]
        mask = model.roi_head.mask_head
        assert len(mask.convs) == 4 and all(isinstance(c.bn, sync) and c.conv.out_channels == 256 for c in mask.convs)


@pytest.mark.parametrize("variant", ["fpn", "vitdet"])
@pytest.mark.parametrize("hw", [(320, 480), (224, 416)])
def test_feature_shapes_and_strides(variant, hw):
    """Non-square inputs; 224x416 -> 14x26 grid needs window padding (window 6) in the ViTDet variant."""
    cfg = tiny_cfg(variant)
    model = build_detector(cfg).eval()
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        feats = model.backbone(x)
        outs = model.neck(feats)
    H, W = hw
    if variant == "fpn":
        assert [f.shape[-2:] for f in feats] == [(H // s, W // s) for s in (4, 8, 16, 32)]
        assert all(f.shape[1] == 192 for f in feats)
    else:
        assert len(feats) == 1 and feats[0].shape[-2:] == (H // 16, W // 16)
    strides = (4, 8, 16, 32, 64)
    assert len(outs) == 5 and all(o.shape[1] == 128 for o in outs)
    for o, s in zip(outs, strides):  # ceil for the pooled levels
        assert o.shape[-2:] == (-(-H // s), -(-W // s)), (o.shape, s)


# ----------------------------------------------------------------------------- checkpoints
def official_checkpoint(path, arch=TINY_ARCH, patch_size=16):
    mae = MaskedAutoencoder(img_size=224, patch_size=patch_size, decoder_embed_dim=32, decoder_depth=1,
                            decoder_num_heads=2, **arch)
    torch.save({"model": mae.state_dict(), "epoch": 799}, path)
    return mae.state_dict()


@pytest.mark.parametrize("variant", ["fpn", "vitdet"])
def test_official_mae_checkpoint_loads_through_init_cfg(tmp_path, variant):
    ckpt = tmp_path / "mae_pretrain_tiny.pth"
    sd = official_checkpoint(ckpt)
    cfg = tiny_cfg(variant)
    cfg.model.backbone.arch = dict(TINY_ARCH)
    cfg.model.backbone.img_size = 224
    cfg.model.backbone.out_indices = (0, 1, 2, 3) if variant == "fpn" else (3,)
    if variant == "vitdet":
        cfg.model.backbone.global_block_indexes = (1, 3)
    cfg.model.neck.in_channels = [64] * 4 if variant == "fpn" else 64
    cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(ckpt))
    cfg.model.backbone.final_norm = False  # as the paper configs: the checkpoint's final norm is unused
    model = build_detector(cfg)
    model.init_weights()
    report = model.backbone.load_report
    assert report is not None and report.source == "official"
    new = re.compile(r"^blocks\.\d+\.attn\.rel_pos_[hw]$" if variant == "vitdet" else r"^pyramid\.")
    assert report.missing and all(new.match(k) for k in report.missing), report.missing
    if variant == "vitdet":
        assert len(report.missing) == 2 * 4
    unused = set(report.unexpected)
    assert {"mask_token", "norm.weight", "norm.bias"} <= unused and any(k.startswith("decoder_") for k in unused)
    assert ("cls_token" in unused) == (variant == "vitdet")
    assert not [k for k in unused if k.startswith("blocks.")]
    for k in ("blocks.2.attn.qkv.weight", "patch_embed.proj.weight", "pos_embed"):
        assert torch.equal(model.backbone.state_dict()[k], sd[k])
    # a second init (mmengine calls init_weights on every child) does not reload or re-initialise
    with torch.no_grad():
        model.backbone.blocks[0].attn.qkv.weight.add_(1.0)
    model.init_weights()
    assert not torch.equal(model.backbone.blocks[0].attn.qkv.weight, sd["blocks.0.attn.qkv.weight"])


def test_checkpoint_for_another_patch_size_is_rejected(tmp_path):
    ckpt = tmp_path / "p8.pth"
    official_checkpoint(ckpt, patch_size=8)
    bb = MAEViT(arch=dict(TINY_ARCH), out_indices=(3,), init_cfg=dict(type="Pretrained", checkpoint=str(ckpt)))
    with pytest.raises(CheckpointError, match="patch size"):
        bb.init_weights()


def test_bad_inputs_raise_clear_errors():
    bb = MAEViT(arch=dict(TINY_ARCH), out_indices=(3,))
    with pytest.raises(ValueError, match="pad_size_divisor"):
        bb(torch.randn(1, 3, 250, 256))
    with pytest.raises(ValueError, match="out_indices"):
        MAEViT(arch=dict(TINY_ARCH), out_indices=(3, 4))
    with pytest.raises(ValueError, match="same length"):
        MAEViT(arch=dict(TINY_ARCH), out_indices=(3,), pyramid=dict(rescales=(4, 2, 1, 0.5)))
    with pytest.raises(ValueError, match="use_cls_token=False"):
        MAEViT(arch=dict(TINY_ARCH), window_size=7, use_cls_token=True, out_indices=(3,))
    with pytest.raises(ValueError, match="out of range"):
        MAEViT(arch=dict(TINY_ARCH), window_size=7, global_block_indexes=(4,), out_indices=(3,))
    with pytest.raises(ValueError, match="unknown arch"):
        MAEViT(arch="gigantic")


# ----------------------------------------------------------------------------- optimisation
def test_layer_decay_constructor_on_detector():
    from mmengine.optim import build_optim_wrapper
    cfg = tiny_cfg("vitdet")
    model = build_detector(cfg)
    paper = Config.fromfile(osp.join(CFG_DIR, "mask-rcnn_mae-vit-b-vitdet_16xb4-lsj-100e_coco.py"))
    wrapper = build_optim_wrapper(model, copy.deepcopy(paper.optim_wrapper))
    depth = model.backbone.depth
    by_param = {id(p): g for g in wrapper.optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    lr = 1e-4
    assert by_param[id(named["backbone.patch_embed.proj.weight"])]["lr"] == pytest.approx(lr * 0.7 ** (depth + 1))
    assert by_param[id(named["backbone.blocks.0.attn.qkv.weight"])]["lr"] == pytest.approx(lr * 0.7 ** depth)
    assert by_param[id(named["backbone.blocks.5.mlp.fc1.weight"])]["lr"] == pytest.approx(lr * 0.7)
    for head in ("neck.stages.0.1.weight", "rpn_head.rpn_conv.0.conv.weight", "roi_head.bbox_head.fc_cls.weight"):
        assert by_param[id(named[head])]["lr"] == pytest.approx(lr)
    # detectron2's exemptions (ViTDet common/optim.py): torch norm layers and pos_embed only; biases,
    # relative-position tables and the channel LayerNorm of neck / heads decay
    decay = {n: by_param[id(p)]["weight_decay"] for n, p in named.items()}
    assert decay["backbone.pos_embed"] == 0 and decay["backbone.blocks.0.norm1.weight"] == 0
    assert decay["backbone.blocks.0.norm1.bias"] == 0
    for n in ("backbone.blocks.0.attn.rel_pos_h", "backbone.blocks.0.attn.qkv.weight", "backbone.blocks.0.attn.qkv.bias",
              "neck.stages.0.1.weight", "roi_head.bbox_head.fc_cls.bias"):
        assert decay[n] == 0.1, n
    ln2d = [n for n, m in model.named_modules() if type(m).__name__ == "LayerNorm2d"]
    assert ln2d and all(decay[f"{n}.weight"] == 0.1 for n in ln2d)
    assert sum(len(g["params"]) for g in wrapper.optimizer.param_groups) == len(named)


@pytest.mark.parametrize("variant", ["fpn", "vitdet"])
def test_one_training_iteration(coco_dir, variant):
    torch.manual_seed(0)
    cfg = tiny_cfg(variant, coco_dir)
    model = build_detector(cfg)
    model.init_weights()
    model.train()
    data = model.data_preprocessor(train_batch(cfg), True)
    losses = model(**data, mode="loss")
    for k in ("loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask"):
        v = losses[k]
        v = sum(v) if isinstance(v, (list, tuple)) else v
        assert torch.isfinite(v).all() and v.item() > 0, k
    total_loss(losses).backward()
    g = model.backbone.blocks[0].attn.qkv.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0


def test_frozen_lower_blocks_stay_bit_identical(coco_dir):
    from mmengine.optim import build_optim_wrapper
    torch.manual_seed(0)
    cfg = tiny_cfg("fpn", coco_dir)
    cfg.model.backbone.frozen_blocks = 2
    model = build_detector(cfg)
    model.init_weights()
    model.train()
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    batch = train_batch(cfg)
    for _ in range(2):
        model.train_step(batch, wrapper)
    after = model.backbone.state_dict()
    frozen = [k for k in before if k.startswith(("blocks.0.", "blocks.1.", "patch_embed.", "pos_embed"))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    trained = [k for k in before if k.startswith("blocks.2.") and k.endswith("weight")]
    assert all(not torch.equal(before[k], after[k]) for k in trained)
    assert not model.backbone.blocks[0].training and model.backbone.blocks[2].training


def test_offline_config_classes_match_the_dataset(coco_dir):
    from mae_backbone.data.offline_coco import offline_coco_classes
    cfg = tiny_cfg("fpn")
    assert tuple(cfg.train_dataloader.dataset.metainfo.classes) == offline_coco_classes(coco_dir)
    for v in TINY:
        c = tiny_cfg(v)
        assert c.model.roi_head.bbox_head.num_classes == c.model.roi_head.mask_head.num_classes == len(
            offline_coco_classes(coco_dir))


def test_stock_mmdet_config_with_only_the_backbone_switched(coco_dir):
    ours = Config.fromfile(osp.join(CFG_DIR, "mask-rcnn_mae-vit-b-fpn_stock-r50-1x_coco.py"))
    import mmdet
    stock = Config.fromfile(osp.join(osp.dirname(mmdet.__file__), ".mim", "configs", "mask_rcnn",
                                     "mask-rcnn_r50_fpn_1x_coco.py"))
    def unscoped(d):  # `mmdet::` inheritance tags every dict with _scope_='mmdet'
        if isinstance(d, dict):
            return {k: unscoped(v) for k, v in d.items() if k != "_scope_"}
        return [unscoped(v) for v in d] if isinstance(d, (list, tuple)) else d

    a, b = unscoped(ours.to_dict()), unscoped(stock.to_dict())
    a.pop("custom_imports")
    assert a.pop("autocast_modules") == dict(backbone=None)  # --amp bf16: the backbone only (mmcv ops lack bf16)
    assert a["model"].pop("backbone")["type"] == "MAEViT"
    b["model"].pop("backbone")
    assert a["model"]["neck"].pop("in_channels") == [768] * 4
    b["model"]["neck"].pop("in_channels")
    assert a == b  # nothing else differs from mmdet's own config
    model = build_detector(ours).eval()
    cfg = copy.deepcopy(ours)
    ds = cfg.train_dataloader.dataset
    ds.data_root, ds.ann_file, ds.data_prefix = str(coco_dir) + "/", "annotations/instances_train.json", dict(img="images/")
    from mae_backbone.data.offline_coco import offline_coco_classes
    ds.metainfo = dict(classes=offline_coco_classes(coco_dir))
    data = model.data_preprocessor(train_batch(cfg, 1), True)  # stock 1333x800 pipeline
    assert data["inputs"].shape[-2:] == (800, 1088)
    with torch.no_grad():
        losses = model(**data, mode="loss")
    assert torch.isfinite(total_loss(losses))


def test_bf16_backbone_autocast_trains_with_fp32_heads(coco_dir, cpu_bf16):
    """mmcv's RoIAlign / NMS have no bf16 kernels: the backbone and neck autocast, the heads stay fp32."""
    from mmengine.optim import build_optim_wrapper
    from mae_backbone.engine.amp import set_amp
    from mae_backbone.precision import autocast_module, autocast_modules
    cpu_bf16(True)  # small enough to run where bf16 is emulated
    torch.manual_seed(0)
    cfg = tiny_cfg("vitdet", coco_dir)
    set_amp(cfg, "bf16", device="cpu")  # what tools/train.py --amp bf16 does
    assert cfg.autocast_modules == dict(backbone="bfloat16", neck="bfloat16")
    assert cfg.optim_wrapper.type == "OptimWrapper"
    model = build_detector(cfg)
    autocast_modules(model, cfg.autocast_modules)  # what build_runner's AutocastModulesHook does
    model.train()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        half = model.backbone(x)[0]
        autocast_module(model.backbone, None)
        full = model.backbone(x)[0]
        autocast_module(model.backbone, "bfloat16")
    assert model.neck(model.backbone(x))[0].dtype == torch.float32
    assert half.dtype == torch.float32
    rel = (half - full).norm() / full.norm()
    assert 0 < rel < 0.03, rel  # bf16 rounding, not a different function
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    log = model.train_step(train_batch(cfg), wrapper)
    assert all(torch.isfinite(v).all() for v in log.values())


def _data_opts(coco_dir) -> list:
    root = f"{coco_dir}/"
    ann = root + "annotations/instances_val.json"
    return [f"train_dataloader.dataset.data_root={root}", f"val_dataloader.dataset.data_root={root}",
            f"test_dataloader.dataset.data_root={root}", f"val_evaluator.ann_file={ann}",
            f"test_evaluator.ann_file={ann}"]


MINI = osp.join(CFG_DIR, "mask-rcnn_mae-vit-mini-fpn_1xb2-80i_offline-voc-arc.py")


@pytest.mark.parametrize("config, iters", [
    (MINI, 80),  # 128-d 4-block ViT, 256x192, 32 RoIs: ~40 s on a 2-core Zen 5 (bbox AP50 0.81 there)
    pytest.param(TINY["fpn"], 300, marks=pytest.mark.slow),  # 192-d 6-block, 384x288: ~6 min (AP50 0.68)
    pytest.param(TINY["vitdet"], 300, marks=pytest.mark.slow)], ids=["mini-fpn", "tiny-fpn", "tiny-vitdet"])
def test_overfit_two_photos_reaches_ap50(coco_dir, tmp_path, config, iters):
    """tools/train.py then tools/test.py (CocoMetric, pycocotools) on the two offline photos: bbox AP50 >= 0.5."""
    import subprocess
    import sys

    from PIL import Image
    work = tmp_path / "work"
    opts = _data_opts(coco_dir)
    train = subprocess.run([sys.executable, "tools/train.py", config, "--work-dir", str(work), "--cfg-options",
                            *opts, "train_cfg.val_interval=100000"], cwd=ROOT, capture_output=True, text=True)
    assert train.returncode == 0, train.stderr[-3000:]
    assert list(work.glob("*/vis_data/events.out.tfevents.*")), "no TensorBoard scalars written"
    ckpt = work / f"iter_{iters}.pth"
    vis = tmp_path / "vis"
    dump = tmp_path / "preds.pkl"
    test = subprocess.run([sys.executable, "tools/test.py", config, str(ckpt), "--work-dir", str(tmp_path / "t"),
                           "--show-dir", str(vis), "--out", str(dump), "--cfg-options", *opts],
                          cwd=ROOT, capture_output=True, text=True)
    assert test.returncode == 0, test.stderr[-3000:]
    import pickle
    with open(dump, "rb") as f:
        preds = pickle.load(f)
    assert len(preds) == 2 and {"bboxes", "scores", "labels", "masks"} <= set(preds[0]["pred_instances"])
    metrics = dict(re.findall(r"(coco/\w+): ([0-9.]+)", test.stdout))
    ap50 = float(metrics["coco/bbox_mAP_50"])
    print(f"{osp.basename(config)}: bbox AP50 {ap50:.3f}, AP {metrics['coco/bbox_mAP']}, "
          f"segm AP50 {metrics['coco/segm_mAP_50']}")
    assert ap50 >= 0.5, metrics
    for name, (w, h) in (("voc", (500, 375)), ("arc2017", (640, 480))):
        png = vis / f"{name}.png"
        assert png.is_file(), list(vis.iterdir())
        assert Image.open(png).size == (2 * w, h)  # ground truth | prediction, at the photo's size
    # the trained detector on one's own images (a folder here), through mmdet's DetInferencer
    out = tmp_path / "infer"
    run = subprocess.run([sys.executable, "tools/inference.py", config, str(ckpt), str(coco_dir / "images"),
                          "--out-dir", str(out), "--device", "cpu"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    import json
    pred = json.loads((out / "preds" / "voc.json").read_text())
    assert len(pred["bboxes"]) == len(pred["scores"]) > 0 and Image.open(out / "vis" / "voc.jpg").size == (500, 375)
