"""The paper configs, value by value, against their published sources: writes / checks docs/recipes.md.

    python tools/recipe_table.py            # print the tables
    python tools/recipe_table.py --write    # regenerate docs/recipes.md
    python tools/recipe_table.py --check    # exit 1 if docs/recipes.md differs from the resolved configs

Every "ours" cell is computed from the resolved config (``Config.fromfile``): batches and lr at the GPU count in the
config's name (the lr rule the launcher applies), schedules in optimizer steps, per-block lr scales and weight-decay
exemptions from the optimizer the config builds (on a narrow model with the config's depth), the detection test
canvas from the config's own test pipeline. Each row carries the source's value and where it is published; a row
marked ``match`` must equal it (tests/test_recipes.py asserts this and that the doc is current), ``differs`` and
``ours`` rows say why in the note.
"""
from __future__ import annotations

import argparse
import math
import os
import os.path as osp
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import List, Optional, Sequence

from recipe_resolve import (ADE_TRAIN, COCO_TRAIN, IMAGENET_TRAIN, ROOT, block_lr_scale, box_convs,  # (tools/)
                            crop_desc, decoder_desc, fmt, gpus_and_batch, linprobe_head, load, precision_desc,
                            resolved_lr, sched_desc, steps_per_epoch, test_canvas, trainable, tta_short_sides,
                            wd_summary)

DOC = osp.join(ROOT, "docs", "recipes.md")

MAE = "facebookresearch/mae"
D2 = "facebookresearch/detectron2 projects/ViTDet/configs"
D2_COMMON = "facebookresearch/detectron2 configs/common"
MMSEG_MAE = "open-mmlab/mmsegmentation configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py"
BEIT_SEG = "microsoft/unilm beit/semantic_segmentation/configs/beit/upernet"
TV_V2 = "pytorch/vision torchvision/models/detection/mask_rcnn.py maskrcnn_resnet50_fpn_v2"

STATUSES = ("match", "differs", "ours")


@dataclass
class Row:
    item: str
    ours: str
    source_value: str
    source: str
    status: str = "match"   # match: ours == source_value; differs: a documented deviation; ours: not published
    note: str = ""


# ----------------------------------------------------------------------------------------------- the tables
SIZES = {"base": "ViT-B", "large": "ViT-L", "huge": "ViT-H"}


