import pytest
import torch

from mae_backbone.models.pos_embed import (get_2d_sincos_pos_embed, is_sincos_table, resize_pos_embed)
from reference_mae import official_2d


@pytest.mark.parametrize("dim,h,w", [(768, 14, 14), (1024, 16, 16), (64, 7, 11), (192, 32, 20)])
def test_matches_official_table_any_grid(dim, h, w):
    ours = get_2d_sincos_pos_embed(dim, (h, w), cls_token=True)
    ref = torch.from_numpy(official_2d(dim, h, w, cls_token=True)).float()  # checkpoints store float32
    assert ours.shape == (1 + h * w, dim)
    assert torch.equal(ours, ref)


def test_first_half_encodes_column_second_half_row():
    h, w, d = 5, 7, 32
    t = get_2d_sincos_pos_embed(d, (h, w)).reshape(h, w, d)
    # same column -> identical first half; same row -> identical second half
    assert torch.equal(t[0, 3, : d // 2], t[4, 3, : d // 2])
    assert not torch.equal(t[0, 3, d // 2:], t[4, 3, d // 2:])
    assert torch.equal(t[2, 0, d // 2:], t[2, 6, d // 2:])
    assert not torch.equal(t[2, 0, : d // 2], t[2, 6, : d // 2])


def test_cls_row_is_zero_and_bad_dim_rejected():
    assert torch.count_nonzero(get_2d_sincos_pos_embed(16, 4, cls_token=True)[0]) == 0
    with pytest.raises(ValueError, match="divisible by 4"):
        get_2d_sincos_pos_embed(18, 4)


def test_resize_same_grid_is_identity_and_prefix_kept():
    table = torch.randn(1, 1 + 14 * 14, 32)
    assert resize_pos_embed(table, (14, 14)) is table
    out = resize_pos_embed(table, (8, 12))
    assert out.shape == (1, 1 + 96, 32)
    assert torch.equal(out[:, :1], table[:, :1])


def test_resize_of_smooth_table_close_to_fresh_table():
    # bicubic resize of a sin-cos table approximates the table built for the new grid
    src = get_2d_sincos_pos_embed(64, (14, 14), cls_token=True)[None]
    out = resize_pos_embed(src, (16, 16))
    fresh = get_2d_sincos_pos_embed(64, (16, 16), cls_token=True)[None]
    assert (out - fresh).abs().mean() < 0.1
    assert is_sincos_table(fresh, (16, 16)) and not is_sincos_table(out, (16, 16))


def test_resize_rejects_non_square_without_grid():
    with pytest.raises(ValueError, match="square"):
        resize_pos_embed(torch.zeros(1, 1 + 15, 8), (4, 4))
