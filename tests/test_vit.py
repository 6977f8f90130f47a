import pytest
import timm
import torch

from mae_backbone.models import create_model, get_2d_sincos_pos_embed, list_models, vit_small_patch16, vit_tiny_patch16


@pytest.fixture(scope="module")
def timm_pair():
    torch.manual_seed(0)
    ref = timm.create_model("vit_small_patch16_224", pretrained=False, img_size=64, num_classes=0).eval()
    for p in ref.parameters():  # non-trivial weights everywhere (incl. norms and the position table)
        p.data.normal_(0, 0.05)
    ours = vit_small_patch16(img_size=64).eval()
    from mae_backbone.checkpoint import load_checkpoint
    report = load_checkpoint(ours, ref.state_dict(), source="timm")
    assert report.missing == [] and report.unexpected == []
    return ref, ours


def test_features_match_timm(timm_pair):
    ref, ours = timm_pair
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours.forward_features(x), ref.forward_features(x)
    assert a.shape == (2, 1 + 16, 384)
    assert (a - b).abs().max() < 1e-5


def test_intermediates_match_timm_and_are_maps(timm_pair):
    ref, ours = timm_pair
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours_maps = ours.forward_intermediates(x, [2, 5, -1])
        ref_maps = ref.forward_intermediates(x, indices=[2, 5, 11], intermediates_only=True)
    for a, b in zip(ours_maps, ref_maps):
        assert a.shape == (1, 384, 4, 4)
        assert (a - b).abs().max() < 1e-5


def test_non_square_input_uses_fresh_sincos_table():
    m = vit_tiny_patch16(img_size=32).eval()
    x = torch.randn(1, 3, 48, 80)  # 3 x 5 grid
    pos = m.pos_embed_for((3, 5))
    assert torch.equal(pos[0], get_2d_sincos_pos_embed(192, (3, 5), cls_token=True))
    assert m.forward_intermediates(x, 1)[0].shape == (1, 192, 3, 5)
    assert m.forward_features(x).shape == (1, 16, 192)


def test_learnable_table_is_interpolated_with_gradient():
    m = vit_tiny_patch16(img_size=32, learnable_pos_embed=True)
    m.forward_features(torch.randn(1, 3, 48, 48)).sum().backward()
    assert m.pos_embed.grad is not None and m.pos_embed.grad.abs().sum() > 0


def test_ids_keep_selects_tokens():
    m = vit_tiny_patch16(img_size=32, depth=2).eval()
    x = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[0, 3], [1, 2]])
    assert m.forward_features(x, ids_keep=ids).shape == (2, 3, 192)


def test_grad_checkpointing_same_outputs_and_grads():
    torch.manual_seed(0)
    a = vit_tiny_patch16(img_size=32, depth=3)
    b = vit_tiny_patch16(img_size=32, depth=3, grad_checkpointing=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    ya, yb = a(x), b(x)
    ya.square().sum().backward()
    yb.square().sum().backward()
    assert torch.equal(ya, yb)
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        if pa.grad is not None:
            assert torch.allclose(pa.grad, pb.grad, atol=1e-6), n


def test_every_trainable_parameter_gets_gradient():
    m = vit_tiny_patch16(img_size=32, depth=2, learnable_pos_embed=True)
    m(torch.randn(2, 3, 32, 32)).sum().backward()
    no_grad = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert no_grad == []


@pytest.mark.parametrize("shape,msg", [((1, 3, 30, 32), "not divisible by the patch size 16"),
                                       ((1, 1, 32, 32), "expected 3 input channels, got 1"),
                                       ((3, 32, 32), r"\(B, C, H, W\)")])
def test_bad_input_messages(shape, msg):
    with pytest.raises(ValueError, match=msg):
        vit_tiny_patch16(img_size=32)(torch.randn(*shape))


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match="valid presets: .*vit_base_patch16"):
        create_model("vit_gigantic_patch3")


