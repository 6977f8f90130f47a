"""Feature extraction and weighted k-NN: the math against a direct implementation, the pooling definitions against
the encoder, resumable chunks, the command-line tools on image folders, and (slow) MAE beats random init on
Fashion-MNIST."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import mae_backbone  # noqa: F401
from mae_backbone.features import build_encoder, embed, extract, knn_classify
from mae_backbone.models import mae_vit_tiny_patch16, vit_tiny_patch16

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_knn_matches_a_direct_weighted_vote():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(200, 16, generator=g), torch.randn(50, 16, generator=g)
    ytr, yte = torch.randint(0, 5, (200,), generator=g), torch.randint(0, 5, (50,), generator=g)
    got = knn_classify(train, ytr, test, yte, k=7, temperature=0.1, num_classes=5, batch_size=16)
    correct1 = correct5 = 0
    for i in range(50):
        sims = [float(torch.dot(test[i], train[j]) / (test[i].norm() * train[j].norm())) for j in range(200)]
        nearest = sorted(range(200), key=lambda j: -sims[j])[:7]
        votes = [0.0] * 5
        for j in nearest:
            votes[int(ytr[j])] += math.exp(sims[j] / 0.1)
        ranked = sorted(range(5), key=lambda c: -votes[c])
        correct1 += ranked[0] == int(yte[i])
        correct5 += int(yte[i]) in ranked[:5]
    assert got["top1"] == pytest.approx(100 * correct1 / 50) and got["top5"] == pytest.approx(100 * correct5 / 50)
    # features that carry the label: k-NN finds it
    assert knn_classify(torch.eye(5)[ytr] + 0.01 * train[:, :5], ytr, torch.eye(5)[yte], yte)["top1"] == 100.0
    with pytest.raises(ValueError, match="label -1"):
        knn_classify(train, ytr, test, torch.full((50,), -1))


def test_pooling_definitions_and_layers():
    torch.manual_seed(0)
    enc = vit_tiny_patch16(img_size=32, patch_size=8, depth=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = enc.norm(enc.run_blocks(torch.cat(enc.embed_patches(x)[1::-1], dim=1), grid=(4, 4)))
    assert torch.allclose(embed(enc, x, "cls"), tokens[:, 0], atol=1e-5)
    assert torch.allclose(embed(enc, x, "avg"), tokens[:, 1:].mean(1), atol=1e-5)
    two = embed(enc, x, "avg", layers=(1, -1))
    assert two.shape == (2, 2 * 192) and torch.allclose(two[:, 192:], tokens[:, 1:].mean(1), atol=1e-5)


def _folder(root, classes=("a", "b"), per=3, size=40):
    rng = np.random.default_rng(0)
    for ci, c in enumerate(classes):
        os.makedirs(root / c, exist_ok=True)
        for i in range(per):
            arr = np.full((size, size, 3), 40 + 150 * ci, np.uint8) + rng.integers(0, 30, (size, size, 3), np.uint8)
            Image.fromarray(arr).save(root / c / f"{c}{i}.png")


def test_extract_resumes_from_saved_chunks(tmp_path, monkeypatch):
    _folder(tmp_path / "imgs", per=5)
    torch.manual_seed(0)
    enc = vit_tiny_patch16(img_size=32, patch_size=8, depth=2).eval()
    full = extract(enc, str(tmp_path / "imgs"), batch_size=3, precision="fp32", progress=False)
    assert full["features"].shape == (10, 192) and full["labels"].tolist() == [0] * 5 + [1] * 5
    from mae_backbone import features as F
    calls = []
    real = F._run

    class Interrupted(Exception):
        pass
    calls_done = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 and not calls_done:
            calls_done.append(1)
            raise Interrupted  # as a Ctrl-C or a killed job in the second chunk
        return real(*args, **kwargs)
    monkeypatch.setattr(F, "_run", flaky)
    with pytest.raises(Interrupted):
        extract(enc, str(tmp_path / "imgs"), batch_size=3, precision="fp32", chunk_dir=tmp_path / "c", chunk_size=4,
                progress=False)
    assert sorted(p.name for p in (tmp_path / "c").glob("chunk_*")) == ["chunk_000000.pt"]
    calls.clear()
    resumed = extract(enc, str(tmp_path / "imgs"), batch_size=3, precision="fp32", chunk_dir=tmp_path / "c",
                      chunk_size=4, progress=False)
    assert len(calls) == 2 and torch.allclose(resumed["features"], full["features"], atol=1e-6)  # 2 of 3 chunks rerun
    with torch.no_grad():
        enc.blocks[0].mlp.fc1.weight.add_(1.0)
    with pytest.raises(ValueError, match="other settings or weights"):
        extract(enc, str(tmp_path / "imgs"), chunk_dir=tmp_path / "c", chunk_size=4, progress=False)


def test_tools_extract_and_knn_on_image_folders(tmp_path):
    for split in ("train", "val"):
        _folder(tmp_path / split, per=4 if split == "train" else 2)
    torch.manual_seed(0)
    mae = mae_vit_tiny_patch16(img_size=32, patch_size=8, depth=2, decoder_depth=1)
    ckpt = tmp_path / "mae.pth"
    torch.save({"model": mae.state_dict()}, ckpt)
    out = tmp_path / "feats"
    run = subprocess.run([sys.executable, "tools/extract_features.py", str(tmp_path / "train"), "--checkpoint",
                          str(ckpt), "--out", str(out), "--pool", "cls", "--layers", "0", "-1", "--precision", "fp32"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    feats = np.load(out / "features.npy")
    assert feats.shape == (8, 2 * 192) and np.load(out / "labels.npy").tolist() == [0] * 4 + [1] * 4
    assert (out / "paths.txt").read_text().split()[0].endswith("a0.png") and (out / "classes.txt").read_text().split() == ["a", "b"]
    enc, _, _ = build_encoder(str(ckpt))  # the encoder of the full MAE file (decoder and mask token left out)
    assert torch.equal(enc.blocks[1].attn.qkv.weight, mae.blocks[1].attn.qkv.weight)
    api = extract(enc, str(tmp_path / "train"), pool="cls", layers=(0, -1), precision="fp32", progress=False)
    assert np.allclose(api["features"].numpy(), feats, atol=1e-5)
    run = subprocess.run([sys.executable, "tools/knn_eval.py", str(tmp_path / "train"), str(tmp_path / "val"),
                          "--checkpoint", str(ckpt), "--k", "3", "--precision", "fp32"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["train_images"] == 8 and result["val_images"] == 4 and result["top1"] == 100.0  # two clear classes


FMNIST = "/usr/share/datasets/fashion-mnist"
needs_fmnist = pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist not installed")


def _fmnist(split, limit):
    from mae_backbone.data import FashionMNIST
    return FashionMNIST(root=FMNIST, split=split, limit=limit, transform=lambda img: torch.from_numpy(np.array(img))[None])


def _knn_top1(encoder, train, test):
    kw = dict(pool="avg", mean=(0.2860,), std=(0.3530,), batch_size=500, precision="fp32", progress=False)
    a, b = extract(encoder, train, **kw), extract(encoder, test, **kw)
    return knn_classify(a["features"], a["labels"], b["features"], b["labels"], num_classes=10)["top1"]


@needs_fmnist
@pytest.mark.parametrize("steps, train_n, margin", [
    (60, 2000, 2.0),  # default suite: ~21 s on a 2-core Zen 5 (MAE 57.1 vs random 53.2 there)
    pytest.param(470, 10000, 6.0, marks=pytest.mark.slow)])  # two epochs: MAE 72.7 vs random 63.7 there
def test_knn_mae_pretraining_beats_random_init_on_fashion_mnist(steps, train_n, margin):
    """A short MAE pretraining of the Fashion-MNIST config's model (batch 256 on the 60k training images, labels
    unused) against the same encoder at random init: weighted k-NN top-1 on train_n training / 1000 test images."""
    from mae_backbone.data import FashionMNIST
    from mae_backbone.data.transforms import pretrain_transform
    from mae_backbone.features import build_encoder
    torch.manual_seed(0)
    mae = mae_vit_tiny_patch16(img_size=28, patch_size=4, in_chans=1, embed_dim=96, depth=6, num_heads=3,
                               decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2, norm_pix_loss=True)
    train, test = _fmnist("train", train_n), _fmnist("test", 1000)
    random_top1 = _knn_top1(build_encoder({"model": mae.state_dict()})[0], train, test)
    data = FashionMNIST(root=FMNIST, split="train", transform=pretrain_transform(img_size=28, scale=(0.5, 1.0)))
    loader = torch.utils.data.DataLoader(data, batch_size=256, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(mae.parameters(), lr=1.5e-3, betas=(0.9, 0.95), weight_decay=0.05)
    mae.train()
    step = 0
    while step < steps:
        for batch in loader:
            for g in opt.param_groups:  # 20 warm-up steps, then constant
                g["lr"] = 1.5e-3 * min(1.0, (step + 1) / 20)
            loss = mae((batch["inputs"].float() / 255 - 0.2860) / 0.3530)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == steps:
                break
    mae_top1 = _knn_top1(build_encoder({"model": mae.state_dict()})[0], train, test)
    print(f"k-NN top-1 after {steps} steps: MAE {mae_top1:.1f}, random init {random_top1:.1f}")
    assert mae_top1 > random_top1 + margin


def test_build_encoder_from_our_runs_and_fine_tuned_classifiers():
    """A paper-config run's spec names only the preset (heads from the preset, not the default), a classifier run's
    spec carries classifier arguments, and a globally pooled fine-tuned classifier (no final norm, fc_norm) gives
    its own pooled feature."""
    from mae_backbone.models import create_classifier, mae_vit_small_patch16
    torch.manual_seed(0)
    mae = mae_vit_small_patch16(img_size=32, patch_size=8, depth=2, decoder_depth=1)
    ckpt = {"state_dict": {f"model.{k}": v for k, v in mae.state_dict().items()},
            "meta": {"model_spec": dict(arch="mae_vit_small_patch16",
                                        kwargs=dict(img_size=32, patch_size=8, depth=2, decoder_depth=1))}}
    enc, _, _ = build_encoder(ckpt)
    assert enc.blocks[0].attn.num_heads == 6 and enc.depth == 2  # the preset's 6 heads, not a default 12
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(embed(enc, x, "avg"), mae.norm(mae.forward_features(x))[:, 1:].mean(1), atol=1e-5)
    clf = create_classifier("vit_small_patch16", 10, img_size=32, patch_size=8, depth=2, global_pool="avg").eval()
    ckpt = {"state_dict": {f"model.{k}": v for k, v in clf.state_dict().items()},
            "meta": {"model_spec": dict(arch="vit_small_patch16", kwargs=dict(
                img_size=32, patch_size=8, depth=2, global_pool="avg", num_classes=10, drop_path_rate=0.1))}}
    enc, _, _ = build_encoder(ckpt)
    with torch.no_grad():
        assert torch.allclose(embed(enc, x, "avg"), clf.pool(clf.forward_features(x)), atol=1e-5)
    with pytest.raises(ValueError, match="pool='avg'"):
        embed(enc, x, "cls")
    official = {"model": clf.state_dict()}  # the mae_finetuned_* layout: norm deleted, fc_norm + head
    enc, _, _ = build_encoder(official)
    with torch.no_grad():
        assert torch.allclose(embed(enc, x, "avg"), clf.pool(clf.forward_features(x)), atol=1e-5)
