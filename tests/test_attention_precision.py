"""CPU bf16 autocast runs SDPA in float32: same values as float32 attention of the same
(bf16-rounded) inputs, bf16 out, gradients to q / k / v, and a block's bf16 output close to its fp32 output."""
import torch
import torch.nn.functional as F

from mae_backbone.models.attention import Block, sdpa


def test_cpu_bf16_attention_is_float32_attention_of_the_rounded_inputs():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 50, 32).bfloat16().requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sdpa(q, k, v)
    assert out.dtype == torch.bfloat16
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    torch.testing.assert_close(out.float(), ref.bfloat16().float(), rtol=0, atol=0)  # one rounding, at the end
    out.float().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == torch.bfloat16 and t.grad.abs().sum() > 0 for t in (q, k, v))


def test_block_under_bf16_autocast_stays_close_to_fp32():
    torch.manual_seed(0)
    blk = Block(64, 4).eval()
    x = torch.randn(2, 50, 64)
    with torch.no_grad():
        ref = blk(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = blk(x)
    # bf16 has 8 significant bits: the linear layers' rounding dominates; attention adds none of its own
    torch.testing.assert_close(low.float(), ref, rtol=0.05, atol=0.05)
    assert (low.float() - ref).abs().mean() < 0.01
