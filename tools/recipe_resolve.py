"""Values read out of the resolved paper configs, for tools/recipe_table.py: batches and lr at a GPU count,
steps per epoch, schedules, the optimizer's per-block lr scales and weight-decay exemptions (built on a narrow
model with the config's depth), the detection test canvas (the config's own pipeline), TTA sizes, model parts."""
from __future__ import annotations

import copy
import math
import os.path as osp
import re
import tempfile
from functools import lru_cache

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# dataset sizes the iteration counts are computed for
IMAGENET_TRAIN = 1_281_167   # ILSVRC-2012 train
COCO_TRAIN = 117_266         # COCO train2017 images kept by mmdet's filter_cfg (filter_empty_gt, min_size 32)
ADE_TRAIN = 20_210           # ADEChallengeData2016 training


@lru_cache(maxsize=None)
def load(rel: str):
    """The resolved config (cached: every reader here treats it as read-only; whoever edits works on a copy)."""
    from mmengine.config import Config
    return Config.fromfile(osp.join(ROOT, rel))


def gpus_and_batch(rel: str):
    """(GPUs from the config's name, per-GPU batch from the resolved config); the name's batch must agree."""
    m = re.search(r"_(\d+)xb(\d+)", osp.basename(rel))
    if not m:
        raise ValueError(f"{rel}: the name carries no GPUs x batch (NxbM)")
    batch = int(load(rel).train_dataloader.batch_size)
    if batch != int(m.group(2)):
        raise ValueError(f"{rel}: the name says {m.group(2)} images per GPU, train_dataloader.batch_size is {batch}")
    return int(m.group(1)), batch


def resolved_lr(cfg, gpus: int) -> float:
    """The lr the launcher sets for ``gpus`` processes (mae_backbone.engine.scale_lr)."""
    from mae_backbone.engine import scale_lr
    cfg = copy.deepcopy(cfg)
    scale_lr(cfg, gpus)
    return float(cfg.optim_wrapper.optimizer.lr)


def steps_per_epoch(n: int, gpus: int, batch: int, accum: int = 1, drop_last: bool = False) -> float:
    """Optimizer steps per epoch under mmengine's DefaultSampler (each rank gets ceil(n / gpus) samples)."""
    per_rank = math.ceil(n / gpus)
    batches = per_rank // batch if drop_last else math.ceil(per_rank / batch)
    return batches / accum


def fmt(x: float) -> str:
    """3 significant digits; below 0.01 in scientific notation (1.5e-4, 5.69e-3)."""
    x = float(x)
    if x == 0 or 1e-2 <= abs(x) < 1e5:
        return f"{x:.3g}"
    mantissa, exp = f"{x:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"


def sched_desc(cfg) -> str:
    parts = []
    for s in cfg.param_scheduler:
        unit = "ep" if s.get("by_epoch", True) else "it"
        span = f"{s.get('begin', 0)}-{s.get('end')} {unit}"
        if s["type"] == "LinearLR":
            parts.append(f"linear warm-up {span} (from {fmt(s['start_factor'])}x)")
        elif "Cosine" in s["type"]:
            floor = fmt(s.get("eta_min") or 0)
            scaled = "LayerScaled" in s["type"]
            parts.append(f"cosine {span} to {floor}{' x group lr scale' if scaled and floor != '0' else ''}")
        elif s["type"] == "PolyLR":
            parts.append(f"poly (power {s.get('power', 1.0)}) {span} to {fmt(s.get('eta_min', 0))}")
        elif s["type"] == "MultiStepLR":
            parts.append(f"x{s.get('gamma', 0.1)} at {unit} {', '.join(map(str, s['milestones']))}")
        else:
            parts.append(f"{s['type']} {span}")
    return "; ".join(parts)


def decoder_desc(cfg) -> str:
    """The decoder the pretraining config builds (the full-size model on the meta device: no memory)."""
    import torch
    from mae_backbone.models import create_model
    kw = {k: v for k, v in cfg.model.items() if k not in ("type", "arch", "data_preprocessor", "pretrained",
                                                          "init_cfg", "compile")}
    with torch.device("meta"):
        m = create_model(cfg.model.arch, **kw)
    heads = m.decoder_blocks[0].attn.num_heads
    return f"{m.decoder_embed_dim}-d, {len(m.decoder_blocks)} blocks, {heads} heads"


