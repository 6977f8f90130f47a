"""Benchmark helpers compute what they claim (speed itself is never asserted)."""
import pytest
import torch

from mae_backbone.benchmark import ASYMMETRIC_VARIANTS, asymmetric_speedup, pretrain_step_flops
from mae_backbone.models import create_model

TINY = dict(img_size=64, embed_dim=64, depth=4, num_heads=2, decoder_embed_dim=32, decoder_num_heads=2)


def test_step_flops_follow_the_token_count():
    """FLOPs of fwd + bwd: the encoder's linear layers scale with the tokens it sees, so the mask-token encoder
    (all 16 patches) costs more than MAE's (4 visible); the count matches the linear layers' 6 * tokens * params
    (2 forward + 4 backward per multiply-add) within the attention / patch-embedding share."""
    torch.manual_seed(0)
    imgs = torch.randn(2, 3, 64, 64)
    mae = create_model("mae_vit_base_patch16", **TINY, decoder_depth=1)
    bert = create_model("mae_vit_base_patch16", **TINY, decoder_depth=1, mask_token_in_encoder=True)
    f_mae, f_bert = pretrain_step_flops(mae, imgs), pretrain_step_flops(bert, imgs)
    assert f_bert > f_mae > 0
    blk = sum(p.numel() for n, p in mae.blocks.named_parameters() if p.ndim == 2)  # encoder matmul weights
    extra = 6 * 2 * (16 + 1 - (4 + 1)) * blk  # 12 more tokens per image through the encoder blocks
    assert f_bert - f_mae == pytest.approx(extra, rel=0.15)
    assert all(p.grad is None for p in mae.parameters())  # the count leaves no gradients behind


def test_asymmetric_rows_are_ratios_to_the_mask_token_encoder():
    rows = asymmetric_speedup("mae_vit_base_patch16", batch=2, warmup=0, repeats=1, **TINY)
    assert [r["label"] for r in rows] == [v[0] for v in ASYMMETRIC_VARIANTS]
    base, dec8, dec1 = rows
    assert base["mask_token_in_encoder"] and not dec8["mask_token_in_encoder"] and dec1["decoder_depth"] == 1
    assert base["speedup"] == base["flop_ratio"] == 1.0
    assert dec1["flop_ratio"] > dec8["flop_ratio"] > 1.0
    for r in rows:
        assert r["efficiency"] == pytest.approx(r["speedup"] / r["flop_ratio"])


def test_hf_peer_has_our_shape_and_times():
    """The HF twin has exactly our trainable parameter count (same encoder / decoder shapes, SDPA attention),
    and the step benchmark runs it like ours."""
    pytest.importorskip("transformers")
    from mae_backbone.benchmark import hf_twin, pretrain_step_throughput
    ours = create_model("mae_vit_base_patch16", **TINY, decoder_depth=2)
    hf = hf_twin(ours)
    assert hf.config._attn_implementation == "sdpa" and hf.config.norm_pix_loss == ours.norm_pix_loss
    def n(m):
        return sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert n(hf) == n(ours)
    r = pretrain_step_throughput("mae_vit_base_patch16", batch=2, warmup=0, repeats=1, impl="hf", **TINY,
                                 decoder_depth=2)
    assert r["impl"] == "hf" and r["img_per_s"] > 0
    with pytest.raises(ValueError, match="impl"):
        pretrain_step_throughput("mae_vit_base_patch16", impl="mmpretrain", **TINY)
