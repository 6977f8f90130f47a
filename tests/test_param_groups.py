import pytest
import torch

from mae_backbone.models import mae_vit_tiny_patch16, vit_tiny_patch16
from mae_backbone.param_groups import param_groups


def official_lr_scale(name, depth, decay):
    """facebookresearch/mae util/lr_decay.py: get_layer_id_for_vit + layer_scales."""
    num_layers = depth + 1
    if name in ("cls_token", "pos_embed"):
        lid = 0
    elif name.startswith("patch_embed"):
        lid = 0
    elif name.startswith("blocks"):
        lid = int(name.split(".")[1]) + 1
    else:
        lid = num_layers
    return decay ** (num_layers - lid)


def test_layer_decay_matches_official_rule():
    m = vit_tiny_patch16(img_size=32, depth=4, learnable_pos_embed=True)
    groups = param_groups(m, weight_decay=0.05, layer_decay=0.65)
    for g in groups:
        for name in g["names"]:
            assert g["lr_scale"] == pytest.approx(official_lr_scale(name, 4, 0.65)), name


def test_no_weight_decay_for_1d_and_declared_tensors():
    m = mae_vit_tiny_patch16(img_size=32, depth=2, decoder_depth=1)
    groups = param_groups(m, weight_decay=0.05)
    wd = {n: g["weight_decay"] for g in groups for n in g["names"]}
    assert wd["cls_token"] == 0 and wd["mask_token"] == 0 and wd["blocks.0.norm1.weight"] == 0
    assert wd["blocks.0.attn.qkv.bias"] == 0 and wd["blocks.0.attn.qkv.weight"] == 0.05
    assert "pos_embed" not in wd  # fixed table is not trainable


def test_frozen_parameters_are_left_out_and_bad_decay_rejected():
    m = vit_tiny_patch16(img_size=32, depth=4)
    m.freeze(2)
    names = {n for g in param_groups(m, 0.05) for n in g["names"]}
    assert not any(n.startswith(("blocks.0.", "blocks.1.", "patch_embed")) for n in names)
    assert "blocks.2.mlp.fc1.weight" in names
    with pytest.raises(ValueError, match="layer_decay"):
        param_groups(m, 0.05, layer_decay=1.5)


def test_wrapped_backbone_and_head_outside_it():
    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = vit_tiny_patch16(img_size=32, depth=2)
            self.head = torch.nn.Linear(192, 10)
    groups = param_groups(Wrapped(), 0.05, layer_decay=0.5)
    scale = {n: g["lr_scale"] for g in groups for n in g["names"]}
    assert scale["head.weight"] == 1.0 and scale["backbone.blocks.0.mlp.fc1.weight"] == pytest.approx(0.25)
    assert scale["backbone.patch_embed.proj.weight"] == pytest.approx(0.125)
