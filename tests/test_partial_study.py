"""tools/partial_finetune_study.py end to end on a Fashion-MNIST subset, and its resume."""
import csv
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from mae_backbone.models import mae_vit_tiny_patch16

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "classification", "vit-d96-p4_mae-partial_1xb256-1e_fashion-mnist.py")
pytestmark = pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                                reason="dataset-fashion-mnist not installed")


def run_study(work_dir, ckpt, blocks=("0", "all"), expect_ok=True):
    cmd = [sys.executable, os.path.join(ROOT, "tools", "partial_finetune_study.py"), CONFIG,
           "--blocks", *blocks, "--pretrained", str(ckpt), "--baseline-random-init", "--work-dir", str(work_dir),
           "--cfg-options", "train_dataloader.dataset.limit=64", "train_dataloader.batch_size=32",
           "val_dataloader.dataset.limit=64", "default_hooks.logger.interval=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert (proc.returncode == 0) == expect_ok, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_study_runs_resumes_and_reports(tmp_path):
    torch.manual_seed(0)
    mae = mae_vit_tiny_patch16(img_size=28, patch_size=4, in_chans=1, embed_dim=96, depth=6, num_heads=3,
                               decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2)
    ckpt = tmp_path / "mae.pth"
    torch.save({"model": mae.state_dict()}, ckpt)
    out = tmp_path / "study"
    run_study(out, ckpt)
    with open(out / "study.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["init"], r["k"], r["blocks"]) for r in rows] == [
        ("MAE", "0", "0"), ("MAE", "all", "6"), ("random init", "0", "0"), ("random init", "all", "6")]
    assert all(0 <= float(r["top1"]) <= 100 for r in rows)
    trainable = {(r["init"], r["k"]): int(r["trainable_params"]) for r in rows}
    # k = 0 trains the new fc_norm (avg pooling) and the head only
    assert trainable[("MAE", "0")] < trainable[("MAE", "all")] and trainable[("MAE", "0")] == 2 * 96 + 96 * 10 + 10
    assert Image.open(out / "study.png").size[0] > 300
    assert "| MAE | all |" in (out / "study.md").read_text()
    for point in ["mae_k0", "mae_kall", "random_k0", "random_kall"]:  # each point keeps its own log
        logs = list((out / point).glob("*/*.log"))
        assert len(logs) == 1, f"{point}: {logs}"
        assert (str(ckpt) in logs[0].read_text()) == point.startswith("mae"), point
    # resume: finished points are skipped, their results untouched
    stamp = (out / "mae_k0" / "result.json").stat().st_mtime_ns
    log = run_study(out, ckpt)
    assert log.count("skipping finished point") == 4
    assert (out / "mae_k0" / "result.json").stat().st_mtime_ns == stamp
    # the same work dir with another checkpoint must not reuse these results
    other = tmp_path / "other.pth"
    other.write_bytes(ckpt.read_bytes())
    assert "produced with other settings" in run_study(out, other, expect_ok=False)


def test_bad_block_lists_fail_before_training(tmp_path):
    """Out of range, repeated, and 'all' repeating the depth: refused before anything starts (the first through the
    command line, the others through the library call it makes, saving a process start each)."""
    from mae_backbone.engine.partial_study import run_study as study
    ckpt = tmp_path / "exists.pth"
    ckpt.write_bytes(b"never read: the block list is checked first")
    log = run_study(tmp_path / "s", ckpt, blocks=("0", "7"), expect_ok=False)
    assert "--blocks must be distinct values in [0, 6]" in log
    for blocks in ((2, 2), (6, "all")):
        with pytest.raises(ValueError, match=r"--blocks must be distinct values in \[0, 6\]"):
            study(CONFIG, blocks, str(ckpt), str(tmp_path / "s"))
    assert not (tmp_path / "s").exists()  # nothing started
