"""Command-line tools run as a user runs them (subprocess), on checkpoints the tests write."""
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from mae_backbone.checkpoint import encoder_state_dict, load_checkpoint, read_checkpoint
from mae_backbone.inference import build_mae_from_checkpoint, infer_mae_kwargs
from mae_backbone.models import MaskedAutoencoder, mae_vit_tiny_patch16
from reference_mae import hf_vitmae

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tool(*args):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", args[0]), *map(str, args[1:])],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def small_official_mae(tmp_path):
    torch.manual_seed(0)
    m = mae_vit_tiny_patch16(img_size=32, patch_size=8, depth=2, decoder_embed_dim=64, decoder_depth=1)
    path = tmp_path / "mae_visualize_tiny.pth"
    torch.save({"model": m.state_dict()}, path)
    return m, path


def test_infer_architecture_from_official_layout(tmp_path):
    m, path = small_official_mae(tmp_path)
    kw = infer_mae_kwargs(m.state_dict())
    assert kw == dict(patch_size=8, in_chans=3, embed_dim=192, depth=2, num_heads=3, img_size=32,
                      decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=2, mask_token_in_encoder=False)
    built, report, _ = build_mae_from_checkpoint(read_checkpoint(path))
    assert not report.missing and torch.equal(built.blocks[1].attn.qkv.weight, m.blocks[1].attn.qkv.weight)
    with pytest.raises(ValueError, match="encoder-only"):
        infer_mae_kwargs(encoder_state_dict(m.state_dict()))


def test_convert_hf_to_native_and_encoder_only(tmp_path):
    hf = hf_vitmae(decoder_hidden=64, decoder_heads=2, decoder_depth=1)
    src = tmp_path / "hf.pth"
    torch.save(hf.state_dict(), src)
    out = run_tool("convert_checkpoint.py", src, tmp_path / "native.pth", "--from", "hf")
    assert "from the hf layout" in out
    native = read_checkpoint(tmp_path / "native.pth")
    assert "blocks.1.attn.qkv.weight" in native["model"] and "decoder_pred.weight" in native["model"]
    m = mae_vit_tiny_patch16(img_size=32, patch_size=8, depth=2, decoder_embed_dim=64, decoder_depth=1)
    assert load_checkpoint(m, tmp_path / "native.pth").source == "official"
    run_tool("convert_checkpoint.py", src, tmp_path / "enc.pth", "--encoder-only")
    enc = read_checkpoint(tmp_path / "enc.pth")["model"]
    assert not any(k.startswith(("decoder", "mask_token")) for k in enc) and "norm.weight" in enc


def test_visualize_reconstruction_official_checkpoint(tmp_path, photo_dir):
    _, path = small_official_mae(tmp_path)
    out = tmp_path / "recon.png"
    log = run_tool("visualize_reconstruction.py", path, photo_dir / "astronaut.jpg", photo_dir / "camera.jpg",
                   "--mask-ratio", "0.75", "--out", out)
    assert "missing 0" in log and "unexpected 0" in log
    img = Image.open(out)
    assert img.size == (2 * 32 + 3 * 2, 3 * 32 + 4 * 2)


def test_visualize_reconstruction_of_our_training_run(tmp_path, photo_dir):
    """A checkpoint written by tools/train.py carries its config: no architecture flags needed."""
    run_tool("train.py", os.path.join("configs", "mae", "mae_vit-demo-p8_1xb32-40e_photos.py"),
             "--work-dir", tmp_path / "run", "--cfg-options", "train_cfg.max_epochs=1",
             f"train_dataloader.dataset.root={photo_dir}", "train_dataloader.num_workers=0",
             "train_dataloader.batch_size=4", "model.depth=1", "model.decoder_depth=1")
    ckpt = tmp_path / "run" / "epoch_1.pth"
    model, report, norm = build_mae_from_checkpoint(read_checkpoint(ckpt))
    assert isinstance(model, MaskedAutoencoder) and model.depth == 1 and model.img_size == (96, 96)
    assert report.source == "native" and not report.missing
    out = tmp_path / "recon.png"
    run_tool("visualize_reconstruction.py", ckpt, photo_dir / "chelsea.jpg", "--out", out)
    assert Image.open(out).size == (96 + 2 * 2, 3 * 96 + 4 * 2)


def test_config_text_in_a_checkpoint_is_never_executed(tmp_path):
    m, _ = small_official_mae(tmp_path)
    marker = tmp_path / "RAN"
    ckpt = {"meta": {"cfg": f"open({str(marker)!r}, 'w').write('x')\nmodel = dict(type='MAEPretrainer')"},
            "state_dict": {"model." + k: v for k, v in m.state_dict().items()}}
    model, report, _ = build_mae_from_checkpoint(ckpt)
    assert not marker.exists() and not report.missing
