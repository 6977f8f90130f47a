import pytest
import torch

from mae_backbone.models.masking import (grid_noise, make_noise, masks_from_noise, num_visible)
from reference_mae import official_random_masking


@pytest.mark.parametrize("L,r", [(196, 0.75), (49, 0.75), (256, 0.9), (196, 0.5), (10, 0.0)])
def test_visible_count_is_int_L_times_keep(L, r):
    m = masks_from_noise(torch.rand(4, L), num_visible(L, r))
    assert m.ids_keep.shape == (4, int(L * (1 - r)))
    assert (m.mask.sum(1) == L - int(L * (1 - r))).all()


def test_same_noise_same_mask_as_official():
    torch.manual_seed(0)
    x = torch.randn(3, 196, 8)
    noise = torch.rand(3, 196)
    m = masks_from_noise(noise, num_visible(196, 0.75))
    ref_x, ref_mask, ref_restore = official_random_masking(x, 0.75, noise)
    assert torch.equal(m.mask, ref_mask)
    assert torch.equal(m.ids_restore, ref_restore)
    assert torch.equal(torch.gather(x, 1, m.ids_keep[..., None].expand(-1, -1, 8)), ref_x)
    assert torch.equal(masks_from_noise(noise.clone(), 49).mask, m.mask)


def test_ids_restore_inverts_shuffle():
    noise = torch.rand(5, 64)
    m = masks_from_noise(noise, 16)
    ids_shuffle = torch.argsort(noise, 1)
    assert torch.equal(torch.gather(ids_shuffle, 1, m.ids_restore), torch.arange(64).expand(5, 64))
    # visible patches are exactly the mask == 0 positions
    vis = torch.zeros(5, 64).scatter_(1, m.ids_keep, 1.0)
    assert torch.equal(vis, 1 - m.mask)


def test_random_masking_is_uniform_over_positions():
    g = torch.Generator().manual_seed(0)
    L, draws = 49, 4000
    masks = masks_from_noise(make_noise("random", draws, (7, 7), 0.75, generator=g), num_visible(L, 0.75)).mask
    freq = masks.mean(0)
    expected = (L - num_visible(L, 0.75)) / L
    # binomial std per position ~ sqrt(p(1-p)/n) = 0.0068; allow 5 sigma
    assert (freq - expected).abs().max() < 0.035


def test_block_masking_has_ratio_and_contiguous_blocks():
    g = torch.Generator().manual_seed(0)
    noise = make_noise("block", 16, (14, 14), 0.75, generator=g)
    m = masks_from_noise(noise, num_visible(196, 0.75))
    assert (m.mask.sum(1) == 196 - 49).all()
    # blocks: masked patches have far more masked 4-neighbours than under random masking
    grid = m.mask.reshape(16, 14, 14)
    same = (grid[:, 1:, :] == grid[:, :-1, :]).float().mean()
    rnd = masks_from_noise(torch.rand(16, 196), 49).mask.reshape(16, 14, 14)
    same_rnd = (rnd[:, 1:, :] == rnd[:, :-1, :]).float().mean()
    assert same > same_rnd + 0.1


def test_grid_masking_keeps_one_per_cell():
    m = masks_from_noise(grid_noise(2, (14, 14), 0.75), num_visible(196, 0.75))
    keep = (1 - m.mask).reshape(2, 14, 14)
    assert keep.sum() == 2 * 49
    assert keep[:, ::2, ::2].all()


@pytest.mark.parametrize("r", [0.5, 0.8])
def test_grid_masking_rejects_other_ratios(r):
    with pytest.raises(ValueError, match="1 - 1/s"):
        grid_noise(1, (14, 14), r)


def test_grid_masking_rejects_indivisible_grid():
    with pytest.raises(ValueError, match="divisible"):
        grid_noise(1, (7, 7), 0.75)


@pytest.mark.parametrize("r", [-0.1, 1.0, 1.5])
def test_bad_mask_ratio(r):
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
        num_visible(196, r)


def test_unknown_strategy():
    with pytest.raises(ValueError, match="random"):
        make_noise("checkerboard", 1, (4, 4), 0.75)