def precision_desc(cfg, part: str = "") -> str:
    wrapper = cfg.optim_wrapper
    if part:
        dtype = (cfg.get("autocast_modules") or {}).get("backbone")
        return f"{dtype} autocast ({part})".replace("bfloat16", "bf16") if dtype else "fp32"
    if wrapper.get("type") == "AutocastOptimWrapper":
        return f"{wrapper.get('dtype', 'bfloat16')} autocast".replace("bfloat16", "bf16")
    return "fp16 autocast + loss scaling" if wrapper.get("type") == "AmpOptimWrapper" else "fp32"


def crop_desc(t) -> str:
    extras = [f"RandAugment {t.auto_augment}" for _ in [0] if t.get("auto_augment")]
    extras += [f"random erasing {t.re_prob}" for _ in [0] if t.get("re_prob")]
    extras += [f"colour jitter {t.color_jitter}" for _ in [0] if t.get("color_jitter")]
    scale = tuple(t.get("scale", (0.08, 1.0)))
    return f"RandomResizedCrop {t.img_size} scale {scale} + flip" + "".join(" + " + e for e in extras)


def _narrow(model_cfg: dict, kind: str) -> dict:
    """The config's model at its depth but 32 wide: enough to build the optimizer's groups quickly."""
    m = copy.deepcopy(model_cfg)
    if kind in ("pretrain", "classification"):
        m.update(embed_dim=32, num_heads=2, pretrained=None)
        if kind == "pretrain":
            m.update(decoder_embed_dim=32, decoder_num_heads=2, decoder_depth=1)
        return m
    bb = m["backbone"]
    arch = bb.get("arch", "base")
    depth = {"base": 12, "large": 24, "huge": 32}.get(arch) if isinstance(arch, str) else arch["depth"]
    bb.update(arch=dict(embed_dim=32, depth=depth, num_heads=2), init_cfg=None)
    if kind == "detection":
        if isinstance(m["neck"].get("in_channels"), list):
            m["neck"]["in_channels"] = [32] * 4
        else:
            m["neck"]["in_channels"] = 32
    else:
        m["decode_head"].update(in_channels=[32] * 4, channels=32)
        m["auxiliary_head"].update(in_channels=32, channels=16)
    return m


