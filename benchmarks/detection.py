"""Detection-backbone timing: one Mask R-CNN training iteration at 1024 x 1024.

Each measurement builds the detector from a shipped config (no checkpoint), feeds a real photo (the
offline VOC image) through the config's own large-scale-jitter pipeline and 1024 x 1024 batch padding,
and times full iterations (data preprocessing, forward, backward, AdamW step with layer decay) as a
median after warm-up. Memory: peak RSS of the process (CPU) or ``max_memory_allocated`` (CUDA).
"""
from __future__ import annotations

import copy
import tempfile
import time
from typing import Dict

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mae_backbone.precision import autocast_module, autocast_modules

from .measure import count_flops, interleaved_times, median_time, ran_precision, rss_mib, sync, tensor_memory, time_stats

VARIANT_CONFIGS = {
    "fpn": "configs/mask_rcnn/mask-rcnn_mae-vit-b-fpn_16xb4-lsj-100e_coco.py",
    "vitdet": "configs/mask_rcnn/mask-rcnn_mae-vit-b-vitdet_16xb4-lsj-100e_coco.py",
}


def detection_iteration(variant: str = "vitdet", config: str = None, batch: int = 1, dtype: str = "bf16",
                        grad_checkpointing: bool = False, all_global: bool = False, warmup: int = 1,
                        repeats: int = 3, device: str = "cpu", seed: int = 0) -> Dict:
    """Median seconds per Mask R-CNN training iteration and peak memory for one ViT-B variant.

    ``dtype``: ``bf16`` autocasts the backbone and ViTDet neck (the configs' setting), ``fp32`` runs all in fp32;
    the RoI heads are fp32 either way. ``all_global`` turns the ViTDet variant's windows off (every block global, the ablation of ViTDet Table 1).
    """
    import downstream  # noqa: F401  registration
    from mae_backbone.data.offline_coco import write_offline_coco
    from mmdet.registry import DATASETS, MODELS

    torch.manual_seed(seed)
    np.random.seed(seed)  # the jitter / crop of the one sample
    init_default_scope("mmdet")
    cfg = Config.fromfile(config or VARIANT_CONFIGS[variant])
    bb = cfg.model.backbone
    bb.init_cfg = None
    bb.grad_checkpointing = grad_checkpointing
    if all_global:
        bb.window_size, bb.global_block_indexes = 0, ()
    rss0 = rss_mib()
    model = MODELS.build(cfg.model).to(device).train()
    # dtype: the config's autocast_modules (backbone, ViTDet neck) in bf16; mmcv's RoIAlign / NMS keep the heads fp32
    parts = cfg.get("autocast_modules") or {"backbone": None}  # a config without the entry: the backbone
    autocast_modules(model, {part: {"fp32": None, "bf16": "bfloat16"}[dtype] for part in parts})
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    with tempfile.TemporaryDirectory() as tmp:
        write_offline_coco(tmp)
        ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
        while ds_cfg.get("type") == "RepeatDataset":
            ds_cfg = ds_cfg.dataset
        # the config's COCO class names: the VOC photo's person / chair / bottle instances keep their boxes
        ds_cfg.update(data_root=tmp + "/", ann_file="annotations/instances_train.json", data_prefix=dict(img="images/"))
        ds_cfg.filter_cfg = dict(filter_empty_gt=True)
        ds = DATASETS.build(ds_cfg)
        samples = [ds[0] for _ in range(batch)]  # VOC photo (COCO classes person / chair / ... keep annotations)
    data = pseudo_collate(samples)
    rss_built = rss_mib()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        model.train_step(data, wrapper)

    times = median_time(step, warmup, repeats)
    out = dict(variant=variant, all_global=all_global, grad_checkpointing=grad_checkpointing,
               dtype=ran_precision(dtype, device),
               batch=batch, input=tuple(model.data_preprocessor(data, True)["inputs"].shape[-2:]),
               **time_stats(times),
               params_m=sum(p.numel() for p in model.parameters()) / 1e6,
               backbone_params_m=sum(p.numel() for p in model.backbone.parameters()) / 1e6)
    if device == "cuda":
        out["peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        out["peak_rss_mib"] = rss_mib()
        out["rss_before_mib"] = rss_built
        out["train_mem_mib"] = out["peak_rss_mib"] - rss_built  # activations, grads, optimizer state, workspace
        out["rss_start_mib"] = rss0
    return out


DETECTION_BACKBONES = {  # variant -> (all_global, grad_checkpointing) of the ViTDet config's backbone
    "vitdet": (False, False),
    "vitdet-global": (True, False),
    "vitdet-ckpt": (False, True),
}


def _build_vitdet_backbone(variant: str, dtype: str, device):
    import downstream  # noqa: F401  registration
    from mmdet.registry import MODELS

    init_default_scope("mmdet")
    bb = Config.fromfile(VARIANT_CONFIGS["vitdet"]).model.backbone
    bb.init_cfg = None
    all_global, bb.grad_checkpointing = DETECTION_BACKBONES[variant]
    if all_global:
        bb.window_size, bb.global_block_indexes = 0, ()
    with torch.device(device):
        model = MODELS.build(bb).train()
    autocast_module(model, {"fp32": None, "bf16": "bfloat16"}[dtype])
    return model


def detection_backbones(variants=tuple(DETECTION_BACKBONES), size: int = 1024, batch: int = 1, dtype: str = "bf16",
                        warmup: int = 1, repeats: int = 3, device: str = "cpu", seed: int = 0, memory: bool = True):
    """The ViTDet config's MAE ViT-B backbone alone at ``size``², forward + backward, per variant (windowed as
    configured, every block global, activation checkpointing): seconds (timed interleaved, median), model FLOPs
    (counted on the meta device in fp32) and, with ``memory``, tensor memory (activations held for backward and
    the fwd + bwd peak, :func:`benchmarks.measure.tensor_memory`; that pass runs first and also warms up;
    with ``repeats=0`` its time is the one timing: a cold first step under the byte-counting dispatch mode, which
    the first variant pays the process's warm-up for, so it understates the windowed speedup slightly).
    ``flops`` of the checkpointed variant include the recomputed forward. Ratios ``*_vs_global`` are to the
    all-global variant when it is in ``variants``."""

    torch.manual_seed(seed)
    models = {v: _build_vitdet_backbone(v, dtype, device) for v in variants}
    x = torch.randn(batch, 3, size, size, device=device)

    def loss_of(model, inp):
        return sum(o.float().mean() for o in model(inp))

    def step_of(model):
        def step():
            model.zero_grad(set_to_none=True)
            loss_of(model, x).backward()
        return step

    mem, first = {}, {}
    for v, m in models.items():  # first: it also warms every model up
        if memory:
            m.zero_grad(set_to_none=True)
            sync()
            t0 = time.perf_counter()
            mem[v] = tensor_memory(lambda: loss_of(m, x))
            sync()
            first[v] = [time.perf_counter() - t0]
            m.zero_grad(set_to_none=True)
    if repeats == 0 and memory:  # the memory pass is the one timing (the --quick setting)
        times = first
    else:
        times = interleaved_times({v: step_of(m) for v, m in models.items()}, warmup, repeats)
    rows = []
    for v, m in models.items():
        meta = _build_vitdet_backbone(v, "fp32", "meta")
        xm = torch.empty(batch, 3, size, size, device="meta")
        r = dict(variant=v, size=size, batch=batch, dtype=ran_precision(dtype, device), **time_stats(times[v]),
                 flops=count_flops(lambda: loss_of(meta, xm).backward()))
        r["repeats"] = repeats  # 0: the one timing is the memory pass
        r.update(mem.get(v, {}))
        rows.append(r)
    glob = next((r for r in rows if r["variant"] == "vitdet-global"), None)
    for r in rows:
        if glob:
            r["speedup_vs_global"] = glob["step_s"] / r["step_s"]
            r["flop_ratio_vs_global"] = glob["flops"] / r["flops"]
            if memory:
                r["activation_vs_global"] = r["activation_mib"] / glob["activation_mib"]
    return rows
