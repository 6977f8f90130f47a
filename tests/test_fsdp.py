"""The runner a config names: Runner (DDP) or FlexibleRunner with FSDP, never silently DDP; the FSDP pretraining
configs; a 2-process gloo FSDP run that resumes bit-exactly; the mmcv CUDA-ops check before a run."""
from __future__ import annotations

import importlib.util
import os.path as osp
import re

import pytest
import torch

pytest.importorskip("mmengine")
from mmengine.config import Config  # noqa: E402

import mae_backbone.engine  # noqa: E402,F401
from mae_backbone.engine.fsdp import runner_type, vit_block_wrap_policy  # noqa: E402
from dist_launch import dist_train  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, "configs", "mae", "mae_vit-demo-p8_1xb32-40e_photos.py")
FSDP_CONFIGS = {  # FSDP variant -> the plain paper config whose recipe it keeps
    f"mae_vit-{arch}-fsdp-amp-{ep}e_in1k.py": f"mae_vit-{arch}-amp-{ep}e_in1k.py"
    for arch in ("large-p16_8xb64-accum8", "huge-p14_8xb32-accum16") for ep in (800, 1600)}


def fsdp_cfg(**strategy) -> Config:
    return Config(dict(runner_type="FlexibleRunner", strategy=dict(type="FSDPStrategy", **strategy)))


# ----------------------------------------------------------------------------- which runner
def test_plain_configs_get_the_runner():
    assert runner_type(Config(dict()), "none") == "Runner"
    assert runner_type(Config(dict(runner_type="FlexibleRunner")), "none") == "FlexibleRunner"


def test_a_strategy_the_runner_would_ignore_is_refused():
    cfg = Config(dict(strategy=dict(type="FSDPStrategy")))  # runner_type forgotten: would train plain DDP
    with pytest.raises(ValueError, match="runner_type is 'Runner', which ignores it and trains plain DDP"):
        runner_type(cfg, "pytorch")
    with pytest.raises(ValueError, match="runner_type='LoopRunner' is not supported"):
        runner_type(Config(dict(runner_type="LoopRunner")), "none")


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed here")
def test_deepspeed_without_the_package_is_refused_naming_it():
    cfg = Config(dict(runner_type="FlexibleRunner", strategy=dict(type="DeepSpeedStrategy")))
    with pytest.raises(ImportError, match=r"needs the deepspeed package.*pip install deepspeed"):
        runner_type(cfg, "pytorch")


def test_fsdp_needs_processes_and_original_parameters():
    with pytest.raises(ValueError, match="start with tools/dist_train.sh"):
        runner_type(fsdp_cfg(), "none")
    with pytest.raises(ValueError, match="use_orig_params=True"):
        runner_type(fsdp_cfg(model_wrapper=dict(use_orig_params=False)), "pytorch")
    cfg = fsdp_cfg(state_dict_cfg="full", model_wrapper=dict(sync_module_states=True))
    assert runner_type(cfg, "pytorch") == "FlexibleRunner"
    wrapper = cfg.strategy.model_wrapper
    assert cfg.strategy.type == "ResumableFSDPStrategy" and wrapper.use_orig_params is True
    if not torch.cuda.is_available():  # CPU FSDP (gloo): no CUDA index, no offloading of CPU tensors
        assert wrapper.device_id == "cpu" and "sync_module_states" not in wrapper  # GPU-only in torch
        assert cfg.strategy.state_dict_cfg.optim_state_dict_config.offload_to_cpu is False


def test_cpu_ddp_strategy_gets_no_cuda_device_ids():
    if torch.cuda.is_available():
        pytest.skip("CUDA machine: mmengine's device_ids apply")
    cfg = Config(dict(runner_type="FlexibleRunner"))
    runner_type(cfg, "pytorch")
    assert cfg.strategy == dict(type="DDPStrategy", model_wrapper=dict(device_ids=None))


