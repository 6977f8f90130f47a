"""Independent re-statements of the official MAE formulas (facebookresearch/mae models_mae.py and
util/pos_embed.py), used as references by the tests. Written from the paper's description and the
official semantics; numpy where the official code uses numpy."""
import numpy as np
import torch


def official_1d(embed_dim, pos):
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def official_2d(embed_dim, grid_h, grid_w, cls_token=False):
    gh = np.arange(grid_h, dtype=np.float32)
    gw = np.arange(grid_w, dtype=np.float32)
    grid = np.stack(np.meshgrid(gw, gh), axis=0).reshape(2, 1, grid_h, grid_w)  # w first, as official
    emb = np.concatenate([official_1d(embed_dim // 2, grid[0]), official_1d(embed_dim // 2, grid[1])], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)
    return emb


def official_random_masking(x, mask_ratio, noise):
    """x (N, L, D) -> x_masked, mask, ids_restore (official per-sample shuffle)."""
    N, L, D = x.shape
    len_keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, D))
    mask = torch.ones([N, L])
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, dim=1, index=ids_restore)
    return x_masked, mask, ids_restore


def official_patchify(imgs, p):
    h = w = imgs.shape[2] // p
    x = imgs.reshape(imgs.shape[0], 3, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(imgs.shape[0], h * w, p ** 2 * 3)


def hf_vitmae(hidden=192, heads=3, depth=2, decoder_hidden=32, decoder_heads=4, decoder_depth=2, seed=0,
              **config):
    """A small HF ``ViTMAEForPreTraining`` (32x32 images, patch 8) with every tensor non-trivial, in eval mode."""
    import pytest
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTMAEConfig(
        hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=4 * hidden,
        image_size=32, patch_size=8, decoder_hidden_size=decoder_hidden, decoder_num_hidden_layers=decoder_depth,
        decoder_num_attention_heads=decoder_heads, decoder_intermediate_size=4 * decoder_hidden,
        layer_norm_eps=1e-6, hidden_act="gelu", **config)
    torch.manual_seed(seed)
    hf = transformers.ViTMAEForPreTraining(cfg).eval()
    for p in hf.parameters():  # HF initialises some tensors to zero or one: make all of them informative
        p.data.normal_(0, 0.05 if p.ndim > 1 else 0.2)
    return hf


@torch.no_grad()
def official_lars_step(params, lr, momentum=0.9, weight_decay=0.0, trust_coefficient=0.001, state=None):
    """One step of the official MAE LARS (util/lars.py): trust ratio for ndim > 1, momentum buffer 'mu'."""
    state = {} if state is None else state
    for p in params:
        dp = p.grad
        if p.ndim > 1:
            dp = dp.add(p, alpha=weight_decay)
            pn, un = torch.norm(p), torch.norm(dp)
            one = torch.ones_like(pn)
            q = torch.where(pn > 0.0, torch.where(un > 0, trust_coefficient * pn / un, one), one)
            dp = dp.mul(q)
        mu = state.setdefault(p, torch.zeros_like(p))
        mu.mul_(momentum).add_(dp)
        p.add_(mu, alpha=-lr)
    return state
