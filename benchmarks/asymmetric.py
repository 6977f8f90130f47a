"""The asymmetric design (paper Table 2): MAE's step against an encoder that also processes the mask tokens."""
from __future__ import annotations

from typing import Dict, List

from .pretrain import pretrain_step_throughput

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
                                     repeats=repeats, device=device, fused_adamw=fused_adamw, flops=True, **kw)
        r.update(label=label, mask_token_in_encoder=in_encoder, decoder_depth=depth)
        rows.append(r)
    base = rows[0]
    for r in rows:
        r["speedup"] = base["step_s"] / r["step_s"]
        r["flop_ratio"] = base["flops"] / r["flops"]
        r["efficiency"] = r["speedup"] / r["flop_ratio"]
    return rows
