import pytest
import torch

from mae_backbone.checkpoint import load_checkpoint
from mae_backbone.models import MaskedAutoencoder, mae_vit_tiny_patch16, patchify, unpatchify
from reference_mae import hf_vitmae, official_patchify


def small_mae(**kw):
    args = dict(img_size=32, patch_size=8, depth=2, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4)
    args.update(kw)
    return mae_vit_tiny_patch16(**args)


def test_patchify_matches_official_and_round_trips():
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(patchify(x, 8), official_patchify(x, 8))
    assert torch.equal(unpatchify(patchify(x, 8), 8), x)
    y = torch.randn(1, 3, 16, 40)
    assert torch.equal(unpatchify(patchify(y, 8), 8, grid=(2, 5)), y)


def test_forward_contract():
    m = small_mae()
    loss, pred, mask = m(torch.randn(3, 3, 32, 32))
    assert loss.ndim == 0 and pred.shape == (3, 16, 8 * 8 * 3) and mask.shape == (3, 16)
    assert set(mask.unique().tolist()) == {0.0, 1.0} and (mask.sum(1) == 12).all()


def test_loss_counts_masked_patches_only():
    m = small_mae().eval()
    imgs = torch.randn(2, 3, 32, 32)
    _, pred, mask = m(imgs, noise=torch.rand(2, 16))
    base = m.forward_loss(imgs, pred, mask)
    changed = pred + 5.0 * (1 - mask)[..., None]  # alter visible-patch predictions only
    assert torch.equal(m.forward_loss(imgs, changed, mask), base)
    changed_masked = pred + 5.0 * mask[..., None]
    assert m.forward_loss(imgs, changed_masked, mask) > base + 1
    # equals the mean squared error over masked patches computed by hand
    err = ((pred - patchify(imgs, 8)) ** 2).mean(-1)
    assert torch.allclose(base, err[mask.bool()].mean(), atol=1e-6)


def test_norm_pix_target_is_per_patch_standardised():
    m = small_mae(norm_pix_loss=True)
    imgs = torch.rand(2, 3, 32, 32) * 3 + 1
    t = m.target(imgs)
    assert torch.allclose(t.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(t.std(-1), torch.ones(2, 16), atol=1e-3)  # unbiased var, as official
    assert torch.equal(small_mae().target(imgs), patchify(imgs, 8))


def _encoder_input_len(m, imgs, mask_ratio):
    seen = []
    h = m.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[1]))
    m(imgs, mask_ratio=mask_ratio)
    h.remove()
    return seen[0]


@pytest.mark.parametrize("r", [0.75, 0.5, 0.9])
def test_encoder_sees_only_visible_tokens(r):
    m = small_mae(img_size=64)  # L = 64
    assert _encoder_input_len(m, torch.randn(2, 3, 64, 64), r) == 1 + int(64 * (1 - r))


def test_mask_token_in_encoder_sees_all_tokens():
    m = small_mae(img_size=64, mask_token_in_encoder=True)
    assert m.mask_token.shape[-1] == m.embed_dim
    assert _encoder_input_len(m, torch.randn(2, 3, 64, 64), 0.75) == 1 + 64
    loss, pred, mask = m(torch.randn(2, 3, 64, 64))
    assert pred.shape == (2, 64, 192) and torch.isfinite(loss)


@pytest.mark.parametrize("kw", [{}, {"mask_token_in_encoder": True}, {"norm_pix_loss": True},
                                {"masking": "block"}, {"masking": "grid"}])
def test_every_trainable_parameter_gets_gradient(kw):
    m = small_mae(**kw)
    loss, _, _ = m(torch.randn(2, 3, 32, 32))
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []
    assert not m.pos_embed.requires_grad and not m.decoder_pos_embed.requires_grad


def test_state_dict_has_official_flat_layout():
    keys = set(small_mae().state_dict())
    for k in ["cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight",
              "blocks.1.mlp.fc2.bias", "norm.weight", "mask_token", "decoder_embed.weight",
              "decoder_pos_embed", "decoder_blocks.0.norm1.weight", "decoder_norm.bias", "decoder_pred.weight"]:
        assert k in keys


@pytest.mark.parametrize("r", [1.0, -0.2])
def test_bad_mask_ratio(r):
    with pytest.raises(ValueError, match="mask_ratio"):
        small_mae()(torch.randn(1, 3, 32, 32), mask_ratio=r)
    with pytest.raises(ValueError, match="mask_ratio"):
        small_mae(mask_ratio=r)


def test_bad_noise_shape_and_strategy():
    with pytest.raises(ValueError, match="noise must have shape"):
        small_mae()(torch.randn(2, 3, 32, 32), noise=torch.rand(2, 15))
    with pytest.raises(ValueError, match="masking strategy"):
        small_mae(masking="stripes")


def test_zero_mask_ratio_is_a_plain_autoencoder():
    m = small_mae()
    loss, pred, mask = m(torch.randn(2, 3, 32, 32), mask_ratio=0.0)
    assert mask.sum() == 0 and torch.isfinite(loss) and loss > 0


# --------------------------------------------------------------------- HF parity
def _ours_like_hf(norm_pix_loss):
    return MaskedAutoencoder(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=32,
                             decoder_depth=2, decoder_num_heads=4, norm_pix_loss=norm_pix_loss).eval()


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_matches_hf_vitmae_given_same_noise(norm_pix_loss):
    hf = hf_vitmae(hidden=64, heads=4, norm_pix_loss=norm_pix_loss, attn_implementation="sdpa")
    ours = _ours_like_hf(norm_pix_loss)
    report = load_checkpoint(ours, hf.state_dict())
    assert report.source == "hf" and not report.missing and not report.unexpected
    imgs, noise = torch.randn(3, 3, 32, 32), torch.rand(3, 16)
    with torch.no_grad():
        out = hf(pixel_values=imgs, noise=noise)
        loss, pred, mask = ours(imgs, noise=noise)
    assert torch.equal(mask, out.mask)
    assert (pred - out.logits).abs().max() < 1e-5
    assert abs(loss.item() - out.loss.item()) < 1e-5
