"""BEiT-style relative position bias (the MAE paper's ADE20K transfer)."""
import torch

from mae_backbone.models import VisionTransformer
from mae_backbone.models.attention import Block, attention_layer
from mae_backbone.models.rel_pos import RelativePositionBias


def test_index_matches_beit_definition():
    """Reference: BEiT's relative_position_index, written out with loops (row-major tokens, cls first)."""
    h, w = 3, 4
    idx = RelativePositionBias.index((h, w), cls_token=True)
    n = (2 * h - 1) * (2 * w - 1)
    assert idx.shape == (1 + h * w, 1 + h * w)
    for a in range(h * w):
        for b in range(h * w):
            (i, j), (k, m) = divmod(a, w), divmod(b, w)
            assert idx[1 + a, 1 + b] == (i - k + h - 1) * (2 * w - 1) + (j - m + w - 1)
    assert (idx[0, 1:] == n).all() and (idx[1:, 0] == n + 1).all() and idx[0, 0] == n + 2
    assert torch.equal(RelativePositionBias.index((h, w), cls_token=False), idx[1:, 1:])


def test_bias_values_follow_the_table():
    torch.manual_seed(0)
    rpb = RelativePositionBias((3, 4), num_heads=2)
    with torch.no_grad():
        rpb.table.normal_()
    bias = rpb((3, 4), cls_token=True)
    assert bias.shape == (1, 2, 13, 13)
    # token (0, 0) attending token (2, 3): offset (-2, -3) -> row 0 * 7 + 0 = 0
    assert torch.equal(bias[0, :, 1, 1 + 2 * 4 + 3], rpb.table[0])
    assert torch.equal(bias[0, :, 0, 5], rpb.table[-3]) and torch.equal(bias[0, :, 0, 0], rpb.table[-1])
    # a smaller grid (a border crop at the same patch scale) looks its offsets up in the same table
    small = rpb((2, 3), cls_token=False)
    assert small.shape == (1, 2, 6, 6)
    # token (0, 0) -> (1, 2): offset (-1, -2) -> row (-1 + 2) * 7 + (-2 + 3) = 8; (1, 2) -> (0, 0): (1, 2) -> 3 * 7 + 5
    assert torch.equal(small[0, :, 0, 5], rpb.table[8]) and torch.equal(small[0, :, 5, 0], rpb.table[26])
    assert torch.equal(small[0, :, 4, 4], rpb.table[2 * 7 + 3])  # offset (0, 0)
    small_cls = rpb((2, 3), cls_token=True)  # the cls entries stay the table's last 3 rows
    assert torch.equal(small_cls[0, :, 1:, 1:], small[0]) and torch.equal(small_cls[0, :, 0, 3], rpb.table[-3])
    assert torch.equal(small_cls[0, :, 3, 0], rpb.table[-2]) and torch.equal(small_cls[0, :, 0, 0], rpb.table[-1])
    # a larger grid: offsets beyond the table's +-2 rows / +-3 columns take the outermost value
    big = rpb((5, 6), cls_token=True)
    assert big.shape == (1, 2, 31, 31) and torch.equal(big[0, :, 0, 0], rpb.table[-1])
    assert torch.equal(big[0, :, 1, 1 + 4 * 6 + 5], rpb.table[0])  # offset (-4, -5) -> (-2, -3)
    assert torch.equal(big[0, :, 1, 1 + 4 * 6], rpb.table[3])  # offset (-4, 0) -> (-2, 0)
    assert torch.equal(big[0, :, 1 + 6 + 1, 1 + 6 + 2], rpb.table[2 * 7 + 2])  # (1,1) -> (1,2): (0, -1)


def test_zero_initialised_bias_changes_nothing():
    torch.manual_seed(1)
    plain = Block(48, 3).eval()
    biased = Block(48, 3, attn_layer=attention_layer("bias", (4, 5))).eval()
    missing, unexpected = biased.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["attn.rel_pos_bias.table"] and not unexpected
    x = torch.randn(2, 1 + 20, 48)
    # SDPA takes the masked path with a bias: equal up to float rounding
    torch.testing.assert_close(biased(x, grid=(4, 5)), plain(x, grid=(4, 5)), rtol=0, atol=1e-6)
    with torch.no_grad():
        biased.attn.rel_pos_bias.table.normal_()
    assert not torch.allclose(biased(x, grid=(4, 5)), plain(x, grid=(4, 5)), atol=1e-3)


def test_encoder_with_bias_equals_plain_encoder_at_init_and_exempts_tables_from_decay():
    a = VisionTransformer(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2)
    b = VisionTransformer(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2, rel_pos="bias",
                          rel_pos_img_size=96)
    missing, _ = b.load_state_dict(a.state_dict(), strict=False)
    assert sorted(missing) == ["blocks.0.attn.rel_pos_bias.table", "blocks.1.attn.rel_pos_bias.table"]
    assert b.blocks[0].attn.rel_pos_bias.table.shape == ((2 * 6 - 1) ** 2 + 3, 2)
    x = torch.randn(2, 3, 96, 128)  # a grid (6 x 8) other than the table's
    torch.testing.assert_close(b.forward_features(x), a.forward_features(x), rtol=0, atol=1e-5)
    assert "blocks.1.attn.rel_pos_bias.table" in b.no_weight_decay()