@lru_cache(maxsize=None)
def optimizer_view(rel: str, kind: str):
    """(param groups with names, depth, model) of the optimizer the config builds, at the config-name GPU count."""
    import torch
    from mmengine.optim import build_optim_wrapper
    cfg = load(rel)
    gpus, _ = gpus_and_batch(rel)
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim_cfg.optimizer.lr = resolved_lr(cfg, gpus)
    optim_cfg.pop("dtype", None)
    optim_cfg.type = "OptimWrapper"  # precision does not change the groups
    torch.manual_seed(0)
    if kind in ("pretrain", "classification"):
        import mae_backbone.engine  # noqa: F401  (registers MAEPretrainer / MAEClassifier)
        from mmengine.registry import MODELS
        model = MODELS.build(_narrow(cfg.model, kind))
        inner = model.model
    else:
        from mmengine.registry import init_default_scope
        import downstream  # noqa: F401
        scope = "mmdet" if kind == "detection" else "mmseg"
        init_default_scope(scope)
        registry = __import__(f"{scope}.registry", fromlist=["MODELS"]).MODELS
        model = registry.build(_narrow(cfg.model, kind))
        inner = model.backbone
    wrapper = build_optim_wrapper(model, optim_cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [dict(lr=g["lr"], weight_decay=g["weight_decay"], names=[names[id(p)] for p in g["params"]])
              for g in wrapper.optimizer.param_groups]
    return groups, inner.depth, model, float(optim_cfg.optimizer.lr)


def block_lr_scale(rel: str, kind: str, block: int) -> str:
    groups, depth, model, lr = optimizer_view(rel, kind)
    block = block % depth
    for g in groups:
        if any(re.search(rf"(^|\.)blocks\.{block}\.", n) for n in g["names"]):
            return fmt(g["lr"] / lr)
    params = [p for n, p in model.named_parameters() if re.search(rf"(^|\.)blocks\.{block}\.", n)]
    if params and not any(p.requires_grad for p in params):
        return "frozen"
    raise ValueError(f"{rel}: block {block} is neither in an optimizer group nor frozen")


def wd_summary(rel: str, kind: str) -> str:
    """Which kinds of tensors the config's optimizer exempts from weight decay ("no decay") and which decay."""
    from mae_backbone.param_groups import NORM_LAYERS
    groups, _, model, _ = optimizer_view(rel, kind)
    wd = {n: g["weight_decay"] for g in groups for n in g["names"]}
    norms = NORM_LAYERS
    in_norm = {f"{mn}.{pn}" if mn else pn for mn, m in model.named_modules() if isinstance(m, norms)
               for pn, _ in m.named_parameters(recurse=False)}
    in_ln2d = {f"{mn}.{pn}" for mn, m in model.named_modules() if type(m).__name__ == "LayerNorm2d"
               for pn, _ in m.named_parameters(recurse=False)}
    cats = {
        "norm layers": lambda n: n in in_norm,
        "biases": lambda n: n.endswith(".bias") and n not in in_norm and n not in in_ln2d,
        "cls_token": lambda n: n.endswith("cls_token"),
        "pos_embed": lambda n: n.split(".")[-1] == "pos_embed",
        "mask_token": lambda n: n.endswith("mask_token"),
        "rel-pos tables": lambda n: n.endswith(("rel_pos_h", "rel_pos_w", "rel_pos_bias.table")),
        "channel LayerNorm2d": lambda n: n in in_ln2d,
        "weight matrices": lambda n: n.endswith(".weight") and n not in in_norm and n not in in_ln2d,
    }
    exempt, decay = [], []
    for cat, test in cats.items():
        vals = {wd[n] == 0 for n in wd if test(n)}
        if vals == {True}:
            exempt.append(cat)
        elif vals == {False}:
            decay.append(cat)
        elif vals:
            exempt.append(cat + " (some)")
    return f"none on {', '.join(exempt) or '-'}; decay on {', '.join(decay) or '-'}"


def test_canvas(rel: str, hw=(768, 1024)) -> str:
    """Input size (and ViT token grid) the config's test pipeline + data preprocessor give a ``hw`` image."""
    import numpy as np
    from mmcv.transforms import Compose
    from mmengine.registry import init_default_scope
    from PIL import Image
    import downstream  # noqa: F401
    from mmdet.registry import MODELS
    cfg = load(rel)
    init_default_scope("mmdet")
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, "img.jpg")
        Image.fromarray(np.full((*hw, 3), 128, np.uint8)).save(path)
        steps = [t for t in cfg.test_pipeline if t["type"] != "LoadAnnotations"]
        data = Compose(steps)(dict(img_path=path, img_id=0))
    pre = MODELS.build(cfg.model.data_preprocessor)
    out = pre(dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]]), training=False)
    h, w = out["inputs"].shape[-2:]
    return f"{h}x{w} ({h // 16}x{w // 16} tokens)"


def box_convs(cfg) -> int:
    head = cfg.model.roi_head.bbox_head
    if head.type == "Shared4Conv1FCBBoxHead":
        return 4
    return head.get("num_shared_convs", 0)


def tta_short_sides(rel: str) -> str:
    cfg = load(rel)
    tta = [t for t in cfg.tta_pipeline if t["type"] == "TestTimeAug"][0]
    return ", ".join(str(min(r["scale"])) for r in tta["transforms"][0])


def linprobe_head(rel: str) -> str:
    from torch import nn
    _, _, model, _ = optimizer_view(rel, "classification")
    clf = model.model
    feature = "cls token after the final norm" if clf.global_pool == "token" and not isinstance(clf.norm, nn.Identity) \
        else f"{clf.global_pool} pooling"
    head = clf.head
    if isinstance(head, nn.Sequential) and isinstance(head[0], nn.BatchNorm1d) and not head[0].affine:
        return f"{feature}; BatchNorm1d(affine=False) + Linear"
    return f"{feature}; {type(head).__name__}"


def trainable(rel: str) -> str:
    groups, _, _, _ = optimizer_view(rel, "classification")
    names = sorted({n.split(".")[1] for g in groups for n in g["names"]})  # model.<part>.*
    return ", ".join(names)