def pretrain_rows(rel: str) -> List[Row]:
    cfg = load(rel)
    gpus, bs = gpus_and_batch(rel)
    accum = cfg.optim_wrapper.get("accumulative_counts", 1)
    eff = gpus * bs * accum
    epochs = cfg.train_cfg.max_epochs
    spe = steps_per_epoch(IMAGENET_TRAIN, gpus, bs, accum, cfg.train_dataloader.get("drop_last", False))
    official_spe = (math.ceil(IMAGENET_TRAIN / 64) // 64)  # PRETRAIN.md: 64 GPUs x 64, drop_last=True
    opt = cfg.optim_wrapper.optimizer
    m = cfg.model
    t = cfg.train_dataloader.dataset.transform
    return [
        Row("effective batch", str(eff), "4096", "MAE paper Table 8; PRETRAIN.md",
            note=f"{gpus} GPUs x {bs} x {accum} accumulation steps"),
        Row("base lr (blr)", fmt(cfg.blr), "1.5e-4", f"{MAE} PRETRAIN.md; paper Table 8"),
        Row(f"lr at batch {eff}", fmt(resolved_lr(cfg, gpus)), fmt(1.5e-4 * 4096 / 256),
            f"{MAE} main_pretrain.py (lr = blr x batch / 256)", note="the launcher derives it from the real GPU count"),
        Row("optimizer", f"{opt.type} betas {tuple(opt.betas)}", "AdamW betas (0.9, 0.95)", f"{MAE} main_pretrain.py"),
        Row("weight decay", fmt(opt.weight_decay), "0.05", f"{MAE} PRETRAIN.md"),
        Row("weight-decay exemptions", wd_summary(rel, "pretrain"),
            "none on norm layers, biases; decay on cls_token, mask_token, weight matrices",
            f"{MAE} main_pretrain.py: timm 0.3.2 optim_factory.add_weight_decay (no skip list)",
            note="pos_embed is a fixed sin-cos table (not trained)"),
        Row("epochs", str(epochs), "800", f"{MAE} PRETRAIN.md (800 epochs; the released checkpoints: 1600)"),
        Row("optimizer steps", f"{int(spe * epochs):,} ({spe:g}/epoch)",
            f"{official_spe * 800:,} ({official_spe}/epoch)", f"{MAE} main_pretrain.py (drop_last=True)",
            "differs", "the last partial batch of an epoch is kept (mmengine's default loader); 0.3% more steps"),
        Row("lr schedule", sched_desc(cfg), "linear warm-up 0-40 ep (from 0x); cosine 40-800 ep to 0",
            f"{MAE} util/lr_sched.py, --warmup_epochs 40",
            "differs", "warm-up starts at 1e-4 x lr instead of 0 (mmengine's LinearLR cannot start at 0)"),
        Row("mask ratio", str(m.mask_ratio), "0.75", "MAE paper Sec. 4.1; PRETRAIN.md"),
        Row("target", "normalised pixels" if m.norm_pix_loss else "pixels", "normalised pixels",
            f"{MAE} PRETRAIN.md --norm_pix_loss"),
        Row("decoder", decoder_desc(cfg), "512-d, 8 blocks, 16 heads", f"{MAE} models_mae.py mae_vit_*_dec512d8b"),
        Row("augmentation", f"RandomResizedCrop {t.img_size} scale {tuple(t.scale)} + flip",
            "RandomResizedCrop 224 scale (0.2, 1.0) + flip", f"{MAE} main_pretrain.py"),
        Row("precision", precision_desc(cfg), "fp16 autocast + loss scaling",
            f"{MAE} util/misc.py NativeScalerWithGradNormCount",
            "differs", "bf16 where the hardware has it (mae_backbone.precision); fp16 + scaling on older GPUs"),
    ]


def finetune_rows(rel: str, size: str, partial: bool = False) -> List[Row]:
    cfg = load(rel)
    gpus, bs = gpus_and_batch(rel)
    eff = gpus * bs * cfg.optim_wrapper.get("accumulative_counts", 1)
    src = {"base": (5e-4, 0.65, 0.1, 100), "large": (1e-3, 0.75, 0.2, 50), "huge": (1e-3, 0.75, 0.3, 50)}[size]
    blr, decay, dp, epochs_src = src
    # FINETUNE.md's commands: B and L on 4 nodes x 8 GPUs x 32 images, H on 8 nodes x 8 GPUs x 16 (drop_last=True)
    src_gpus, src_bs = (64, 16) if size == "huge" else (32, 32)
    src_spe = math.ceil(IMAGENET_TRAIN / src_gpus) // src_bs
    depth = {"base": 12, "large": 24, "huge": 32}[size]
    epochs = cfg.train_cfg.max_epochs
    spe = steps_per_epoch(IMAGENET_TRAIN, gpus, bs, 1, cfg.train_dataloader.get("drop_last", False))
    opt = cfg.optim_wrapper.optimizer
    lr = resolved_lr(cfg, gpus)
    m = cfg.model
    ft = f"{MAE} FINETUNE.md ({SIZES[size]} command)"
    rows = [
        Row("effective batch", str(eff), "1024", ft, note=f"{gpus} GPUs x {bs}"),
        Row("base lr (blr)", fmt(cfg.blr), fmt(blr), ft, note="paper Table 9 lists 1e-3 for every size"),
        Row(f"lr at batch {eff}", fmt(lr), fmt(blr * 1024 / 256), f"{MAE} main_finetune.py (lr = blr x batch / 256)"),
        Row("optimizer", f"{opt.type} betas {tuple(opt.betas)}", "AdamW betas (0.9, 0.999)",
            f"{MAE} main_finetune.py (torch defaults)"),
        Row("weight decay", fmt(opt.weight_decay), "0.05", ft),
        Row("weight-decay exemptions", wd_summary(rel, "classification"),
            "none on norm layers, biases; decay on weight matrices" if partial else
            "none on norm layers, biases, cls_token, pos_embed; decay on weight matrices",
            f"{MAE} util/lr_decay.py param_groups_lrd(no_weight_decay_list=model.no_weight_decay())",
            note="cls_token and pos_embed are frozen (not optimised)" if partial else ""),
        Row("layer decay", str(cfg.optim_wrapper.paramwise_cfg.layer_decay), str(decay), ft),
        Row("lr scale, block 0", block_lr_scale(rel, "classification", 0),
            "frozen" if partial else fmt(decay ** depth),
            "MAE paper Sec. 4.3 (the blocks below the last k are frozen)" if partial else
            f"{MAE} util/lr_decay.py (scale = rate ^ (depth + 1 - layer_id))",
            note="" if partial else f"{decay}^{depth}"),
        Row("lr scale, last block", block_lr_scale(rel, "classification", -1), fmt(decay),
            f"{MAE} util/lr_decay.py"),
        Row("drop path", str(m.drop_path_rate), str(dp), ft),
        Row("epochs", str(epochs), "50, 100 or 200 per k" if partial else str(epochs_src),
            "MAE paper appendix A.1" if partial else ft, "ours" if partial else "match",
            "the paper picks the best of {50, 100, 200} per k and does not publish which; 100 is our default, "
            "tools/partial_finetune_study.py --epochs 50 100 200 runs the search" if partial else ""),
        Row("optimizer steps", f"{int(spe * epochs):,} ({spe:g}/epoch)",
            "-" if partial else f"{src_spe * epochs_src:,} ({src_spe}/epoch)",
            ft + f" ({src_gpus} GPUs x {src_bs}, drop_last=True)",
            "ours" if partial else "match", "follows the epochs above" if partial else ""),
        Row("lr schedule", sched_desc(cfg),
            f"linear warm-up 0-5 ep (from 0x); cosine 5-{epochs if partial else epochs_src} ep to 1e-6 x group lr scale",
            f"{MAE} util/lr_sched.py (min_lr 1e-6 applied before the layer scale)",
            "differs", "warm-up starts at 1e-4 x lr instead of 0"),
        Row("mixup / cutmix / label smoothing",
            f"{m.mixup.mixup_alpha} / {m.mixup.cutmix_alpha} / {m.mixup.label_smoothing}", "0.8 / 1.0 / 0.1", ft),
        Row("pooling", "global average + fc_norm" if m.global_pool == "avg" else m.global_pool,
            "global average + fc_norm", f"{MAE} models_vit.py (global_pool=True)"),
        Row("augmentation", crop_desc(cfg.train_dataloader.dataset.transform),
            "RandomResizedCrop 224 scale (0.08, 1.0) + flip + RandAugment rand-m9-mstd0.5-inc1 + random erasing 0.25",
            f"{MAE} util/datasets.py build_transform (timm create_transform)"),
        Row("precision", precision_desc(cfg), "fp16 autocast + loss scaling", f"{MAE} util/misc.py",
            "differs", "bf16 where the hardware has it (mae_backbone.precision)"),
    ]
    if partial:
        rows.insert(0, Row("tuned blocks k (default)", str(m.finetune_blocks), "0, 1, 2, 4, 6, 12, 18, 24 (ViT-L)",
                           "MAE paper Fig. 9", "ours", "any k via model.finetune_blocks or the study tool"))
    return rows


def linprobe_rows(rel: str, size: str) -> List[Row]:
    cfg = load(rel)
    gpus, bs = gpus_and_batch(rel)
    accum = cfg.optim_wrapper.get("accumulative_counts", 1)
    eff = gpus * bs * accum
    opt = cfg.optim_wrapper.optimizer
    lp = f"{MAE} FINETUNE.md (linear probing)"
    return [
        Row("effective batch", str(eff), "16384", f"{lp}; paper Table 10", note=f"{gpus} GPUs x {bs} x {accum}"),
        Row("base lr (blr)", fmt(cfg.blr), "0.1", lp),
        Row(f"lr at batch {eff}", fmt(resolved_lr(cfg, gpus)), "6.4", f"{MAE} main_linprobe.py"),
        Row("optimizer", f"{opt.type} momentum {opt.momentum}", "LARS momentum 0.9", f"{MAE} util/lars.py"),
        Row("weight decay", fmt(opt.weight_decay), "0", "MAE paper Table 10"),
        Row("epochs", str(cfg.train_cfg.max_epochs), "90", "MAE paper Table 10",
            note="" if size == "base" else "FINETUNE.md: 50 epochs suffice for ViT-L/H"),
        Row("lr schedule", sched_desc(cfg), "linear warm-up 0-10 ep (from 0x); cosine 10-90 ep to 0",
            f"{MAE} util/lr_sched.py", "differs", "warm-up starts at 1e-4 x lr instead of 0"),
        Row("feature / head", linprobe_head(rel), "cls token after the final norm; BatchNorm1d(affine=False) + Linear",
            f"{MAE} main_linprobe.py"),
        Row("trainable tensors", trainable(rel), "head", f"{MAE} main_linprobe.py (everything else frozen)"),
        Row("augmentation", crop_desc(cfg.train_dataloader.dataset.transform),
            "RandomResizedCrop 224 scale (0.08, 1.0) + flip", f"{MAE} main_linprobe.py"),
    ]


def detection_rows(rel: str, size: str, variant: str) -> List[Row]:
    cfg = load(rel)
    gpus, bs = gpus_and_batch(rel)
    depth = {"base": 12, "large": 24}[size]
    decay_src, dp_src = {"base": (0.7, 0.1), "large": (0.8, 0.4)}[size]
    d2 = f"{D2}/COCO/mask_rcnn_vitdet_{'b' if size == 'base' else 'l'}_100ep.py"
    opt = cfg.optim_wrapper.optimizer
    bb = cfg.model.backbone
    decay = cfg.optim_wrapper.paramwise_cfg.layer_decay
    repeat = cfg.train_dataloader.dataset.get("times", 1)
    epochs = cfg.train_cfg.max_epochs
    spe = steps_per_epoch(COCO_TRAIN * repeat, gpus, bs)
    ms = [s for s in cfg.param_scheduler if s["type"] == "MultiStepLR"][0]
    fpn = variant == "fpn"
    origin = "ViTDet's values (MAE A.3 searched them and did not publish them)" if fpn else ""
    status = "ours" if fpn else "match"
    taps = tuple(bb.out_indices) if fpn else tuple(bb.global_block_indexes)
    q = depth // 4
    rows = [
        Row("effective batch", str(gpus * bs), "64", f"{d2} (train.total_batch_size)", note=f"{gpus} GPUs x {bs}"),
        Row("optimizer", f"{opt.type} lr {fmt(opt.lr)} betas {tuple(opt.betas)}", "AdamW lr 1e-4 betas (0.9, 0.999)",
            f"{D2_COMMON}/optim.py (AdamW, as {d2.split('/')[-1]} sets it)", status, origin),
        Row("weight decay", fmt(opt.weight_decay), "0.1", f"{D2_COMMON}/optim.py", status, origin),
        Row("weight-decay exemptions", wd_summary(rel, "detection"),
            "none on norm layers, pos_embed; decay on biases, rel-pos tables, channel LayerNorm2d, weight matrices"
            if not fpn else "-",
            "detectron2 solver/build.py get_default_optimizer_params (weight_decay_norm=0, pos_embed override)",
            status, "detectron2's rule (norm layers are torch's; its neck / head LayerNorm is its own class and "
            "decays, as our LayerNorm2d does)" if fpn else ""),
        Row("layer decay", str(decay), str(decay_src), d2, status, origin),
        Row("lr scale, block 0", block_lr_scale(rel, "detection", 0), fmt(decay_src ** depth),
            "detectron2 modeling/backbone/vit.py get_vit_lr_decay_rate", status, f"{decay_src}^{depth}"),
        Row("lr scale, last block", block_lr_scale(rel, "detection", -1), fmt(decay_src), "get_vit_lr_decay_rate",
            status, origin),
        Row("drop path", str(bb.drop_path_rate), str(dp_src), d2, status, origin),
        Row("schedule", f"{epochs} ep x RepeatDataset {repeat} = {epochs * repeat} ep", "100 ep (184,375 iterations)",
            d2, "differs" if not fpn else "ours", "epoch-based on mmdet's LSJ config; iterations below"),
        Row("optimizer steps", f"{int(spe * epochs):,}", "184,375", d2, "differs",
            f"{COCO_TRAIN:,} filtered images x {epochs * repeat} / 64; detectron2 counts 118k images (0.6% more)"),
        Row("lr steps", f"x{ms.gamma} at steps {int(spe * ms.milestones[0]):,}, {int(spe * ms.milestones[1]):,}",
            "x0.1 at steps 163,889, 177,546", d2, "differs", "at 88 and 96 of 100 epochs, as detectron2"),
        Row("warm-up", f"{cfg.param_scheduler[0]['end']} iterations from {fmt(cfg.param_scheduler[0]['start_factor'])}x",
            f"250 iterations from {fmt(0.001)}x", d2),
        Row("train canvas", "1024x1024 (64x64 tokens)" if any(
            a.get("size") == (1024, 1024) for a in cfg.model.data_preprocessor.get("batch_augments") or [])
            else "not padded", "1024x1024 (64x64 tokens)", f"{D2}/common/coco_loader_lsj.py (LSJ, scale 0.1-2.0)"),
        Row("test canvas of a 1024x768 image", test_canvas(rel, (768, 1024)), "1024x1024 (64x64 tokens)",
            f"{D2_COMMON}/models/mask_rcnn_vitdet.py (square_pad=1024) -> modeling/meta_arch/rcnn.py "
            "preprocess_image; mmdet projects/ViTDet test Pad"),
        Row("test canvas of a 600x1000 (portrait) image", test_canvas(rel, (1000, 600)), "1024x1024 (64x64 tokens)",
            "as above"),
    ]
    if fpn:
        rows += [
            Row("FPN taps (blocks)", str(taps), str(tuple(q * i - 1 for i in range(1, 5))),
                "MAE paper A.3 (blocks equally divided into 4 subsets)"),
            Row("FPN norm / RPN convs", f"{cfg.model.neck.norm_cfg.type} / {cfg.model.rpn_head.num_convs}",
                "SyncBN / 2", TV_V2 + " + its weights' recipe (pytorch/vision PR #5773: --sync-bn, 32 GPUs x 2)"),
            Row("box head", f"{box_convs(cfg)} conv + 1 fc + {cfg.model.roi_head.bbox_head.norm_cfg.type}",
                "4 conv + 1 fc + SyncBN", TV_V2 + " (FastRCNNConvFCHead([256] * 4, [1024]))"),
            Row("mask head", f"{cfg.model.roi_head.mask_head.num_convs} conv + "
                f"{cfg.model.roi_head.mask_head.norm_cfg.type}", "4 conv + SyncBN", TV_V2 + " (MaskRCNNHeads)"),
            Row("RPN proposals kept per image (train)", str(cfg.model.train_cfg.rpn_proposal.max_per_img), "2000",
                TV_V2 + " (rpn_post_nms_top_n_train)", "differs", "mmdet's and detectron2's 1000"),
        ]
    else:
        rows += [
            Row("global-attention blocks", str(taps), str(tuple(q * i - 1 for i in range(1, 5))), d2),
            Row("window size", str(bb.window_size), "14", d2),
            Row("heads", f"RPN {cfg.model.rpn_head.num_convs} convs; {cfg.model.roi_head.bbox_head.type} + "
                f"{cfg.model.roi_head.bbox_head.norm_cfg.type}; mask head + {cfg.model.roi_head.mask_head.norm_cfg.type}",
                "RPN 2 convs; Shared4Conv1FCBBoxHead + LN2d; mask head + LN2d",
                f"{D2_COMMON}/models/mask_rcnn_vitdet.py", note="LN2d = channel LayerNorm, as detectron2"),
        ]
    rows.append(Row("precision", precision_desc(cfg, "backbone + neck"), "fp16 AMP", f"{d2} (train.amp.enabled)", "differs",
                    "mmcv's RoI ops have no bf16 kernels: heads run fp32"))
    return rows


def segmentation_rows(rel: str, size: str) -> List[Row]:
    cfg = load(rel)
    gpus, bs = gpus_and_batch(rel)
    depth = {"base": 12, "large": 24}[size]
    opt = cfg.optim_wrapper.optimizer
    bb = cfg.model.backbone
    decay = cfg.optim_wrapper.paramwise_cfg.layer_decay
    large = size == "large"
    beit_l = f"{BEIT_SEG}/upernet_beit_large_24_512_slide_160k_ade20k_pt2ft.py"
    src = beit_l if large else MMSEG_MAE
    iters = cfg.train_cfg.max_iters
    rows = [
        Row("effective batch", str(gpus * bs), "16", f"{src}; MAE paper A.4", note=f"{gpus} GPUs x {bs}"),
        Row("optimizer", f"{opt.type} lr {fmt(opt.lr)} betas {tuple(opt.betas)}",
            "AdamW lr 2e-5 betas (0.9, 0.999)" if large else "AdamW lr 1e-4 betas (0.9, 0.999)", src,
            "ours" if large else "match", "the ViT-B lr, with ViTDet's ViT-L layer decay (below); MAE A.4 searched lr "
            "per entry and did not publish it" if large else ""),
        Row("weight decay", fmt(opt.weight_decay), "0.05", src),
        Row("weight-decay exemptions", wd_summary(rel, "segmentation"),
            "none on norm layers, biases; decay on cls_token, pos_embed, rel-pos tables, weight matrices",
            "mmseg / BEiT LayerDecayOptimizerConstructor (its pos_embed / cls_token test never matches "
            "'backbone.'-prefixed names)"),
        Row("layer decay", str(decay), "0.95 (BEiT-L, lr 2e-5)" if large else "0.65", src,
            "ours" if large else "match", "0.8 = ViTDet's ViT-L value (detectron2 mask_rcnn_vitdet_l_100ep.py); "
            "keeps block 0 near ViT-B's lr scale. BEiT-L's 0.95 goes with its lr 2e-5, tuned for BEiT weights"
            if large else ""),
        Row("lr scale, block 0", block_lr_scale(rel, "segmentation", 0), "-" if large else fmt(0.65 ** depth),
            "mmseg layer_decay_optimizer_constructor.py", "ours" if large else "match",
            "0.8^24; 0.65^24 = 3.2e-5 would freeze the lower half" if large else "0.65^12"),
        Row("lr scale, last block", block_lr_scale(rel, "segmentation", -1), "-" if large else "0.65",
            "mmseg layer_decay_optimizer_constructor.py", "ours" if large else "match",
            "follows the layer decay above" if large else ""),
        Row("drop path", str(bb.drop_path_rate), "0.2" if large else "0.1", src),
        Row("iterations", f"{iters:,}", "160,000", src, note=f"{iters * 16 / ADE_TRAIN:.0f} epochs of ADE20K; "
            "MAE A.4 says 100 epochs (~126k)" + ("" if large else ": mmseg's 160k run reproduces the paper's 48.1")),
        Row("lr schedule", sched_desc(cfg), "linear warm-up 0-1500 it (from 1e-6x); poly (power 1.0) 1500-160000 it "
            "to 0", src),
        Row("taps (blocks)", str(tuple(bb.out_indices)), "(7, 11, 15, 23)" if large else "(3, 5, 7, 11)", src),
        Row("relative position bias", "zero-init, every block" if bb.rel_pos == "bias" else str(bb.rel_pos or "none"),
            "zero-init, every block", "MAE paper A.4"),
        Row("decode head channels", str(cfg.model.decode_head.channels), "1024" if large else "768", src),
        Row("single-scale test", f"slide {cfg.model.test_cfg.crop_size[0]}, stride {cfg.model.test_cfg.stride[0]}",
            "slide 512, stride 341", src),
        Row("ms + flip short sides", tta_short_sides(rel.replace(".py", "_ms-flip-test.py")),
            "512, 512, 512, 640, 768, 896", f"{BEIT_SEG}/upernet_beit_base_12_512_slide_160k_ade20k_ms.py "
            "(SETR_Resize: short side max(512r, 512))", note="ratios 0.5-1.75 of 512, floored at the 512 crop"),
        Row("precision", precision_desc(cfg, "backbone"), "fp16 (apex)" if large else "fp16 key ignored (fp32)", src,
            "differs", "bf16 where the hardware has it"),
    ]
    return rows


@lru_cache(maxsize=None)
def tables() -> List[tuple]:
    """(title, config, rows) per paper config."""
    c = "configs/"
    out = []
    for size, name in [("base", "mae_vit-base-p16_8xb128-accum4-amp-800e_in1k.py"),
                       ("large", "mae_vit-large-p16_8xb64-accum8-amp-800e_in1k.py"),
                       ("huge", "mae_vit-huge-p14_8xb32-accum16-amp-800e_in1k.py")]:
        out.append((f"MAE pretraining, {SIZES[size]}", c + "mae/" + name, pretrain_rows(c + "mae/" + name)))
    for size, p in [("base", "base-p16"), ("large", "large-p16"), ("huge", "huge-p14")]:
        ep = {"base": 100, "large": 50, "huge": 50}[size]
        rel = f"{c}classification/vit-{p}_mae-ft_8xb128-{ep}e_in1k.py"
        out.append((f"Fine-tuning, {SIZES[size]}", rel, finetune_rows(rel, size)))
        rel = f"{c}classification/vit-{p}_mae-linprobe_8xb512-accum4-90e_in1k.py"
        out.append((f"Linear probing, {SIZES[size]}", rel, linprobe_rows(rel, size)))
        rel = f"{c}classification/vit-{p}_mae-partial_8xb128_in1k.py"
        out.append((f"Partial fine-tuning, {SIZES[size]}", rel, finetune_rows(rel, size, partial=True)))
    for size, s in [("base", "b"), ("large", "l")]:
        for variant, label in [("vitdet", "ViTDet"), ("fpn", "MAE-paper FPN")]:
            rel = f"{c}mask_rcnn/mask-rcnn_mae-vit-{s}-{variant}_16xb4-lsj-100e_coco.py"
            out.append((f"Mask R-CNN, {SIZES[size]}, {label}", rel, detection_rows(rel, size, variant)))
    for size, s in [("base", "b"), ("large", "l")]:
        rel = f"{c}upernet/upernet_mae-vit-{s}_8xb2-160k_ade20k-512x512.py"
        out.append((f"UperNet on ADE20K, {SIZES[size]}", rel, segmentation_rows(rel, size)))
    return out


HEADER = """# Paper recipes, value by value

Every paper config, resolved (`Config.fromfile`), against the source it follows. Generated by
`python tools/recipe_table.py --write` from the configs themselves; `tests/test_recipes.py` fails when this page and
the configs disagree, and when a row marked **match** is not equal to its source.

- **ours** is what the config runs: batches and lr at the GPU count in its name (the launcher's rule
  lr = blr x batch / 256 where the config gives blr), optimizer steps for ImageNet-1k ({imagenet:,} images),
  COCO train2017 ({coco:,} images after mmdet's filter) and ADE20K ({ade:,}), per-block lr scales and weight-decay
  exemptions read from the optimizer the config builds, the detection test canvas from the config's test pipeline.
- **status**: *match* (equal to the source), *differs* (a documented deviation; the note says why), *ours* (the
  source does not publish the value: our choice, with the reason).
- Sources: facebookresearch/mae (PRETRAIN.md, FINETUNE.md, main_*.py, util/), the MAE paper (arXiv 2111.06377,
  Tables 8-10, appendix A.1-A.4), detectron2 projects/ViTDet, mmsegmentation configs/mae, BEiT (microsoft/unilm
  beit/semantic_segmentation), torchvision's maskrcnn_resnet50_fpn_v2 (the public code of Li et al. 2021's improved
  Mask R-CNN, which MAE A.3 follows; the paper text is not available to us).
- Per-task commands and the numbers the configs target: `configs/*/README.md`.
"""


def render() -> str:
    lines = [HEADER.format(imagenet=IMAGENET_TRAIN, coco=COCO_TRAIN, ade=ADE_TRAIN)]
    for title, rel, rows in tables():
        lines += [f"## {title}", "", f"`{rel}`", "",
                  "| hyperparameter | ours (resolved) | source value | source | status | note |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            cells = [r.item, r.ours, r.source_value, r.source, r.status, r.note]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def mismatches() -> List[str]:
    """Rows marked match whose value differs from the source, and rows with an unknown status."""
    bad = []
    for title, _, rows in tables():
        for r in rows:
            if r.status not in STATUSES:
                bad.append(f"{title}: {r.item}: unknown status {r.status!r}")
            elif r.status == "match" and r.ours != r.source_value:
                bad.append(f"{title}: {r.item}: ours {r.ours!r} != source {r.source_value!r}")
            elif r.status != "match" and not r.note:
                bad.append(f"{title}: {r.item}: a {r.status} row needs a note saying why")
    return bad


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help=f"write {osp.relpath(DOC, ROOT)}")
    g.add_argument("--check", action="store_true", help=f"exit 1 if {osp.relpath(DOC, ROOT)} is stale")
    args = p.parse_args(argv)
    import logging
    logging.disable(logging.WARNING)
    text = render()
    bad = mismatches()
    for b in bad:
        print("MISMATCH:", b, file=sys.stderr)
    if args.write:
        with open(DOC + ".tmp", "w") as f:
            f.write(text)
        os.replace(DOC + ".tmp", DOC)
        print(f"wrote {osp.relpath(DOC, ROOT)}")
    elif args.check:
        current = open(DOC).read() if osp.exists(DOC) else ""
        if current != text:
            print(f"{osp.relpath(DOC, ROOT)} is stale: run python tools/recipe_table.py --write", file=sys.stderr)
            return 1
    else:
        print(text)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
