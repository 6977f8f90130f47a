"""OpenMMLab command-line habits: bare --amp, --auto-scale-lr, --no-validate, epochs=E, test.py --out / --show,
the dist / slurm test launchers."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FT = osp.join(ROOT, "configs", "classification", "vit-base-p16_mae-ft_8xb128-100e_in1k.py")
DET = osp.join(ROOT, "configs", "mask_rcnn", "mask-rcnn_mae-vit-b-vitdet_16xb4-lsj-100e_coco.py")


def tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", osp.join(ROOT, "tools", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bare_amp_means_the_hardwares_mixed_precision():
    train = tool("train")
    assert train.parse_args([FT, "--amp"]).amp == "bf16"  # resolved per device by set_amp / resolve_precision
    assert train.parse_args([FT, "--amp", "off"]).amp == "off" and train.parse_args([FT]).amp is None
    with pytest.raises(SystemExit):
        train.parse_args([FT, "--amp", "fp8"])


def test_auto_scale_lr_is_refused_where_lr_comes_from_blr_and_enabled_elsewhere():
    train = tool("train")
    with pytest.raises(SystemExit, match="scale twice"):
        train.prepare(train.parse_args([FT, "--auto-scale-lr"]))
    cfg = train.prepare(train.parse_args([DET, "--auto-scale-lr"]))
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=64)
    assert not train.prepare(train.parse_args([DET])).auto_scale_lr.enable
    with pytest.raises(SystemExit, match="base_batch_size"):
        train.prepare(train.parse_args([DET, "--auto-scale-lr", "--cfg-options", "auto_scale_lr.base_batch_size=0"]))


def test_no_validate_and_epochs_option():
    train = tool("train")
    cfg = train.prepare(train.parse_args([FT, "--no-validate", "--cfg-options", "epochs=10"]))
    assert cfg.val_cfg is None and cfg.val_dataloader is None and cfg.val_evaluator is None
    assert cfg.train_cfg.max_epochs == 10 and cfg.param_scheduler[-1]["end"] == 10 and cfg.param_scheduler[-1]["T_max"] == 5
    assert train.prepare(train.parse_args([FT])).val_dataloader is not None


def test_test_tool_refuses_show_without_a_display_and_a_non_pickle_out(tmp_path, monkeypatch):
    ckpt = tmp_path / "c.pth"
    ckpt.write_bytes(b"x")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    test = tool("test")
    with pytest.raises(SystemExit, match="needs a display.*--show-dir"):
        test.main([DET, str(ckpt), "--show"])
    with pytest.raises(SystemExit, match="visualization hook"):
        test.main([FT, str(ckpt), "--show"])
    with pytest.raises(SystemExit, match=r"\*\.pkl"):
        test.main([DET, str(ckpt), "--out", "r.json"])
    with pytest.raises(SystemExit, match="checkpoint not found.*official names"):
        test.main([DET, str(tmp_path / "missing.pth")])


def test_dist_and_slurm_launchers_call_the_tools(tmp_path):
    """The four launchers, run with a stand-in python (and srun) that prints its command line: torchrun or srun
    around train.py / test.py with the config, the checkpoint or work dir, the launcher and the extra flags."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("python", "srun"):
        (fake / name).write_text('#!/usr/bin/env bash\necho "' + name + ' $*"\n')
        (fake / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", PYTHON=str(fake / "python"), GPUS="16")
    tools = osp.join(ROOT, "tools")
    assert all(os.access(osp.join(tools, f), os.X_OK) for f in ("dist_train.sh", "dist_test.sh", "slurm_train.sh",
                                                                 "slurm_test.sh", "launch_dist.sh", "launch_slurm.sh"))

    def launch(script, *args):
        run = subprocess.run(["bash", osp.join(tools, script), *args], capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()
    out = launch("dist_train.sh", "C.py", "4", "--amp")
    assert "-m torch.distributed.run" in out and "--nproc_per_node=4" in out
    assert out.endswith(f"{tools}/train.py C.py --launcher pytorch --amp")
    out = launch("dist_test.sh", "C.py", "K.pth", "2", "--out", "r.pkl")
    assert "--nproc_per_node=2" in out and out.endswith(f"{tools}/test.py C.py K.pth --launcher pytorch --out r.pkl")
    out = launch("slurm_train.sh", "part", "job", "C.py", "wd")
    assert out.startswith("srun -p part --job-name=job") and "--ntasks=16" in out and "--cpus-per-task=10" in out
    assert out.endswith(f"{tools}/train.py C.py --work-dir wd --launcher slurm")
    out = launch("slurm_test.sh", "part", "job", "C.py", "K.pth", "--show-dir", "vis")
    assert "--cpus-per-task=5" in out and out.endswith(f"{tools}/test.py C.py K.pth --launcher slurm --show-dir vis")


def test_the_official_flag_table_names_real_config_keys():
    """Every --cfg-options key docs/cli.md maps an official MAE flag to exists in the config it is for."""
    import re

    from mmengine.config import Config
    pre = Config.fromfile(osp.join(ROOT, "configs", "mae", "mae_vit-base-p16_8xb128-accum4-amp-800e_in1k.py"))
    ft = Config.fromfile(FT)
    doc = open(osp.join(ROOT, "docs", "cli.md")).read()
    keys = set(re.findall(r"\b((?:model|train_dataloader|val_dataloader|optim_wrapper|param_scheduler|randomness)"
                          r"\.[\w.]+)=", doc))
    assert len(keys) >= 15, keys

    def exists(cfg, key):
        node = cfg
        for part in key.split("."):
            if isinstance(node, list):
                node = node[int(part)]
            elif part in node:
                node = node[part]
            else:
                return part in ("clip_grad", "max_norm")  # optional keys mmengine's OptimWrapper accepts
        return True
    missing = [k for k in keys if not (exists(ft, k) or exists(pre, k))]
    assert not missing, missing
