"""Segmentation timing: the ViT-B UperNet training iteration and the backbone alone, ours against mmseg's MAE."""
from __future__ import annotations

import copy
import os.path as osp
from typing import Dict

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mae_backbone.precision import autocast_module

from .measure import interleaved_times, median_time, ran_precision, rss_mib, time_stats

SEG_CONFIGS = {
    # ours: MAEViT with relative position bias and the rescaling pyramid (the paper config)
    "ours": "configs/upernet/upernet_mae-vit-b_8xb2-160k_ade20k-512x512.py",
    # mmseg's stock MAE UperNet config with only the backbone type switched to MAEViT
    "ours-stock-args": "configs/upernet/upernet_mae-vit-b_stock-mmseg-mae_8xb2-amp-160k_ade20k-512x512.py",
    # mmseg's own MAE backbone (BEiT-based), stock config
    "mmseg-mae": "mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py",
}


def _build_segmentor(variant: str, dtype: str, device: str, seed: int):
    """Build one SEG_CONFIGS variant without a checkpoint (BN for SyncBN off CUDA); returns (cfg, model)."""
    import downstream  # noqa: F401  registration
    from mmseg.registry import MODELS

    torch.manual_seed(seed)
    init_default_scope("mmseg")
    path = SEG_CONFIGS[variant]
    if path.startswith("mmseg::"):
        import mmseg
        path = osp.join(osp.dirname(mmseg.__file__), ".mim", "configs", path[len("mmseg::"):])
    cfg = Config.fromfile(path)
    cfg.model.pretrained = None
    bb = cfg.model.backbone
    bb.pop("init_cfg", None)
    if bb.type != "MAEViT" and dtype != "fp32":
        raise ValueError("mmseg's MAE backbone is measured in fp32 only here")
    if not torch.cuda.is_available():  # SyncBN without a process group on CPU: BN
        for part in ("decode_head", "auxiliary_head", "neck"):
            if cfg.model.get(part) and cfg.model[part].get("norm_cfg", {}).get("type") == "SyncBN":
                cfg.model[part].norm_cfg = dict(type="BN", requires_grad=True)
    model = MODELS.build(cfg.model).to(device).train()
    if bb.type == "MAEViT":
        autocast_module(model.backbone, {"fp32": None, "bf16": "bfloat16"}[dtype])
    return cfg, model


def segmentation_iteration(variant: str = "ours", batch: int = 2, dtype: str = "fp32", warmup: int = 1,
                           repeats: int = 5, device: str = "cpu", seed: int = 0) -> Dict:
    """Median seconds per UperNet training iteration at 512 x 512 (random image and 150-class labels).

    Batch >= 2: UperNet's pyramid pooling normalises a 1 x 1 map with BatchNorm, which cannot train on
    one sample (mmseg's configs use 2 per GPU); :func:`segmentation_backbone_step` times batch 1.
    """
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    if batch < 2:
        raise ValueError("a UperNet training iteration needs batch >= 2 (BatchNorm after the 1x1 pyramid pooling); "
                         "time the backbone at batch 1 with `python -m benchmarks segmentation --part backbone`")
    rss0 = rss_mib()
    cfg, model = _build_segmentor(variant, dtype, device, seed)
    optim = copy.deepcopy(cfg.optim_wrapper)
    optim = dict(type="OptimWrapper", optimizer=optim.optimizer)  # plain AdamW: the step, not the lr rule
    wrapper = build_optim_wrapper(model, Config(dict(optim_wrapper=optim)).optim_wrapper)
    imgs = [torch.randint(0, 256, (3, 512, 512), dtype=torch.uint8) for _ in range(batch)]
    samples = []
    for _ in range(batch):
        s = SegDataSample(metainfo=dict(img_shape=(512, 512), ori_shape=(512, 512), pad_shape=(512, 512)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, 512, 512)))
        samples.append(s)
    data = dict(inputs=imgs, data_samples=samples)
    rss_built = rss_mib()

    def step():
        model.train_step(data, wrapper)

    times = median_time(step, warmup, repeats)
    return dict(variant=variant, part="iteration", backbone=cfg.model.backbone.type,
                dtype=ran_precision(dtype, device), batch=batch,
                **time_stats(times),
                backbone_params_m=sum(p.numel() for p in model.backbone.parameters()) / 1e6,
                peak_rss_mib=rss_mib(), train_mem_mib=rss_mib() - rss_built, rss_start_mib=rss0)


def _segmentation_backbone_step(variant: str, batch: int, dtype: str, device: str, seed: int):
    """(cfg, the step closure, its parts): backbone (+ pyramid neck) forward + backward + AdamW at 512²."""
    cfg, model = _build_segmentor(variant, dtype, device, seed)
    parts = [model.backbone] + ([model.neck] if getattr(model, "with_neck", False) else [])
    params = [p for m in parts for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)
    x = torch.randn(batch, 3, 512, 512, device=device)
    shapes = []

    def step():
        feats = model.extract_feat(x)
        shapes[:] = [tuple(f.shape[1:]) for f in feats]
        loss = sum(f.float().mean() for f in feats)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step.shapes = shapes
    return cfg, step, parts


def segmentation_backbone_step(variant: str = "ours", batch: int = 1, dtype: str = "fp32", warmup: int = 1,
                               repeats: int = 5, device: str = "cpu", seed: int = 0) -> Dict:
    """Median seconds of the segmentation backbone (+ its pyramid neck) forward + backward + AdamW step at 512 x 512.

    The four multi-scale maps the heads would receive are reduced by a mean to a scalar loss, so the time is
    the backbone's own (the same UperNet heads follow every variant).
    """
    rss0 = rss_mib()
    cfg, step, parts = _segmentation_backbone_step(variant, batch, dtype, device, seed)
    rss_built = rss_mib()
    times = median_time(step, warmup, repeats)
    return dict(variant=variant, part="backbone", backbone=cfg.model.backbone.type,
                dtype=ran_precision(dtype, device), batch=batch,
                **time_stats(times),
                out_shapes=step.shapes, backbone_params_m=sum(p.numel() for m in parts for p in m.parameters()) / 1e6,
                peak_rss_mib=rss_mib(), train_mem_mib=rss_mib() - rss_built, rss_start_mib=rss0)


def compare_segmentation_backbones(variants=("ours", "mmseg-mae"), batch: int = 1, dtype: str = "fp32",
                                   warmup: int = 1, repeats: int = 3, device: str = "cpu", seed: int = 0):
    """:func:`segmentation_backbone_step` for several variants in one process, timed interleaved; each row's
    ``speedup_vs_mmseg`` is mmseg's MAE step time over the row's (when ``mmseg-mae`` is among the variants)."""

    if dtype != "fp32" and "mmseg-mae" in variants:
        raise ValueError("mmseg's MAE backbone has no bf16 path here: compare in fp32, or leave mmseg-mae out")
    steps = {v: _segmentation_backbone_step(v, batch, dtype, device, seed)[1] for v in variants}
    times = interleaved_times(steps, warmup, repeats)
    rows = [dict(variant=v, batch=batch, dtype=ran_precision(dtype, device),
                 **time_stats(t)) for v, t in times.items()]
    ref = next((r for r in rows if r["variant"] == "mmseg-mae"), None)
    for r in rows:
        if ref:
            r["speedup_vs_mmseg"] = ref["step_s"] / r["step_s"]
    return rows