def test_layer_scale_starts_as_the_plain_block_and_trains():
    torch.manual_seed(2)
    plain = Block(32, 2).eval()
    scaled = Block(32, 2, layer_scale_init=1.0).eval()
    missing, _ = scaled.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["ls1.gamma", "ls2.gamma"]
    x = torch.randn(2, 9, 32)
    assert torch.equal(scaled(x), plain(x))
    with torch.no_grad():
        scaled.ls2.gamma.fill_(0.5)
    assert not torch.allclose(scaled(x), plain(x))


def test_mmseg_argument_names_are_understood_or_refused():
    import pytest
    pytest.importorskip("mmseg")
    from downstream import MAEViT
    bb = MAEViT(embed_dims=64, num_layers=2, num_heads=2, in_channels=3, init_values=1.0, out_indices=[1],
                norm_cfg=dict(type="LN", eps=1e-6), act_cfg=dict(type="GELU"), norm_eval=False, attn_drop_rate=0.0)
    assert bb.embed_dim == 64 and bb.depth == 2 and bb.blocks[1].ls1.gamma.shape == (64,)
    assert r"^blocks\.\d+\.ls[12]\.gamma$" in bb.expected_new_keys()
    with pytest.raises(ValueError, match="LayerNorm"):
        MAEViT(embed_dims=64, num_layers=2, num_heads=2, out_indices=[1], norm_cfg=dict(type="BN"))
    with pytest.raises(ValueError, match="not both"):
        MAEViT(embed_dims=64, embed_dim=64, num_layers=2, num_heads=2, out_indices=[1])
    with pytest.raises(ValueError, match="not both"):
        MAEViT(embed_dims=64, num_layers=2, num_heads=2, out_indices=[1], pretrained="a.pth",
               init_cfg=dict(type="Pretrained", checkpoint="b.pth"))
    assert MAEViT(embed_dims=64, num_layers=2, num_heads=2, out_indices=[1], pretrained="a.pth").init_cfg == dict(
        type="Pretrained", checkpoint="a.pth")


def test_index_cache_survives_inference_mode_and_is_not_shared_with_callers():
    """A first lookup under inference_mode must not cache a tensor a later training step cannot save for
    backward; the public index() returns a copy, so editing it changes nothing."""
    rpb = RelativePositionBias((7, 5), num_heads=2)  # a geometry no other test uses
    with torch.inference_mode():
        rpb((7, 5), cls_token=True)
    bias = rpb((7, 5), cls_token=True)
    (bias * torch.randn_like(bias)).sum().backward()
    assert rpb.table.grad is not None and rpb.table.grad.abs().sum() > 0
    idx = RelativePositionBias.index((7, 5), cls_token=True)
    idx.zero_()
    assert not torch.equal(RelativePositionBias.index((7, 5), cls_token=True), idx)


def test_mmseg_argument_meanings():
    """mmseg's BEiT / MAE backbone arguments with their mmseg meaning: 1-tuple sizes, an int out_indices, qv_bias,
    num_fcs, norm_eval (BatchNorm statistics frozen), patch_norm (LayerNorm after the patch embedding)."""
    import pytest
    pytest.importorskip("mmseg")
    from downstream import MAEViT
    small = dict(embed_dims=32, num_layers=2, num_heads=2)
    bb = MAEViT(img_size=(64,), out_indices=-1, qv_bias=True, num_fcs=2, **small)
    assert bb.grid == (4, 4) and bb.out_indices == (1,) and bb.blocks[0].attn.qkv.bias is not None
    with pytest.raises(ValueError, match="num_fcs=3"):
        MAEViT(num_fcs=3, out_indices=[1], **small)
    with pytest.raises(ValueError, match="1-tuple or a 2-tuple"):
        MAEViT(img_size=(64, 64, 3), out_indices=[1], **small)

    torch.manual_seed(0)
    frozen = MAEViT(img_size=64, out_indices=[0, 1], pyramid=dict(rescales=(4, 1), norm="BN"), norm_eval=True, **small)
    frozen.train()
    bns = [m for m in frozen.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns) and frozen.blocks[0].training
    before = [m.running_mean.clone() for m in bns]
    frozen(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))  # statistics stay frozen
    free = MAEViT(img_size=64, out_indices=[0, 1], pyramid=dict(rescales=(4, 1), norm="BN"), **small).train()
    assert all(m.training for m in free.modules() if isinstance(m, torch.nn.BatchNorm2d))

    plain = MAEViT(img_size=64, out_indices=[1], **small).eval()
    normed = MAEViT(img_size=64, out_indices=[1], patch_norm=True, **small).eval()
    missing, unexpected = normed.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["patch_embed.norm.bias", "patch_embed.norm.weight"] and not unexpected
    assert r"^patch_embed\.norm\." in normed.expected_new_keys() and normed.layer_id("patch_embed.norm.weight") == 0
    x = torch.randn(1, 3, 64, 64)
    tokens = normed.patch_embed(x)
    assert torch.allclose(tokens.mean(-1), torch.zeros(1, 16), atol=1e-5)  # normalised per token
    assert not torch.allclose(normed(x)[0], plain(x)[0])
