import pytest
import timm
import torch

from mae_backbone.checkpoint import CheckpointError, load_checkpoint
from mae_backbone.models import ViTClassifier, create_classifier, mae_vit_tiny_patch16


@pytest.mark.parametrize("pool", ["avg", "token"])
def test_logits_match_timm(pool):
    torch.manual_seed(0)
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, num_classes=7,
                            global_pool=pool).eval()
    for p in ref.parameters():
        p.data.normal_(0, 0.05)
    ours = create_classifier("vit_tiny_patch16", 7, img_size=32, depth=2, global_pool=pool).eval()
    report = load_checkpoint(ours, ref.state_dict())
    assert not report.missing and not report.unexpected
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max() < 1e-5


def test_finetune_from_mae_checkpoint_declares_exactly_the_new_keys():
    mae = mae_vit_tiny_patch16(img_size=32, depth=2, decoder_depth=1)
    clf = create_classifier("vit_tiny_patch16", 10, img_size=32, depth=2)
    # an exact match (no declared contract) fails: the head is new, the decoder unused
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(clf, mae.state_dict(), allowed_missing=(), allowed_unexpected=())
    # by default the classifier's own contract declares exactly those
    assert clf.expected_new_keys() == [r"^(head|fc_norm)\."]
    report = load_checkpoint(clf, mae.state_dict())
    # as the official main_finetune.py asserts after its non-strict load
    assert set(report.missing) == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    assert {k.split(".")[0] for k in report.unexpected} == {"decoder_embed", "decoder_blocks", "decoder_norm",
                                                            "decoder_pred", "decoder_pos_embed", "mask_token", "norm"}
    assert torch.equal(clf.blocks[1].mlp.fc1.weight, mae.blocks[1].mlp.fc1.weight)
    # the head is new as a whole or not at all: a token-pooling classifier's head for an average-pooling one
    token = create_classifier("vit_tiny_patch16", 10, img_size=32, depth=2, global_pool="token")
    with pytest.raises(CheckpointError, match=r"part of the classification head but not \['fc_norm.bias', 'fc_norm"):
        load_checkpoint(clf, token.state_dict())
    # anything beyond the contract still fails: a block the classifier lacks
    deeper = mae_vit_tiny_patch16(img_size=32, depth=3, decoder_depth=1)
    with pytest.raises(CheckpointError, match=r"unexpected keys \['blocks\.2\."):
        load_checkpoint(clf, deeper.state_dict())


def test_linear_probe_head_is_bn_without_affine():
    clf = create_classifier("vit_tiny_patch16", 5, img_size=32, depth=2, global_pool="token", linear_probe=True)
    bn, lin = clf.head
    assert isinstance(bn, torch.nn.BatchNorm1d) and not bn.affine and bn.eps == 1e-6
    assert lin.out_features == 5 and clf(torch.randn(4, 3, 32, 32)).shape == (4, 5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="global_pool"):
        ViTClassifier(num_classes=3, global_pool="max", img_size=32, depth=1)
    with pytest.raises(ValueError, match="unknown architecture .vit_gigantic_patch3."):
        create_classifier("vit_gigantic_patch3", 10)
