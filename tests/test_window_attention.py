"""Window attention, decomposed relative positions and position-table interpolation (numerics)."""
import torch

from mae_backbone.models import VisionTransformer
from mae_backbone.models.attention import Block, attention_layer, sdpa
from mae_backbone.models.pos_embed import resize_pos_embed
from mae_backbone.models.rel_pos import fold_decomposed_rel_pos, rel_pos_lookup
from mae_backbone.models.windows import window_partition, window_unpartition


def decomposed_rel_pos_bias(q, table_h, table_w, grid):
    """The explicit (N, N) bias of ViTDet's ``add_decomposed_rel_pos``: the reference the folded form must equal."""
    H, W = grid
    B, nh, _, C = q.shape
    r_q = q.reshape(B, nh, H, W, C)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rel_pos_lookup(H, H, table_h).to(q.dtype))
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rel_pos_lookup(W, W, table_w).to(q.dtype))
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(B, nh, H * W, H * W)


def folded_rel_pos_attention(q, k, v, table_h, table_w, grid):
    """What DecomposedRelPosAttention.attend computes from q, k, v."""
    scale = q.shape[-1] ** -0.5
    return sdpa(*fold_decomposed_rel_pos(q, k, v, table_h, table_w, grid, scale), scale=scale)[..., :q.shape[-1]]


def decomposed(grid):
    return attention_layer("decomposed", grid)


def test_window_padding_is_exercised():
    vit = VisionTransformer(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2, use_cls_token=False,
                            window_size=6, global_block_indexes=(1,))
    x = torch.randn(1, 16 * 16, 32).view(1, 16, 16, 32)[:, :14, :13]  # 14 x 13 grid, window 6 -> pad to 18 x 18
    win, padded = window_partition(x.contiguous(), 6)
    assert padded == (18, 18) and win.shape == (9, 36, 32)
    assert torch.equal(window_unpartition(win, 6, padded, (14, 13)), x)
    out = vit.forward_features(torch.randn(2, 3, 14 * 16, 13 * 16))
    assert out.shape == (2, 14 * 13, 32) and torch.isfinite(out).all()


def test_padded_windows_match_a_direct_reference():
    """5 x 7 grid, window 3: zero-pad the normalised tokens to 6 x 9 (as ViTDet), attend per window, crop."""
    torch.manual_seed(5)
    blk = Block(32, 2, window_size=3, attn_layer=decomposed((3, 3))).eval()
    with torch.no_grad():
        blk.attn.rel_pos_h.normal_()
        blk.attn.rel_pos_w.normal_()
    H, W = 5, 7
    x = torch.randn(2, H * W, 32)
    out = blk(x, grid=(H, W))
    y = torch.nn.functional.pad(blk.norm1(x).view(2, H, W, 32), (0, 0, 0, 2, 0, 1))  # -> 6 x 9
    ref = torch.empty_like(y)
    for i in range(0, 6, 3):
        for j in range(0, 9, 3):
            w = y[:, i:i + 3, j:j + 3].reshape(2, 9, 32)
            ref[:, i:i + 3, j:j + 3] = blk.attn(w, grid=(3, 3)).view(2, 3, 3, 32)
    ref = x + ref[:, :H, :W].reshape(2, H * W, 32)
    ref = ref + blk.mlp(blk.norm2(ref))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- numerics
def test_window_equal_to_grid_is_global_attention():
    torch.manual_seed(0)
    glob = Block(48, 3, window_size=0).eval()
    win = Block(48, 3, window_size=6).eval()
    win.load_state_dict(glob.state_dict())
    x = torch.randn(2, 36, 48)
    torch.testing.assert_close(win(x, grid=(6, 6)), glob(x, grid=(6, 6)), rtol=0, atol=1e-6)
    # the whole encoder: windows covering the grid == all-global
    a = VisionTransformer(img_size=96, patch_size=16, embed_dim=48, depth=3, num_heads=3, use_cls_token=False)
    b = VisionTransformer(img_size=96, patch_size=16, embed_dim=48, depth=3, num_heads=3, use_cls_token=False,
                          window_size=6, global_block_indexes=(1,))
    b.load_state_dict(a.state_dict())
    img = torch.randn(2, 3, 96, 96)
    torch.testing.assert_close(b.forward_features(img), a.forward_features(img), rtol=0, atol=1e-5)


