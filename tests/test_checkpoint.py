import os
import re

import numpy as np
import pytest
import torch

from mae_backbone.checkpoint import (CheckpointError, convert_state_dict, encoder_state_dict, load_checkpoint,
                                     read_checkpoint, save_checkpoint)
from mae_backbone.models import get_2d_sincos_pos_embed, mae_vit_tiny_patch16, vit_tiny_patch16
from reference_mae import hf_vitmae


def mae(**kw):
    args = dict(img_size=32, patch_size=8, depth=2, decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=4)
    args.update(kw)
    return mae_vit_tiny_patch16(**args)


def randomized(model):
    torch.manual_seed(1)
    for p in model.parameters():
        p.data.normal_()
    return model


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- writers of foreign layouts
def to_mmpretrain(sd):
    """Our (official) keys -> mmpretrain MAE keys (MAEViT backbone + MAEPretrainDecoder neck)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("decoder_blocks."):
            k = "neck." + k
        elif k.startswith("blocks."):
            k = "backbone." + k.replace("blocks.", "layers.", 1)
        elif k in ("decoder_embed.weight", "decoder_embed.bias", "decoder_pred.weight", "decoder_pred.bias",
                   "mask_token", "decoder_pos_embed"):
            k = "neck." + k
        elif k.startswith("decoder_norm."):
            k = "neck.ln1." + k.split(".")[-1]
        elif k.startswith("norm."):
            k = "backbone.ln1." + k.split(".")[-1]
        elif k.startswith("patch_embed.proj."):
            k = "backbone.patch_embed.projection." + k.split(".")[-1]
        else:
            k = "backbone." + k
        k = k.replace(".norm1.", ".ln1.").replace(".norm2.", ".ln2.")
        k = k.replace(".mlp.fc1.", ".ffn.layers.0.0.").replace(".mlp.fc2.", ".ffn.layers.1.")
        out[k] = v
    return out


def hf5_to_hf4(sd):
    """transformers 5.x ViTMAE keys -> the 4.x keys used by files on the HF hub."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^vit\.layers\.", "vit.encoder.layer.", k)
        for new, old in [("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
                         ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense"),
                         ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense")]:
            k = k.replace("." + new + ".", "." + old + ".")
        out[k] = v
    return out


# ------------------------------------------------------------------------------ round trips
def test_official_full_checkpoint_round_trip(tmp_path):
    src = randomized(mae())
    path = tmp_path / "mae_visualize.pth"
    torch.save({"model": src.state_dict(), "epoch": 799}, path)  # official file layout
    dst = mae()
    report = load_checkpoint(dst, path)
    assert report.source == "official" and report.missing == [] and report.unexpected == [] and report.converted == []
    assert same_weights(src, dst)


def test_official_encoder_only_checkpoint(tmp_path):
    src = randomized(mae())
    path = tmp_path / "mae_pretrain_vit_tiny.pth"
    torch.save({"model": encoder_state_dict(src.state_dict())}, path)
    enc = vit_tiny_patch16(img_size=32, patch_size=8, depth=2)
    report = load_checkpoint(enc, path)
    assert report.loaded == len(enc.state_dict()) and not report.missing
    assert torch.equal(enc.blocks[1].mlp.fc1.weight, src.blocks[1].mlp.fc1.weight)
    with pytest.raises(CheckpointError, match="missing keys.*decoder"):
        load_checkpoint(mae(), path)  # the decoder is not in an encoder-only file


def test_timm_state_dict_with_head_needs_non_strict():
    timm = pytest.importorskip("timm")
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                            num_classes=10)
    enc = vit_tiny_patch16(img_size=32, patch_size=8, depth=2)
    with pytest.raises(CheckpointError, match=r"unexpected keys \['head.bias', 'head.weight'\]"):
        load_checkpoint(enc, ref.state_dict())
    report = load_checkpoint(enc, ref.state_dict(), strict=False)
    assert report.source == "timm" and report.unexpected == ["head.bias", "head.weight"] and not report.missing
    assert torch.equal(enc.blocks[0].attn.qkv.weight, ref.blocks[0].attn.qkv.weight)


def test_mmpretrain_checkpoint_round_trip(tmp_path):
    src = randomized(mae())
    mm = to_mmpretrain(src.state_dict())
    assert "backbone.layers.0.ffn.layers.0.0.weight" in mm and "neck.ln1.weight" in mm
    path = tmp_path / "mmpretrain_mae.pth"
    torch.save({"meta": {"epoch": 400}, "state_dict": mm}, path)
    dst = mae()
    report = load_checkpoint(dst, path)
    assert report.source == "mmpretrain" and not report.missing and not report.unexpected
    assert len(report.converted) == len(mm)
    assert same_weights(src, dst)


def test_hf_checkpoints_both_transformers_layouts(tmp_path):
    from safetensors.torch import save_file
    hf = hf_vitmae()
    sd5 = {k: v.contiguous() for k, v in hf.state_dict().items()}
    a, b = mae(), mae()
    assert load_checkpoint(a, sd5).source == "hf"
    path = tmp_path / "model.safetensors"
    save_file(hf5_to_hf4(sd5), str(path))
    assert load_checkpoint(b, path).source == "hf"
    assert same_weights(a, b)
    q = sd5["vit.layers.1.attention.q_proj.weight"]
    assert torch.equal(a.blocks[1].attn.qkv.weight[:192], q)
    # encoder-only HF model (ViTMAEModel: no 'vit.' prefix)
    enc_sd = {k[len("vit."):]: v for k, v in sd5.items() if k.startswith("vit.")}
    enc = vit_tiny_patch16(img_size=32, patch_size=8, depth=2)
    assert not load_checkpoint(enc, enc_sd).missing


def test_native_mmengine_checkpoint(tmp_path):
    src = randomized(mae())
    sd = {"model." + k: v for k, v in src.state_dict().items()}
    dst = mae()
    report = load_checkpoint(dst, {"meta": {}, "state_dict": sd})
    assert report.source == "native" and same_weights(src, dst)


# ----------------------------------------------------------------------------- strictness
def test_missing_key_fails_loudly_and_is_reported_when_not_strict():
    sd = randomized(mae()).state_dict()
    del sd["blocks.1.attn.proj.weight"]
    with pytest.raises(CheckpointError, match=r"1 missing keys \['blocks.1.attn.proj.weight'\]"):
        load_checkpoint(mae(), sd)
    report = load_checkpoint(mae(), sd, strict=False)
    assert report.missing == ["blocks.1.attn.proj.weight"]
    assert "missing 1 (blocks.1.attn.proj.weight)" in str(report)


def test_allowed_missing_declares_new_parameters():
    sd = encoder_state_dict(randomized(mae()).state_dict())
    report = load_checkpoint(mae(), sd, allowed_missing=[r"^decoder_", r"^mask_token$"])
    assert "mask_token" in report.missing and report.unexpected == []


def test_other_patch_size_is_a_clear_error():
    sd = mae(patch_size=16).state_dict()
    with pytest.raises(CheckpointError, match="another patch size"):
        load_checkpoint(mae(patch_size=8, img_size=64), sd)


def test_position_tables_resized_to_model_grid():
    src = randomized(mae())  # 4 x 4 grid, random (learned) tables
    src.pos_embed.data.copy_(get_2d_sincos_pos_embed(192, 4, cls_token=True)[None])  # fixed sin-cos table
    dst = mae(img_size=48)  # 6 x 6 grid
    report = load_checkpoint(dst, src.state_dict())
    assert sorted(r.split()[0] for r in report.resized) == ["decoder_pos_embed", "pos_embed"]
    # a sin-cos table is rebuilt exactly for the new grid; a learned one is interpolated
    assert torch.equal(dst.pos_embed[0], get_2d_sincos_pos_embed(192, 6, cls_token=True))
    assert torch.equal(dst.decoder_pos_embed[:, :1], src.decoder_pos_embed[:, :1])
    assert not torch.equal(dst.decoder_pos_embed[0], get_2d_sincos_pos_embed(32, 6, cls_token=True))


# ------------------------------------------------------------------------------- safety
class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "x": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        read_checkpoint(path)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_mmengine_history_buffer_is_allow_listed(tmp_path):
    pytest.importorskip("mmengine")
    import mae_backbone.engine  # noqa: F401  (registers the allow-list)
    from mmengine.logging.history_buffer import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(0.5)
    path = tmp_path / "epoch_1.pth"
    torch.save({"state_dict": {"model.cls_token": torch.zeros(1, 1, 4)},
                "message_hub": {"log_scalars": {"train/loss": buf}, "runtime_info": {"x": np.float64(1.5)}}}, path)
    ck = read_checkpoint(path)
    assert ck["message_hub"]["log_scalars"]["train/loss"].current() == 0.5


def test_save_is_atomic(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_checkpoint({"model": {"w": torch.ones(3)}}, path)
    with pytest.raises(Exception):
        save_checkpoint({"model": {"w": torch.zeros(3)}, "bad": lambda: 0}, path)  # cannot pickle
    assert torch.equal(read_checkpoint(path)["model"]["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["ckpt.pth"]


def test_unknown_source_and_empty_checkpoint():
    with pytest.raises(ValueError, match="unknown checkpoint source"):
        convert_state_dict({"a": torch.zeros(1)}, "keras")
    with pytest.raises(CheckpointError, match="no state dict found"):
        load_checkpoint(mae(), {"epoch": 3})


class _Attr:
    """Pickles as getattr(obj, name); callable so pickle accepts it as a REDUCE function."""

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __call__(self, *a):
        raise AssertionError("never called while pickling")

    def __reduce__(self):
        return (getattr, (self.obj, self.name))


class _CallEval:
    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        get = _Attr(_Attr(_Attr(HistoryBuffer, "__init__"), "__builtins__"), "get")  # builtins dict .get
        return (get, ("eval",))


def test_getattr_allow_list_cannot_reach_code_execution(tmp_path):
    pytest.importorskip("mmengine")
    import mae_backbone.engine  # noqa: F401
    path = tmp_path / "evil_getattr.pth"
    torch.save({"x": _CallEval()}, path)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        read_checkpoint(path)


def test_source_detection_does_not_mistake_other_frameworks():
    from mae_backbone.checkpoint import detect_source
    enc = {"cls_token": torch.zeros(1), "blocks.0.attn.qkv.weight": torch.zeros(1)}
    assert detect_source(enc) == "timm"
    assert detect_source(enc, wrapper="model") == "official"
    # an mmdet detector (backbone + FPN neck) is not an mmpretrain MAE
    det = {"backbone.blocks.0.attn.qkv.weight": torch.zeros(1), "neck.lateral_convs.0.conv.weight": torch.zeros(1)}
    assert detect_source(det) != "mmpretrain"
    assert detect_source({"backbone.layers.0.ln1.weight": torch.zeros(1)}) == "mmpretrain"
    assert detect_source({"vit.layers.0.attention.q_proj.weight": torch.zeros(1)}) == "hf"
    assert detect_source({"vit.encoder.layer.0.attention.attention.query.weight": torch.zeros(1)}) == "hf"


class _Reduce:
    def __init__(self, *rv):
        self.rv = rv

    def __reduce__(self):
        return self.rv


def test_getattr_globals_write_exploit_is_refused(tmp_path):
    """getattr.__self__ -> builtins.eval, planted into a torch function's __globals__ via SETITEMS, then called.

    The real builtins.getattr would let this run code under weights_only=True; the allow-listed stand-in
    only returns HistoryBuffer's statistics methods.
    """
    pytest.importorskip("mmengine")
    import collections
    import torch._utils
    import mae_backbone.engine  # noqa: F401  (allow-list active, as in every training process)
    from mmengine.logging.history_buffer import HistoryBuffer
    marker = tmp_path / "PWNED"
    builtins_mod = _Reduce(getattr, (getattr, "__self__"))
    evil_eval = _Reduce(getattr, (builtins_mod, "eval"))
    fake_torch = _Reduce(collections.OrderedDict, (), {"nn": _Reduce(collections.OrderedDict, (), {"Parameter": evil_eval})})
    plant = _Reduce(getattr, (torch._utils._rebuild_parameter, "__globals__"), None, None, iter([("torch", fake_torch)]))
    code = f"(__import__('pathlib').Path({str(marker)!r}).write_text('ran'), type('X', (), {{}})())[1]"
    trigger = _Reduce(torch._utils._rebuild_parameter, (code, {}, None))
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "meta": (HistoryBuffer, plant, trigger)}, path)
    with pytest.raises(CheckpointError, match="refused getattr"):
        read_checkpoint(path)
    assert not marker.exists()
    assert torch._utils._rebuild_parameter.__globals__["torch"] is torch


def test_non_square_table_error_names_the_fix():
    sd = mae().state_dict()
    sd["pos_embed"] = torch.zeros(1, 1 + 12, 192)  # a 3 x 4 grid cannot be inferred
    with pytest.raises(CheckpointError, match="resize_pos_embed"):
        load_checkpoint(mae(), sd)


def test_ddp_module_prefix_is_stripped():
    src = randomized(mae())
    dst = mae()
    report = load_checkpoint(dst, {"model": {"module." + k: v for k, v in src.state_dict().items()}})
    assert not report.missing and same_weights(src, dst)


def test_nothing_matching_fails_even_when_not_strict():
    with pytest.raises(CheckpointError, match="no tensor of the checkpoint"):
        load_checkpoint(mae(), {"foo.weight": torch.zeros(2), "bar.bias": torch.zeros(2)}, strict=False)


def test_saved_file_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_checkpoint({"model": {"w": torch.ones(1)}}, tmp_path / "c.pth")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
