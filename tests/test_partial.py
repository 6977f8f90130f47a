import pytest
import torch

from mae_backbone.models import create_classifier
from mae_backbone.param_groups import param_groups
from mae_backbone.partial import freeze_report, partial_finetune


def clf(**kw):
    torch.manual_seed(0)
    args = dict(img_size=32, depth=4, drop_path_rate=0.2)
    args.update(kw)
    return create_classifier("vit_tiny_patch16", 10, **args)


def trainable_tops(model):
    """Top-level owners of trainable tensors: 'blocks.i' or the module name."""
    out = set()
    for n, p in model.named_parameters():
        if p.requires_grad:
            parts = n.split(".")
            out.add(".".join(parts[:2]) if parts[0] == "blocks" else parts[0])
    return out


@pytest.mark.parametrize("k,expected", [
    (0, {"fc_norm", "head"}),
    (1, {"blocks.3", "fc_norm", "head"}),
    (2, {"blocks.2", "blocks.3", "fc_norm", "head"}),
    ("all", {"patch_embed", "cls_token", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "fc_norm", "head"}),
])
def test_exactly_the_expected_parameters_train(k, expected):
    m = clf()
    report = partial_finetune(m, k)
    assert trainable_tops(m) == expected
    assert report.trainable == sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert report.frozen == sum(p.numel() for p in m.parameters() if not p.requires_grad)


def test_token_pool_k1_trains_final_norm_and_k0_does_not():
    m = clf(global_pool="token")
    partial_finetune(m, 1)
    assert "norm" in trainable_tops(m)
    partial_finetune(m, 0)
    assert trainable_tops(m) == {"head"}


def test_mlp_variant_trains_last_mlp_only():
    m = clf()
    partial_finetune(m, 1, variant="mlp")
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("blocks")} == {
        "blocks.3.norm2.weight", "blocks.3.norm2.bias", "blocks.3.mlp.fc1.weight", "blocks.3.mlp.fc1.bias",
        "blocks.3.mlp.fc2.weight", "blocks.3.mlp.fc2.bias"}


@pytest.mark.parametrize("k", [-1, 5, 2.0, True, "half"])
def test_bad_k(k):
    with pytest.raises(ValueError, match=r"\[0, 4\] or 'all'"):
        partial_finetune(clf(), k)


def test_bad_variant():
    with pytest.raises(ValueError, match="unknown partial fine-tuning variant 'attn'"):
        partial_finetune(clf(), 1, variant="attn")
    with pytest.raises(ValueError, match="use k=1"):
        partial_finetune(clf(), 2, variant="mlp")


def test_frozen_tensors_bit_identical_after_training_steps():
    m = clf(linear_probe=True)  # BatchNorm in the head: its running stats must move, frozen ones must not
    partial_finetune(m, 2)
    m.train()
    assert not m.blocks[1].training and m.blocks[2].training
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.AdamW([g for g in param_groups(m, 0.05, layer_decay=0.75)], lr=1e-2)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(m(torch.randn(8, 3, 32, 32)), torch.randint(0, 10, (8,)))
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = m.state_dict()
    frozen = [k for k in before if k.startswith(("patch_embed", "cls_token", "pos_embed", "blocks.0.", "blocks.1."))]
    trained = [k for k in before if k.startswith(("blocks.2.", "blocks.3.", "head.1.", "fc_norm"))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not torch.equal(before[k], after[k]) for k in trained if k.endswith("weight"))
    assert not torch.equal(before["head.0.running_mean"], after["head.0.running_mean"])


def test_layer_decay_groups_follow_official_rule_after_freezing():
    m = clf()
    partial_finetune(m, 2)
    groups = param_groups(m, 0.05, layer_decay=0.5)
    scale = {n: g["lr_scale"] for g in groups for n in g["names"]}
    assert scale["blocks.2.attn.qkv.weight"] == pytest.approx(0.5 ** (4 + 1 - 3))
    assert scale["head.weight"] == 1.0 and "blocks.1.attn.qkv.weight" not in scale


def test_report_rows_per_layer():
    m = clf()
    report = partial_finetune(m, 1)
    rows = {r["layer"]: r for r in report.rows}
    assert list(rows) == ["embeddings", "block 0", "block 1", "block 2", "block 3", "norm + head"]
    assert rows["block 2"]["trainable"] == 0 and rows["block 3"]["frozen"] == 0
    assert "| block 3 |" in str(report)
    with pytest.raises(TypeError, match="freeze"):
        freeze_report(torch.nn.Linear(2, 2))


def test_mlp_variant_keeps_last_block_in_train_mode():
    m = clf()
    partial_finetune(m, 1, variant="mlp")
    m.train()
    assert m.blocks[3].training and not m.blocks[2].training
    assert not any(p.requires_grad for p in m.blocks[3].attn.parameters())
