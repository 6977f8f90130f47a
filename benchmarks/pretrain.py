"""MAE pretraining step (forward, backward, optimizer): ours, ours compiled, HF ViTMAE and mmpretrain's MAE
of the same shape, timed side by side."""
from __future__ import annotations

from typing import Callable, Dict, List

import torch

from mae_backbone.models import create_model
from mae_backbone.precision import autocast

from .measure import count_flops, interleaved_times, median_time, ran_precision, time_stats

IMPLS = ("ours", "ours-compiled", "hf", "mmpretrain")  # implementations the step benchmark can time


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


def build_pretrain_step(arch: str = "mae_vit_base_patch16", batch: int = 8, dtype: str = "fp32",
                        img_size: int = 224, mask_ratio: float = 0.75, device: str = "cpu", seed: int = 0,
                        fused_adamw: bool = True, impl: str = "ours", **model_kwargs) -> Callable[[], None]:
    """One MAE training step (forward, backward, AdamW) on fixed random images, as a closure to time.

    ``impl``: ``ours``, ``ours-compiled`` (``torch.compile``, :func:`mae_backbone.compile.compile_module`),
    ``hf`` (HF ``ViTMAEForPreTraining`` of the same shape, :func:`hf_twin`) or ``mmpretrain``
    (mmpretrain's MAE of the same shape, ``benchmarks.peers.mmpretrain_twin``). ``fused_adamw``: torch's fused
    AdamW kernel (our optimizer constructor's default) for every side; False: torch's default implementation for
    the device (a per-tensor loop on CPU). ``dtype`` ``bf16``: the step under bf16 autocast."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    torch.manual_seed(seed)
    model = create_model(arch, img_size=img_size, norm_pix_loss=True, **model_kwargs)
    chans = model.in_chans  # the peers are built with our channel count
    if impl == "ours-compiled":
        from .compile import compile_module
        compile_module(model, fallback=False)  # a benchmark must not silently time eager
    elif impl != "ours":
        if model_kwargs.get("mask_token_in_encoder"):
            raise ValueError(f"the {impl} peer has no mask-token encoder")
        if impl == "hf":
            model = hf_twin(model, mask_ratio)
        else:
            from benchmarks.peers import mmpretrain_twin  # the peer lives in benchmarks/peers.py
            model = mmpretrain_twin(model, mask_ratio)
    model = model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95),
                            weight_decay=0.05, **({"fused": True} if fused_adamw else {}))
    imgs = torch.randn(batch, chans, img_size, img_size, device=device)

    def step():
        with autocast(dtype, device):
            if impl == "hf":
                loss = model(pixel_values=imgs).loss
            elif impl == "mmpretrain":
                loss = model.loss(imgs, None)["loss"]
            else:
                loss, _, _ = model(imgs, mask_ratio=mask_ratio)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step.model = model
    return step


def pretrain_step_throughput(arch: str = "mae_vit_base_patch16", batch: int = 8, dtype: str = "fp32",
                             img_size: int = 224, mask_ratio: float = 0.75, warmup: int = 2, repeats: int = 5,
                             device: str = "cpu", seed: int = 0, fused_adamw: bool = True, impl: str = "ours",
                             flops: bool = False, **model_kwargs) -> Dict:
    """Images/s of one MAE training step (:func:`build_pretrain_step`), median of ``repeats`` after ``warmup``.

    ``flops`` adds the step's model FLOPs (:func:`pretrain_step_flops`: the same shape for every implementation)
    and the achieved ``tflop_per_s``."""
    step = build_pretrain_step(arch, batch, dtype, img_size, mask_ratio, device, seed, fused_adamw, impl,
                               **model_kwargs)
    times = median_time(step, warmup, repeats)
    out = _throughput_row(times, arch=arch, impl=impl, batch=batch, dtype=ran_precision(dtype, device),
                          img_size=img_size, mask_ratio=mask_ratio, fused_adamw=fused_adamw)
    if flops:
        out["flops"] = pretrain_step_flops(arch, batch, img_size, mask_ratio, **model_kwargs)
        out["tflop_per_s"] = out["flops"] / out["step_s"] / 1e12
    return out


def _throughput_row(times: List[float], **fields) -> Dict:
    row = dict(fields, **time_stats(times))
    row["img_per_s"] = fields["batch"] / row["step_s"]
    return row


def compare_pretrain_steps(impls=IMPLS, arch: str = "mae_vit_base_patch16", batch: int = 8, dtype: str = "fp32",
                           img_size: int = 224, mask_ratio: float = 0.75, warmup: int = 1, repeats: int = 5,
                           device: str = "cpu", fused_adamw: bool = True, peak: float = None) -> List[Dict]:
    """Ours and the peers' MAE training steps of one shape, built up front and timed interleaved
    (:func:`interleaved_times`). Each row: images/s, ``ours_over_this`` (ours' images/s over this row's), model
    FLOPs and achieved TFLOP/s, and ``utilisation`` = TFLOP/s / ``peak``
    (FLOP/s, e.g. :func:`matmul_peak` measured in the same run) when given."""
    steps = {i: build_pretrain_step(arch, batch, dtype, img_size, mask_ratio, device, fused_adamw=fused_adamw, impl=i)
             for i in impls}
    flops = pretrain_step_flops(arch, batch, img_size, mask_ratio)
    times = interleaved_times(steps, warmup, repeats)
    rows = [_throughput_row(times[i], arch=arch, impl=i, batch=batch, dtype=ran_precision(dtype, device),
                            img_size=img_size, mask_ratio=mask_ratio, fused_adamw=fused_adamw, flops=flops)
            for i in impls]
    ours = next((r for r in rows if r["impl"] == "ours"), None)
    for r in rows:
        r["tflop_per_s"] = flops / r["step_s"] / 1e12
        if peak:
            r["utilisation"] = flops / r["step_s"] / peak
        if ours is not None:
            r["ours_over_this"] = ours["img_per_s"] / r["img_per_s"]
    return rows


def pretrain_step_flops(arch: str = "mae_vit_base_patch16", batch: int = 8, img_size: int = 224,
                        mask_ratio: float = 0.75, **model_kwargs) -> int:
    """Model FLOPs of one MAE forward + backward for ``batch`` images, counted on the meta device
    (:func:`count_flops`); the same shape as :func:`pretrain_step_throughput` times, for any implementation."""
    with torch.device("meta"):
        model = create_model(arch, img_size=img_size, norm_pix_loss=True, **model_kwargs).train()
        imgs = torch.empty(batch, model.in_chans, img_size, img_size)
    return count_flops(lambda: model(imgs, mask_ratio=mask_ratio)[0].backward())