def test_block_wrap_policy_wraps_blocks_only():
    from mae_backbone.models import create_model
    from mae_backbone.models.attention import Block
    mae = create_model("mae_vit_tiny_patch16", img_size=32, patch_size=8, depth=2, decoder_depth=1)
    wrapped = [m for m in mae.modules() if vit_block_wrap_policy(m, recurse=False)]
    assert len(wrapped) == 3 and all(isinstance(m, Block) for m in wrapped)  # 2 encoder + 1 decoder blocks
    assert vit_block_wrap_policy(mae, recurse=True)


@pytest.mark.parametrize("name", sorted(FSDP_CONFIGS))
def test_fsdp_paper_configs_keep_the_recipe(name):
    cfg = Config.fromfile(osp.join(ROOT, "configs", "mae", name))
    plain = Config.fromfile(osp.join(ROOT, "configs", "mae", FSDP_CONFIGS[name]))
    assert cfg.runner_type == "FlexibleRunner" and cfg.strategy.type == "FSDPStrategy"
    assert cfg.strategy.state_dict_cfg == "full"
    w = cfg.strategy.model_wrapper
    assert (w.auto_wrap_policy, w.sharding_strategy, w.use_orig_params, w.sync_module_states) == (
        "vit_block_wrap_policy", "FULL_SHARD", True, True)
    assert w.mixed_precision == dict(param_dtype="bfloat16", reduce_dtype="float32", buffer_dtype="float32")
    assert cfg.model.grad_checkpointing is True
    for key in ("optim_wrapper", "param_scheduler", "train_cfg", "train_dataloader", "blr"):
        assert cfg[key] == plain[key], key  # batch, accumulation, lr rule, schedule: the paper's
    assert {k: v for k, v in cfg.model.items() if k != "grad_checkpointing"} == plain.model


def test_block_checkpointing_keeps_parameter_groups():
    """Wrapper segments in parameter names (FSDP units, checkpoint wrappers) do not change the optimizer groups."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

    from mae_backbone.models import create_model
    from mae_backbone.models.attention import Block
    from mae_backbone.param_groups import param_groups

    def groups(model):
        return [(g["layer_id"], g["weight_decay"], g["lr_scale"], g["names"]) for g in param_groups(model, 0.05, 0.75)]
    mae = create_model("mae_vit_tiny_patch16", img_size=32, patch_size=8, depth=2, decoder_depth=1)
    before = groups(mae)
    apply_activation_checkpointing(mae, check_fn=lambda m: isinstance(m, Block))
    assert any("_checkpoint_wrapped_module" in n for n, _ in mae.named_parameters())
    assert groups(mae) == before


# ----------------------------------------------------------------------------- a real FSDP run (gloo)
def _dist_train(cfg_path, work, *args):
    proc = dist_train(cfg_path, work, *args, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def test_fsdp_two_gloo_processes_train_and_resume_exactly(tmp_path, photo_dir):
    """The FSDP strategy base on a tiny MAE: 2 processes shard it, the picture hook gathers it, checkpoints are
    whole (strict load into a plain model), and --resume replays the uninterrupted run bit for bit."""
    from mae_backbone.checkpoint import load_checkpoint
    from mae_backbone.models import create_model
    cfg_path = tmp_path / "fsdp_cfg.py"
    cfg_path.write_text(f"""
_base_ = [{DEMO!r}, {osp.join(ROOT, 'configs', '_base_', 'strategies', 'fsdp_full-shard_bf16.py')!r}]
model = dict(img_size=32, patch_size=8, depth=2, decoder_embed_dim=32, decoder_depth=1, grad_checkpointing=True)
train_dataloader = dict(batch_size=4, num_workers=0,
                        dataset=dict(root={str(photo_dir)!r}, repeat=2, transform=dict(type='pretrain', img_size=32)))
