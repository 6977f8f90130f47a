"""benchmarks/gpu_check.sh on the CPU with tiny shapes: every part writes its section as it finishes, a part that
runs out of time is reported as such and the next part still runs, and the training smoke goes through the tools."""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_check(tmp_path, expect_rc=0, **env):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", osp.join(ROOT, "benchmarks", "gpu_check.sh")], capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=sys.executable, OUT=str(out), SMALL="1", **env), timeout=900)
    assert proc.returncode == expect_rc, proc.stdout[-3000:] + proc.stderr[-3000:]
    return (out / "gpu_check.md").read_text()


def test_parts_write_their_sections_and_a_timeout_is_reported(tmp_path):
    md = run_check(tmp_path, PARTS="env vitdet")
    assert "### machine" in md and "- bf16 here means: " in md and "- timm " in md
    assert "| windowed (ViTDet) |" in md and "| all global |" in md and "speedup vs all-global" in md
    assert "FAILED" not in md
    md = run_check(tmp_path / "t", expect_rc=1, PARTS="env vitdet", TIMEOUT_SCALE="0.002")  # 0.12 s: nothing finishes
    assert "### env: FAILED (timed out after 0.12 s" in md and "### vitdet: FAILED (timed out" in md


@pytest.mark.slow
def test_every_part_on_cpu(tmp_path):
    """All parts, tiny shapes (about 5 minutes on 2 cores: torch.compile and three training runs)."""
    md = run_check(tmp_path)
    for title in ("machine", "MAE ViT-B pretraining step: eager", "MAE ViT-B pretraining step: torch.compile",
                  "MAE ViT-L pretraining step", "asymmetric encoder-decoder", "ViTDet backbone", "training smoke"):
        assert f"### {title}" in md, md
    assert "| ours-compiled |" in md and "| hf |" in md and "| MAE, decoder depth 1 |" in md
    assert "| --amp bf16, 2 epochs | 0 |" in md and "| --resume to 3 epochs | 0 |" in md
    assert "| --amp fp16, 1 epoch (new work dir) | skipped: fp16 loss scaling needs CUDA |" in md
