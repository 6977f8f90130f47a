"""One contract for every way the encoder's blocks are configured (plain, windowed, relative positions of either
kind, layer scale, activation checkpointing, masked encoding, the MAE decoder's blocks):

- every trainable parameter gets a finite gradient;
- the state dict round-trips strictly into a fresh model, which then computes the same output;
- ``forward_intermediates`` gives (B, D, H/p, W/p) maps (masked encoding: (B, 1 + kept, D) tokens);
- an addition that starts at zero (relative tables, bias tables, layer scale 1.0) computes, at initialisation,
  exactly what the model without it computes from the same weights.

Held fixed before the attention code is reorganised, so that the reorganisation keeps all of it.
"""
import pytest
import torch

from mae_backbone.models import VisionTransformer
from mae_backbone.models.mae import MaskedAutoencoder

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2)
PATCH_ONLY = dict(use_cls_token=False)

# name -> (encoder kwargs, the kwargs of the same model without its zero-initialised additions or None)
VARIANTS = {
    "plain": (dict(), None),
    "window": (dict(PATCH_ONLY, window_size=2, global_block_indexes=(1,)), None),
    "window+decomposed": (dict(PATCH_ONLY, window_size=2, global_block_indexes=(1,), rel_pos="decomposed"),
                          dict(PATCH_ONLY, window_size=2, global_block_indexes=(1,))),
    "decomposed": (dict(PATCH_ONLY, rel_pos="decomposed"), dict(PATCH_ONLY)),
    "bias": (dict(rel_pos="bias"), dict()),
    "bias+layer scale": (dict(rel_pos="bias", layer_scale_init=1.0), dict()),
    "checkpointing": (dict(grad_checkpointing=True), None),
}


def build(seed=0, **kwargs):
    torch.manual_seed(seed)
    return VisionTransformer(**TINY, **kwargs)


