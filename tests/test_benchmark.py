"""Benchmark helpers compute what they claim (speed itself is never asserted)."""
import pytest
import torch

from benchmarks.asymmetric import ASYMMETRIC_VARIANTS, asymmetric_speedup
from benchmarks.measure import interleaved_times, tensor_memory
from benchmarks.pretrain import pretrain_step_flops
from mae_backbone.models import create_model

TINY = dict(img_size=64, embed_dim=64, depth=4, num_heads=2, decoder_embed_dim=32, decoder_num_heads=2)


def test_step_flops_are_the_model_flops_of_the_tokens_seen():
    """FLOPs of fwd + bwd, counted on the meta device: the mask-token encoder (all 16 patches + cls) costs
    exactly MAE's (4 visible + cls) plus, per extra token, 6 FLOPs per encoder and decoder-embedding weight
    (2 forward + 4 backward per multiply-add) and the attention's extra (query, key) pairs: 4 * D FLOPs per pair
    forward (QK^T and AV), 3x that with backward."""
    B, D, depth = 2, TINY["embed_dim"], TINY["depth"]
    f_mae = pretrain_step_flops("mae_vit_base_patch16", B, **TINY, decoder_depth=1)
    f_bert = pretrain_step_flops("mae_vit_base_patch16", B, **TINY, decoder_depth=1, mask_token_in_encoder=True)
    blk = sum(p.numel() for n, p in create_model("mae_vit_base_patch16", **TINY).blocks.named_parameters()
              if p.ndim == 2)  # encoder matmul weights
    linear = 6 * B * (17 - 5) * blk
    attention = 3 * 4 * D * B * (17 ** 2 - 5 ** 2) * depth
    decoder_embed = 6 * B * (17 - 5) * D * TINY["decoder_embed_dim"]  # MAE embeds only the visible tokens
    assert f_bert - f_mae == linear + attention + decoder_embed
    assert f_mae == pretrain_step_flops("mae_vit_base_patch16", B, **TINY, decoder_depth=1)  # no compute, no noise


def test_tensor_memory_counts_what_the_step_allocates_and_holds():
    """(64 x 256) @ (256 x 1024) then ReLU: the matmul output dies once ReLU has run (mm saves its inputs, which
    existed before and do not count), ReLU keeps its 256 KiB output for backward; the backward then allocates
    the gradients of x and w on top."""
    x = torch.randn(64, 256, requires_grad=True)
    w = torch.randn(256, 1024, requires_grad=True)
    mem = tensor_memory(lambda: (x @ w).relu().sum())
    assert mem["activation_mib"] == pytest.approx(0.25, abs=1e-4)
    assert mem["peak_mib"] >= mem["activation_mib"] + 1.0 - 1e-4  # w's 1 MiB gradient at least
    assert x.grad is not None and w.grad is not None


def test_tensor_memory_sees_activation_checkpointing():
    torch.manual_seed(0)
    plain = create_model("vit_tiny_patch16", img_size=64, depth=4)
    ckpt = create_model("vit_tiny_patch16", img_size=64, depth=4, grad_checkpointing=True)
    x = torch.randn(2, 3, 64, 64)
    a = tensor_memory(lambda: plain(x).sum())
    b = tensor_memory(lambda: ckpt(x).sum())
    assert b["activation_mib"] < a["activation_mib"] / 2


def test_interleaved_times_rotate_the_order():
    calls = []
    steps = {n: (lambda n=n: calls.append(n)) for n in "abc"}
    times = interleaved_times(steps, warmup=1, repeats=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert sorted(times) == list("abc") and all(len(t) == 3 and t == sorted(t) for t in times.values())


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
    from benchmarks.pretrain import hf_twin, pretrain_step_throughput
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
        pretrain_step_throughput("mae_vit_base_patch16", impl="timm", **TINY)


def test_compare_pretrain_steps_rows():
    pytest.importorskip("transformers")
    from benchmarks.pretrain import compare_pretrain_steps
    rows = compare_pretrain_steps(["ours", "hf"], "mae_vit_base_patch16", batch=2, img_size=64, warmup=0, repeats=2,
                                  peak=1e12)
    ours, hf = rows
    assert ours["flops"] == hf["flops"] == pretrain_step_flops("mae_vit_base_patch16", 2, 64)
    assert ours["ours_over_this"] == 1.0
    assert hf["ours_over_this"] == pytest.approx(ours["img_per_s"] / hf["img_per_s"])
    assert ours["utilisation"] == pytest.approx(ours["flops"] / ours["step_s"] / 1e12)


def test_mmpretrain_peer_has_our_shape():
    """mmpretrain's MAE built to our shape has our parameter count and trains through the step benchmark. The
    peer lives outside the project environment (`make bench` installs it into .bench-peers/), so it is checked
    in a child process: its sys.path entry and mmpretrain's default scope stay out of the other tests."""
    import os.path as osp
    import subprocess
    import sys

    from benchmarks.peers import PEERS_DIR
    if not osp.isdir(osp.join(PEERS_DIR, "mmpretrain")):
        pytest.skip("mmpretrain peer not installed (make bench)")
    code = f"""
from benchmarks.peers import enable_mmpretrain_peer, mmpretrain_twin
assert enable_mmpretrain_peer()
from benchmarks.pretrain import pretrain_step_throughput
from mae_backbone.models import create_model
TINY = {TINY!r}
ours = create_model("mae_vit_base_patch16", **TINY, decoder_depth=2)
peer = mmpretrain_twin(ours)
assert type(peer).__name__ == "MAE", type(peer)
assert sum(p.numel() for p in peer.parameters()) == sum(p.numel() for p in ours.parameters())
r = pretrain_step_throughput("mae_vit_base_patch16", batch=2, warmup=0, repeats=1, impl="mmpretrain", **TINY,
                             decoder_depth=2)
assert r["img_per_s"] > 0
print("PEER OK")
"""
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "PEER OK" in proc.stdout, proc.stderr[-3000:]