def test_windows_attend_only_within_their_window():
    """Reference: run the global block's attention on each 2x3 window separately."""
    torch.manual_seed(1)
    blk = Block(32, 2, window_size=2).eval()
    H, W = 4, 6
    x = torch.randn(1, H * W, 32)
    out = blk(x, grid=(H, W))
    y = blk.norm1(x).view(1, H, W, 32)
    ref = torch.empty_like(y)
    for i in range(0, H, 2):
        for j in range(0, W, 2):
            w = y[:, i:i + 2, j:j + 2].reshape(1, 4, 32)
            ref[:, i:i + 2, j:j + 2] = blk.attn(w, grid=(2, 2)).view(1, 2, 2, 32)
    ref = x + ref.view(1, H * W, 32)
    ref = ref + blk.mlp(blk.norm2(ref))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_decomposed_rel_pos_matches_definition():
    torch.manual_seed(2)
    H, W, C = 3, 4, 8
    q = torch.randn(2, 2, H * W, C)
    Rh, Rw = torch.randn(2 * H - 1, C), torch.randn(2 * W - 1, C)
    bias = decomposed_rel_pos_bias(q, Rh, Rw, (H, W))
    ref = torch.zeros(2, 2, H * W, H * W)
    for i in range(H):
        for j in range(W):
            for k in range(H):
                for m in range(W):
                    qv = q[:, :, i * W + j]
                    ref[:, :, i * W + j, k * W + m] = qv @ Rh[i - k + H - 1] + qv @ Rw[j - m + W - 1]
    torch.testing.assert_close(bias, ref, rtol=1e-5, atol=1e-5)


def test_folded_rel_pos_attention_equals_explicit_bias():
    """The fused-kernel form (bias folded into q/k) == SDPA with the materialised bias, values and gradients."""
    torch.manual_seed(4)
    H, W, C = 5, 7, 16
    q, k, v = (torch.randn(2, 3, H * W, C, dtype=torch.float64, requires_grad=True) for _ in range(3))
    Rh = torch.randn(2 * 9 - 1, C, dtype=torch.float64, requires_grad=True)  # sized for another grid: interpolated
    Rw = torch.randn(2 * W - 1, C, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=decomposed_rel_pos_bias(q, Rh, Rw, (H, W)))
    out = folded_rel_pos_attention(q, k, v, Rh, Rw, (H, W))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    g_ref = torch.autograd.grad(ref.square().sum(), (q, k, v, Rh, Rw))
    g_out = torch.autograd.grad(out.square().sum(), (q, k, v, Rh, Rw))
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    # bf16 (autocast's dtype for the backbone): within bf16 rounding of the float64 result
    with torch.no_grad():
        low = folded_rel_pos_attention(*(t.detach().to(torch.bfloat16) for t in (q, k, v, Rh, Rw)), (H, W))
    rel = (low.double() - ref.detach()).norm() / ref.detach().norm()
    assert rel < 2e-2, rel


def test_zero_rel_pos_changes_nothing_and_nonzero_does():
    torch.manual_seed(3)
    plain = Block(32, 2).eval()
    rel = Block(32, 2, attn_layer=decomposed((5, 5))).eval()
    rel.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 25, 32)
    # the rel-pos path runs SDPA on wider (folded) q / k: equal up to float rounding
    torch.testing.assert_close(rel(x, grid=(5, 5)), plain(x, grid=(5, 5)), rtol=0, atol=1e-6)
    with torch.no_grad():
        rel.attn.rel_pos_h.normal_()
    assert not torch.allclose(rel(x, grid=(5, 5)), plain(x, grid=(5, 5)), atol=1e-3)
    # a table sized for another grid is interpolated, not rejected
    assert rel(torch.randn(1, 7 * 6, 32), grid=(7, 6)).shape == (1, 42, 32)


def test_pos_embed_interpolation():
    pe = torch.randn(1, 1 + 14 * 14, 32)
    assert resize_pos_embed(pe, (14, 14), (14, 14)) is pe
    bb = VisionTransformer(img_size=224, patch_size=16, embed_dim=32, depth=2, num_heads=2, learnable_pos_embed=True,
                           use_cls_token=False, window_size=14, rel_pos="decomposed", rel_pos_img_size=1024)
    assert bb.pos_embed_for((14, 14)) is bb.pos_embed  # same grid: the parameter itself
    big = bb.pos_embed_for((64, 64))
    assert big.shape == (1, 1 + 64 * 64, 32) and big.requires_grad  # learnable: interpolated with grad
    corners = big[0, 1:].view(64, 64, 32)[[0, 0, -1, -1], [0, -1, 0, -1]]
    src = bb.pos_embed[0, 1:].view(14, 14, 32)[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.allclose(corners, src, atol=0.35 * src.abs().max().item())  # bicubic keeps the corners close