def test_one_architecture_table_with_its_aliases():
    """Every name of a shape resolves to the one table entry; the presets are plain functions built from it; the
    shape behind weights (patch, width, depth) finds its preset; a wrong name lists the valid ones."""
    import inspect

    from mae_backbone.models import ARCHS, arch_of_shape, create_classifier, factory, resolve_arch
    for alias in ("b", "base", "base_patch16", "vit_base_patch16", "mae_vit_base_patch16"):
        assert resolve_arch(alias) is ARCHS["base_patch16"]
    assert resolve_arch("h").patch_size == 14 and resolve_arch("large").depth == 24
    for name in list_models():
        fn = getattr(factory, name)
        assert inspect.isfunction(fn) and fn.__name__ == name and fn.__module__ == factory.__name__
    assert arch_of_shape(16, 1024, 24) is ARCHS["large_patch16"] and arch_of_shape(16, 1024, 12) is None
    assert create_classifier("s", 10).blocks[0].attn.num_heads == 6
    with pytest.raises(ValueError, match="unknown architecture 'xl'; valid: .*base.*vit_base_patch16"):
        resolve_arch("xl")


def test_presets_have_official_shapes():
    for name, (p, d, n, h) in {"vit_base_patch16": (16, 768, 12, 12), "vit_large_patch16": (16, 1024, 24, 16),
                               "vit_huge_patch14": (14, 1280, 32, 16)}.items():
        with torch.device("meta"):
            m = create_model(name)
        assert (m.patch_size, m.embed_dim, m.depth, m.num_heads) == (p, d, n, h)


def test_layer_id_and_no_weight_decay():
    m = vit_tiny_patch16(img_size=32, depth=4)
    assert m.layer_id("cls_token") == 0 and m.layer_id("pos_embed") == 0
    assert m.layer_id("patch_embed.proj.weight") == 0
    assert m.layer_id("blocks.0.attn.qkv.weight") == 1 and m.layer_id("blocks.3.mlp.fc2.bias") == 4
    assert m.layer_id("norm.weight") == 5
    assert {"cls_token", "pos_embed"} <= m.no_weight_decay()


def test_freeze_lower_blocks():
    m = vit_tiny_patch16(img_size=32, depth=4, drop_path_rate=0.5)
    m.freeze(2)
    trainable = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks") else "")
                 for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {"blocks.2", "blocks.3", "norm"}
    m.train()
    assert not m.blocks[1].training and not m.patch_embed.training and m.blocks[2].training
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        m.freeze(5)
    m2 = vit_tiny_patch16(img_size=32, depth=4)
    m2.freeze(0)
    assert all(p.requires_grad for n, p in m2.named_parameters() if n != "pos_embed")


def test_learned_table_still_interpolated_after_freeze():
    m = vit_tiny_patch16(img_size=32, depth=2, learnable_pos_embed=True)
    m.pos_embed.data.normal_()
    m.freeze(1)
    from mae_backbone.models.pos_embed import resize_pos_embed
    assert torch.equal(m.pos_embed_for((3, 3)), resize_pos_embed(m.pos_embed, (3, 3), (2, 2)))


def test_freeze_can_be_undone():
    m = vit_tiny_patch16(img_size=32, depth=4)
    m.freeze(3)
    m.freeze(1)
    assert not any(p.requires_grad for p in m.blocks[0].parameters())
    assert all(p.requires_grad for p in m.blocks[1].parameters())
    m.freeze(0)
    assert all(p.requires_grad for n, p in m.named_parameters() if n != "pos_embed")
    assert not m.pos_embed.requires_grad  # fixed table stays fixed
    m.train()
    assert m.blocks[0].training and m.patch_embed.training


def test_foreign_fixed_table_is_interpolated_not_replaced():
    """mmpretrain's sin-cos table is transposed (first half encodes the row): keep it, interpolate it."""
    from mae_backbone.models.pos_embed import resize_pos_embed
    m = vit_tiny_patch16(img_size=64)  # 4 x 4
    official = get_2d_sincos_pos_embed(192, (4, 4), cls_token=True)
    transposed = official.clone()
    transposed[1:] = official[1:].reshape(4, 4, 192).transpose(0, 1).reshape(16, 192)
    assert torch.equal(m.pos_embed_for((6, 6))[0], get_2d_sincos_pos_embed(192, (6, 6), cls_token=True))
    m.load_state_dict({**m.state_dict(), "pos_embed": transposed[None]})
    assert torch.equal(m.pos_embed_for((6, 6)), resize_pos_embed(m.pos_embed.detach(), (6, 6), (4, 4)))
    m.load_state_dict({**m.state_dict(), "pos_embed": official[None]})  # official again: rebuilt exactly
    assert torch.equal(m.pos_embed_for((6, 6))[0], get_2d_sincos_pos_embed(192, (6, 6), cls_token=True))
