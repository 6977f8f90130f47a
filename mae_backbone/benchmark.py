"""Timing helpers: MAE pretraining step throughput and dense-matmul peak, medians over repeats."""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable, Dict, List

import torch

from .models import create_model

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def median_time(fn: Callable[[], None], warmup: int = 2, repeats: int = 5) -> List[float]:
    """Run ``fn`` ``warmup`` times, then time ``repeats`` runs; returns the sorted times (s)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)


def _autocast(dtype: str, device: str):
    if DTYPES[dtype] is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=DTYPES[dtype])


IMPLS = ("ours", "hf")  # pretraining implementations the step benchmark can time


def hf_twin(model: torch.nn.Module, mask_ratio: float = 0.75) -> torch.nn.Module:
    """HF transformers ``ViTMAEForPreTraining`` with the shape of our MAE ``model`` (SDPA attention,
    ``norm_pix_loss`` as ours); a peer for timing, initialised by HF (weights do not matter for speed)."""
    try:
        import transformers
    except ImportError as e:
        raise ImportError("the HF peer needs transformers: pip install -e '.[bench]'") from e
    blk, dec = model.blocks[0], model.decoder_blocks[0]
    cfg = transformers.ViTMAEConfig(
        hidden_size=model.embed_dim, num_hidden_layers=len(model.blocks), num_attention_heads=blk.attn.num_heads,
        intermediate_size=blk.mlp.fc1.out_features, image_size=model.img_size[0], patch_size=model.patch_size,
        num_channels=model.in_chans, decoder_hidden_size=model.decoder_embed_dim,
        decoder_num_hidden_layers=len(model.decoder_blocks), decoder_num_attention_heads=dec.attn.num_heads,
        decoder_intermediate_size=dec.mlp.fc1.out_features, mask_ratio=mask_ratio, norm_pix_loss=model.norm_pix_loss,
        layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True, attn_implementation="sdpa")
    return transformers.ViTMAEForPreTraining(cfg)


def pretrain_step_throughput(arch: str = "mae_vit_base_patch16", batch: int = 8, dtype: str = "fp32",
                             img_size: int = 224, mask_ratio: float = 0.75, warmup: int = 2, repeats: int = 5,
                             device: str = "cpu", seed: int = 0, fused_adamw: bool = True, impl: str = "ours",
                             count_flops: bool = False, **model_kwargs) -> Dict:
    """Images/s of one MAE training step (forward, backward, AdamW) on random images.

    ``impl``: ``ours`` or ``hf`` (HF ``ViTMAEForPreTraining`` of the same shape, :func:`hf_twin`), timed the same
    way. ``fused_adamw``: torch's fused AdamW kernel (our optimizer constructor's default) for either side;
    False: torch's default implementation for the device (a per-tensor loop on CPU). ``count_flops`` adds
    ``flops`` (:func:`pretrain_step_flops`, ours only) counted on the same model and batch after the timing.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    torch.manual_seed(seed)
    model = create_model(arch, img_size=img_size, norm_pix_loss=True, **model_kwargs)
    if impl == "hf":
        if model_kwargs.get("mask_token_in_encoder"):
            raise ValueError("the HF peer has no mask-token encoder")
        model = hf_twin(model, mask_ratio)
    model = model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95),
                            weight_decay=0.05, **({"fused": True} if fused_adamw else {}))
    imgs = torch.randn(batch, 3 if impl == "hf" else model.in_chans, img_size, img_size, device=device)

    def step():
        with _autocast(dtype, device):
            if impl == "hf":
                loss = model(pixel_values=imgs).loss
            else:
                loss, _, _ = model(imgs, mask_ratio=mask_ratio)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    times = median_time(step, warmup, repeats)
    med = statistics.median(times)
    out = dict(arch=arch, impl=impl, batch=batch, dtype=dtype, img_size=img_size, mask_ratio=mask_ratio,
               fused_adamw=fused_adamw, step_s=med, img_per_s=batch / med, min_s=times[0], max_s=times[-1],
               repeats=repeats)
    if count_flops:
        if impl != "ours":
            raise ValueError("count_flops counts our model's step; the HF peer has the same shape")
        out["flops"] = pretrain_step_flops(model, imgs, mask_ratio)
    return out


def matmul_peak(dtype: str = "fp32", n: int = 2048, device: str = "cpu", repeats: int = 5) -> float:
    """Dense matmul FLOP/s for n x n operands (the machine's practical peak for ``dtype``)."""
    t = DTYPES[dtype] or torch.float32
    a, b = torch.randn(n, n, device=device, dtype=t), torch.randn(n, n, device=device, dtype=t)
    reps = 4
    times = median_time(lambda: [a @ b for _ in range(reps)], warmup=1, repeats=repeats)
    return 2 * n ** 3 * reps / statistics.median(times)


def pretrain_step_flops(model: torch.nn.Module, imgs: torch.Tensor, mask_ratio: float = 0.75) -> int:
    """FLOPs of one forward + backward of an MAE model on ``imgs`` (``torch.utils.flop_counter``: matmuls,
    convolutions and SDPA; elementwise work is not counted, so this is the bound the step time is judged by)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        loss, _, _ = model(imgs, mask_ratio=mask_ratio)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


ASYMMETRIC_VARIANTS = (  # (label, mask_token_in_encoder, decoder_depth): paper Table 2's rows
    ("encoder w/ [M], decoder depth 8", True, 8),
    ("MAE, decoder depth 8", False, 8),
    ("MAE, decoder depth 1", False, 1),
)


def asymmetric_speedup(arch: str = "mae_vit_large_patch16", batch: int = 4, dtype: str = "fp32",
                       img_size: int = 224, mask_ratio: float = 0.75, warmup: int = 1, repeats: int = 5,
                       device: str = "cpu", variants=ASYMMETRIC_VARIANTS, fused_adamw: bool = True,
                       **model_kwargs) -> List[Dict]:
    """Paper Table 2 on this machine: training-step time of each variant and its FLOPs, as ratios to the first
    (the encoder that also processes mask tokens). ``flop_ratio`` is the speedup bound; ``efficiency`` =
    measured speedup / bound. One process, one model at a time."""
    rows = []
    for label, in_encoder, depth in variants:
        kw = dict(model_kwargs, mask_token_in_encoder=in_encoder, decoder_depth=depth)
        r = pretrain_step_throughput(arch, batch, dtype, img_size, mask_ratio=mask_ratio, warmup=warmup,
                                     repeats=repeats, device=device, fused_adamw=fused_adamw, count_flops=True, **kw)
        r.update(label=label, mask_token_in_encoder=in_encoder, decoder_depth=depth)
        rows.append(r)
    base = rows[0]
    for r in rows:
        r["speedup"] = base["step_s"] / r["step_s"]
        r["flop_ratio"] = base["flops"] / r["flops"]
        r["efficiency"] = r["speedup"] / r["flop_ratio"]
    return rows