train_cfg = dict(max_epochs=2)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=-1))
visualizer = dict(vis_backends=[dict(type='LocalVisBackend')])
custom_hooks = [dict(type='RNGStateHook'), dict(type='ModelSpecHook'), dict(type='ReconstructionHook', num_images=2)]
""")
    log = _dist_train(cfg_path, tmp_path / "a")
    assert "ResumableFSDPStrategy" in log and (tmp_path / "a" / "reconstructions" / "epoch_2.png").is_file()
    assert re.search(r"Epoch\(train\) \[2\]\[2/2\].* loss: \d", log)
    log = _dist_train(cfg_path, tmp_path / "b", "--resume", str(tmp_path / "a" / "epoch_1.pth"))
    assert "resumed epoch: 1" in log
    straight, resumed = (torch.load(tmp_path / d / "epoch_2.pth", weights_only=True) for d in ("a", "b"))
    assert resumed["state_dict"].keys() == straight["state_dict"].keys()
    assert all(torch.equal(v, straight["state_dict"][k]) for k, v in resumed["state_dict"].items())
    mae = create_model("mae_vit_tiny_patch16", img_size=32, patch_size=8, depth=2, decoder_embed_dim=32,
                       decoder_depth=1)
    report = load_checkpoint(mae, str(tmp_path / "b" / "epoch_2.pth"))  # strict: the whole model, unsharded
    assert not report.missing and not report.unexpected


# ----------------------------------------------------------------------------- mmcv ops on CUDA
@pytest.fixture
def mask_rcnn():
    pytest.importorskip("mmdet")
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    import downstream  # noqa: F401
    cfg = Config.fromfile(osp.join(ROOT, "configs", "mask_rcnn", "mask-rcnn_mae-vit-tiny-fpn_1xb2-300i_offline-voc-arc.py"))
    init_default_scope("mmdet")
    return MODELS.build(cfg.model)


def test_cuda_model_with_cpu_only_mmcv_fails_before_the_run(mask_rcnn, monkeypatch):
    import mmcv.ops
    from mae_backbone.engine import guards
    assert guards.mmcv_ops_needed(mask_rcnn)  # RoIAlign modules, an mmdet detector
    guards.check_mmcv_ops(mask_rcnn)  # on the CPU: nothing to check
    monkeypatch.setattr(guards, "_model_device", lambda model: torch.device("cuda", 0))
    monkeypatch.setattr(mmcv.ops, "get_compiling_cuda_version", lambda: "not available")
    with pytest.raises(RuntimeError, match=r"compiled without CUDA ops .* `make install` .* MMCV_CUDA=1 .* docs/install.md"):
        guards.check_mmcv_ops(mask_rcnn)
    monkeypatch.setattr(mmcv.ops, "get_compiling_cuda_version", lambda: "13.0")
    guards.check_mmcv_ops(mask_rcnn)  # CUDA ops present
    from mae_backbone.models import create_model
    guards.check_mmcv_ops(create_model("mae_vit_tiny_patch16", img_size=32))  # no mmcv ops: fine anywhere


def test_build_runner_adds_the_check(tmp_path, photo_dir):
    from mae_backbone.engine import build_runner
    cfg = Config.fromfile(DEMO)
    cfg.merge_from_dict(dict(work_dir=str(tmp_path), model=dict(img_size=32, patch_size=8, depth=1, decoder_depth=1),
                             train_dataloader=dict(dataset=dict(root=str(photo_dir)))))
    runner = build_runner(cfg)
    assert any(type(h).__name__ == "MMCVOpsCheckHook" for h in runner.hooks)


def test_replica_check_refuses_sharded_models(monkeypatch):
    from types import SimpleNamespace

    from mae_backbone.engine import hooks
    hook = hooks.ReplicaCheckHook()
    hook.before_train(SimpleNamespace(model=torch.nn.Linear(2, 2)))  # plain / DDP models: fine
    monkeypatch.setattr(hooks, "is_fsdp", lambda model: True)
    with pytest.raises(ValueError, match="under FSDP each rank holds a different shard"):
        hook.before_train(SimpleNamespace(model=torch.nn.Linear(2, 2)))