def images(seed=1, batch=2):
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def assert_every_parameter_learns(model, loss):
    loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    no_grad = [n for n, p in trainable.items() if p.grad is None]
    assert not no_grad, f"no gradient for {no_grad}"
    bad = [n for n, p in trainable.items() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradient for {bad}"
    # the zero-initialised additions must move too (not a dead branch)
    dead = [n for n, p in trainable.items() if ("rel_pos" in n or n.endswith("gamma")) and not p.grad.abs().sum()]
    assert not dead, f"zero gradient for {dead}"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_parameter_gets_a_gradient(name):
    model = build(**VARIANTS[name][0]).train()
    out = model(images())
    assert_every_parameter_learns(model, out.square().mean() + out.mean())


@pytest.mark.parametrize("name", list(VARIANTS))
def test_state_dict_round_trips_strictly(name):
    kwargs = VARIANTS[name][0]
    src = build(seed=0, **kwargs).eval()
    with torch.no_grad():  # make the zero-initialised tables non-zero, so that they are really carried over
        for n, p in src.named_parameters():
            if "rel_pos" in n or n.endswith("gamma"):
                p.add_(0.1 * torch.randn_like(p))
    dst = build(seed=1, **kwargs).eval()
    report = dst.load_state_dict(src.state_dict(), strict=True)
    assert not report.missing_keys and not report.unexpected_keys
    with torch.no_grad():
        torch.testing.assert_close(dst(images()), src(images()))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_forward_intermediates_are_maps(name):
    model = build(**VARIANTS[name][0]).eval()
    with torch.no_grad():
        feats = model.forward_intermediates(images(batch=3), indices=[0, -1])
    assert [tuple(f.shape) for f in feats] == [(3, 32, 4, 4)] * 2


@pytest.mark.parametrize("name", [n for n, (_, base) in VARIANTS.items() if base is not None])
def test_zero_initialised_additions_start_as_the_model_without_them(name):
    kwargs, base_kwargs = VARIANTS[name]
    base = build(seed=0, **base_kwargs).eval()
    model = build(seed=5, **kwargs).eval()
    report = model.load_state_dict(base.state_dict(), strict=False)  # only the additions stay as initialised
    assert not report.unexpected_keys
    assert report.missing_keys and all("rel_pos" in k or k.endswith("gamma") for k in report.missing_keys)
    with torch.no_grad():
        torch.testing.assert_close(model(images()), base(images()), atol=1e-5, rtol=1e-5)


def test_masked_encoding_keeps_the_contract():
    model = build().train()
    ids_keep = torch.stack([torch.randperm(16, generator=torch.Generator().manual_seed(i))[:4] for i in range(2)])
    out = model.forward_features(images(), ids_keep=ids_keep)
    assert tuple(out.shape) == (2, 1 + 4, 32)
    assert_every_parameter_learns(model, out.square().mean())
    with torch.no_grad():  # keeping every token in order is the unmasked encoder
        kept_all = model.forward_features(images(), ids_keep=torch.arange(16).expand(2, 16))
        torch.testing.assert_close(kept_all, model.forward_features(images()))
    for blocked in (dict(PATCH_ONLY, window_size=2), dict(rel_pos="bias")):
        with pytest.raises(ValueError, match="ids_keep"):
            build(**blocked).forward_features(images(), ids_keep=ids_keep)


def test_decoder_blocks_keep_the_contract():
    torch.manual_seed(0)
    mae = MaskedAutoencoder(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=16,
                               decoder_depth=2, decoder_num_heads=2).train()
    loss, pred, mask = mae(images())
    assert tuple(pred.shape) == (2, 16, 8 * 8 * 3) and tuple(mask.shape) == (2, 16)
    assert_every_parameter_learns(mae, loss)
    other = MaskedAutoencoder(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=16,
                                 decoder_depth=2, decoder_num_heads=2)
    report = other.load_state_dict(mae.state_dict(), strict=True)
    assert not report.missing_keys and not report.unexpected_keys
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(other.eval()(images(), noise=noise)[1], mae.eval()(images(), noise=noise)[1])


def test_relative_position_kinds_keep_their_checkpoint_keys():
    """The attention classes own their tables under the keys of ViTDet / BEiT-style checkpoints."""
    keys = {name: {k.split(".", 2)[2] for k in build(**VARIANTS[name][0]).state_dict() if k.startswith("blocks.0.")}
            for name in ("plain", "decomposed", "bias")}
    assert keys["decomposed"] - keys["plain"] == {"attn.rel_pos_h", "attn.rel_pos_w"}
    assert keys["bias"] - keys["plain"] == {"attn.rel_pos_bias.table"}
    assert keys["plain"] == {f"{m}.{p}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
                             for p in ("weight", "bias")}


def test_block_specs_and_illegal_combinations_are_decided_at_construction():
    model = build(**VARIANTS["window+decomposed"][0], drop_path_rate=0.2)
    specs = [model.block_spec(i) for i in range(3)]
    assert [s.window_size for s in specs] == [2, 0, 2]
    assert [s.rel_pos_grid for s in specs] == [(2, 2), (4, 4), (2, 2)]  # window-sized, or the whole 4 x 4 grid
    assert [s.drop_path for s in specs] == pytest.approx([0.0, 0.1, 0.2])
    assert [tuple(b.attn.rel_pos_h.shape) for b in model.blocks] == [(3, 16), (7, 16), (3, 16)]
    with pytest.raises(ValueError, match="one kind per model"):
        build(rel_pos="both")
    with pytest.raises(ValueError, match="rel_pos must be"):
        build(rel_pos=True)
    with pytest.raises(ValueError, match="use_cls_token=False"):
        build(rel_pos="decomposed")  # decomposed tables index patch tokens only
    assert build(rel_pos="bias").use_cls_token  # BEiT's bias is cls-aware
    with pytest.raises(ValueError, match="grid"):  # a block called without its tokens' grid says what it needs
        build(**VARIANTS["decomposed"][0]).blocks[0](torch.randn(1, 16, 32))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fixed_tables_at_another_grid_stay_sincos_in_low_precision(dtype):
    """The one position-table rule at run time: a sin-cos table cast to bf16 / fp16 is still rebuilt (not
    interpolated) for another grid, for the encoder and the MAE decoder, also after a load."""
    from mae_backbone.models.pos_embed import get_2d_sincos_pos_embed
    mae = MaskedAutoencoder(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=16,
                            decoder_depth=1, decoder_num_heads=2)
    mae.load_state_dict(mae.state_dict())
    mae = mae.to(dtype)
    for table, width in ((mae.pos_embed_for((6, 5)), 32), (mae.decoder_pos_embed_for((6, 5)), 16)):
        exact = get_2d_sincos_pos_embed(width, (6, 5), cls_token=True)[None].to(dtype)
        assert table.dtype == dtype and torch.equal(table, exact)
