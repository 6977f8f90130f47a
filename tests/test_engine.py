"""mmengine pretraining: loss goes down, exact resume, lr scaling, optimizer groups, bf16, DDP."""
import os
import re
import subprocess
import sys

import pytest
import torch

pytest.importorskip("mmengine")
from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.registry import HOOKS  # noqa: E402

import mae_backbone.engine  # noqa: E402,F401
from mae_backbone.engine import build_runner, scale_lr  # noqa: E402
from dist_launch import dist_train  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "mae", "mae_vit-demo-p8_1xb32-40e_photos.py")


@HOOKS.register_module(force=True)
class LossRecorder(Hook):
    def __init__(self):
        self.losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append(outputs["loss"].item())


def tiny_cfg(work_dir, photo_dir, epochs, workers=0, extra_hooks=()):
    cfg = Config.fromfile(DEMO)
    cfg.merge_from_dict(dict(
        work_dir=str(work_dir),
        model=dict(img_size=32, patch_size=8, depth=2, decoder_embed_dim=32, decoder_depth=1),
        train_dataloader=dict(batch_size=4, num_workers=workers, persistent_workers=False,
                              dataset=dict(root=str(photo_dir), repeat=2,
                                           transform=dict(type="pretrain", img_size=32))),
        train_cfg=dict(max_epochs=epochs),
        default_hooks=dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=-1)),
        visualizer=dict(vis_backends=[dict(type="LocalVisBackend")]),
    ))
    cfg.param_scheduler = [
        dict(type="LinearLR", start_factor=0.1, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
        dict(type="CosineAnnealingLR", T_max=epochs - 1, by_epoch=True, begin=1, end=epochs,
             convert_to_iter_based=True)]
    cfg.custom_hooks = [dict(type="RNGStateHook"), dict(type="LossRecorder"), *extra_hooks]
    return cfg


def recorder(runner):
    return next(h for h in runner.hooks if isinstance(h, LossRecorder))


def test_short_pretraining_run_lowers_the_loss(tmp_path, photo_dir):
    cfg = tiny_cfg(tmp_path / "run", photo_dir, epochs=8,
                   extra_hooks=[dict(type="ReconstructionHook", interval=4, num_images=3)])
    runner = build_runner(cfg)
    runner.train()
    losses = recorder(runner).losses
    assert len(losses) == 8 * 3 and all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-6:]) / 6 < 0.8 * sum(losses[:3]) / 3, losses
    pics = sorted(os.listdir(tmp_path / "run" / "reconstructions"))
    assert pics == ["epoch_4.png", "epoch_8.png"]
    from PIL import Image
    assert Image.open(tmp_path / "run" / "reconstructions" / "epoch_8.png").size == (3 * 32 + 4 * 2, 3 * 32 + 4 * 2)


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_replays_the_uninterrupted_run_exactly(tmp_path, photo_dir, workers):
    full = build_runner(tiny_cfg(tmp_path / "full", photo_dir, epochs=4, workers=workers))
    full.train()
    ref = recorder(full).losses
    cfg = tiny_cfg(tmp_path / "resumed", photo_dir, epochs=4, workers=workers)
    cfg.resume, cfg.load_from = True, str(tmp_path / "full" / "epoch_2.pth")
    resumed = build_runner(cfg)
    resumed.train()
    assert recorder(resumed).losses == ref[6:]  # bit-exact: same masks, crops, lr and optimizer state
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lr_is_blr_times_effective_batch_over_256():
    cfg = Config(dict(blr=1.5e-4, train_dataloader=dict(batch_size=128),
                      optim_wrapper=dict(accumulative_counts=4, optimizer=dict(type="AdamW", lr=None))))
    assert scale_lr(cfg, world_size=8) == pytest.approx(1.5e-4 * 4096 / 256)
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(2.4e-3)
    fixed = Config(dict(blr=1.5e-4, train_dataloader=dict(batch_size=2),
                        optim_wrapper=dict(optimizer=dict(type="AdamW", lr=0.01))))
    assert scale_lr(fixed, 1) is None and fixed.optim_wrapper.optimizer.lr == 0.01


def test_optimizer_groups_from_model_self_description():
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
    from mae_backbone.engine import MAEPretrainer
    model = MAEPretrainer(arch="mae_vit_tiny_patch16", img_size=32, patch_size=8, depth=2, decoder_depth=1)
    ctor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type="LayerDecayOptimWrapperConstructor", paramwise_cfg=dict(layer_decay=0.5),
        optim_wrapper_cfg=dict(optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.05, betas=(0.9, 0.95)))))
    opt = ctor(model).optimizer
    where = {id(p): g for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    # layer-wise decay: lr x 0.5^(depth + 1 - layer_id), depth = 2
    assert where[id(named["model.patch_embed.proj.weight"])]["lr"] == pytest.approx(0.5 ** 3)
    assert where[id(named["model.blocks.1.attn.qkv.weight"])]["lr"] == pytest.approx(0.5 ** 1)
    assert where[id(named["model.decoder_pred.weight"])]["lr"] == pytest.approx(1.0)
    # no weight decay on norms, biases, cls and mask tokens; decay on matrices
    for n in ["model.cls_token", "model.mask_token", "model.blocks.0.norm1.weight", "model.blocks.0.attn.qkv.bias"]:
        assert where[id(named[n])]["weight_decay"] == 0.0, n
    assert where[id(named["model.blocks.0.mlp.fc1.weight"])]["weight_decay"] == 0.05
    assert id(named["model.pos_embed"]) not in where  # fixed table: not optimised


def test_constructor_fuses_adamw_by_default_with_the_same_updates():
    """The constructor turns on torch's fused AdamW unless the config chose fused / foreach; 20 steps of the
    fused kernel, fed the same gradients, give the parameters the per-tensor loop gives within float32 rounding
    (the same gradients: a model in the loop would let rounding differences feed back through Adam's
    normalisation of near-zero gradients)."""
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

    from mae_backbone.engine import MAEPretrainer

    runs = {}
    for name, extra in (("default", {}), ("loop", dict(foreach=False)), ("foreach", dict(foreach=True))):
        torch.manual_seed(0)
        model = MAEPretrainer(arch="mae_vit_tiny_patch16", img_size=32, patch_size=8, depth=2, decoder_depth=1)
        ctor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
            type="LayerDecayOptimWrapperConstructor", paramwise_cfg=dict(layer_decay=0.75),
            optim_wrapper_cfg=dict(optimizer=dict(type="AdamW", lr=1e-2, weight_decay=0.05, betas=(0.9, 0.95),
                                                  **extra))))
        opt = ctor(model).optimizer
        assert opt.defaults.get("fused") is (True if name == "default" else None), (name, opt.defaults)
        g = torch.Generator().manual_seed(1)
        params = [p for p in model.parameters() if p.requires_grad]
        for step in range(20):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g) * 10.0 ** (-step % 4)
            opt.step()
        runs[name] = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(0)  # the same initial parameters as each run
    before = dict(MAEPretrainer(arch="mae_vit_tiny_patch16", img_size=32, patch_size=8, depth=2,
                                decoder_depth=1).named_parameters())
    for n, p in runs["loop"].items():
        torch.testing.assert_close(runs["default"][n], p, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(runs["foreach"][n], p, rtol=1e-5, atol=1e-6)
    assert not torch.equal(runs["loop"]["model.blocks.0.attn.qkv.weight"], before["model.blocks.0.attn.qkv.weight"])


def test_bf16_autocast_wrapper_on_cpu(cpu_bf16):
    from mmengine.registry import OPTIM_WRAPPERS
    cpu_bf16(True)
    lin = torch.nn.Linear(4, 4)
    wrapper = OPTIM_WRAPPERS.build(dict(type="AutocastOptimWrapper", dtype="bfloat16",
                                        optimizer=torch.optim.SGD(lin.parameters(), lr=0.1)))
    with wrapper.optim_context(lin):
        y = lin(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16
    before = lin.weight.detach().clone()
    wrapper.update_params(y.float().sum())
    assert not torch.equal(before, lin.weight) and lin.weight.dtype == torch.float32


def _launch_two_gloo_ranks(tmp_path, photo_dir, extra_cfg="", pythonpath=None, timeout=300):
    """tools/dist_train.sh on a tiny MAE config with 2 CPU ranks; returns the finished process."""
    cfg_path = tmp_path / "ddp_cfg.py"
    cfg_path.write_text(f"""
_base_ = [{DEMO!r}]
model = dict(img_size=32, patch_size=8, depth=2, decoder_embed_dim=32, decoder_depth=1)
train_dataloader = dict(batch_size=4, num_workers=0,
                        dataset=dict(root={str(photo_dir)!r}, repeat=2, transform=dict(type='pretrain', img_size=32)))
train_cfg = dict(max_epochs=2)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
visualizer = dict(vis_backends=[dict(type='LocalVisBackend')])
custom_hooks = [dict(type='RNGStateHook'), dict(type='ReplicaCheckHook', interval=1)]
""" + extra_cfg)
    return dist_train(cfg_path, tmp_path / "work", timeout=timeout, pythonpath=pythonpath)


def test_ddp_two_gloo_processes_keep_identical_weights(tmp_path, photo_dir):
    proc = _launch_two_gloo_ranks(tmp_path, photo_dir)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"stdout ends:\n{proc.stdout[-2500:]}\nstderr ends:\n{proc.stderr[-2500:]}"
    assert "still referenced after destroy_process_group" not in log, proc.stderr[-2500:]
    # 12 samples / (2 ranks x 4) -> 2 iterations per epoch, 2 epochs, a check each + one at the end
    checks = re.findall(r"replica check passed after iteration (\d+): weights bit-identical on 2 ranks", log)
    assert [int(c) for c in checks] == [1, 2, 3, 4, 4], log[-3000:]
    assert "gloo" in log and (tmp_path / "work" / "epoch_2.pth").exists()


FAILING_HOOK = """
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class FailOnRankOne(Hook):
    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if dist.get_rank() == 1 and runner.iter == 1:
            raise RuntimeError("rank 1 fails before iteration 2")
"""


def test_a_failing_rank_ends_the_distributed_run_at_once(tmp_path, photo_dir):
    """A rank that raises must not wait for the others at a shutdown barrier while they wait for it inside DDP's
    all-reduce (a hang until the group's 30-minute timeout): it exits with its traceback and torchrun stops the rest."""
    (tmp_path / "failing_hook.py").write_text(FAILING_HOOK)
    extra = ("custom_imports = dict(imports=['failing_hook'], allow_failed_imports=False)\n"
             "custom_hooks = [dict(type='FailOnRankOne')]\n")
    proc = _launch_two_gloo_ranks(tmp_path, photo_dir, extra, pythonpath=tmp_path, timeout=150)
    assert proc.returncode != 0
    assert "rank 1 fails before iteration 2" in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "work" / "epoch_2.pth").exists()


SHUTDOWN_SCRIPT = """
import gc, sys, weakref, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from mae_backbone.engine import shutdown_distributed
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
class Runner:  # like mmengine's Runner: in a reference cycle, holding the DDP model that holds the group
    pass
runner = Runner()
runner.runner, runner.model = runner, DistributedDataParallel(torch.nn.Linear(4, 2))
runner.model(torch.randn(3, 4)).sum().backward()
group = weakref.ref(dist.group.WORLD)
keep = runner.model if sys.argv[2] == "keep" else None
del runner
shutdown_distributed()
print("initialised", dist.is_initialized(), "group freed", group() is None)
"""


@pytest.mark.parametrize("keep", [False, True])
def test_shutdown_frees_the_process_group_held_by_a_runner_cycle(tmp_path, keep):
    """destroy_process_group only unregisters the group; a runner cycle holding DDP kept the gloo backend alive until
    interpreter teardown, where gloo can abort a finished run. A reference the caller keeps is reported."""
    proc = subprocess.run([sys.executable, "-c", SHUTDOWN_SCRIPT, str(tmp_path / "store"), "keep" if keep else "drop"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"initialised False group freed {not keep}" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    warned = "still referenced after destroy_process_group (by DistributedDataParallel" in proc.stderr
    assert warned == keep, proc.stderr[-2000:]


PAPER_CONFIGS = {
    "mae_vit-base-p16_8xb128-accum4-amp-800e_in1k.py": ("mae_vit_base_patch16", 800),
    "mae_vit-base-p16_8xb128-accum4-amp-1600e_in1k.py": ("mae_vit_base_patch16", 1600),
    "mae_vit-large-p16_8xb64-accum8-amp-800e_in1k.py": ("mae_vit_large_patch16", 800),
    "mae_vit-large-p16_8xb64-accum8-amp-1600e_in1k.py": ("mae_vit_large_patch16", 1600),
    "mae_vit-huge-p14_8xb32-accum16-amp-800e_in1k.py": ("mae_vit_huge_patch14", 800),
    "mae_vit-huge-p14_8xb32-accum16-amp-1600e_in1k.py": ("mae_vit_huge_patch14", 1600),
}


@pytest.mark.parametrize("name", sorted(PAPER_CONFIGS))
def test_paper_recipes(name):
    """Table 8 of the paper: batch 4096 on 8 GPUs, blr 1.5e-4, AdamW (0.9, 0.95), wd 0.05, 40 warmup epochs."""
    cfg = Config.fromfile(os.path.join(ROOT, "configs", "mae", name))
    arch, epochs = PAPER_CONFIGS[name]
    assert cfg.model.arch == arch and cfg.model.norm_pix_loss and cfg.model.mask_ratio == 0.75
    assert cfg.train_cfg.max_epochs == epochs
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.end, cosine.begin, cosine.end, cosine.T_max) == ("LinearLR", 40, 40, epochs, epochs - 40)
    opt = cfg.optim_wrapper.optimizer
    assert opt.betas == (0.9, 0.95) and opt.weight_decay == 0.05 and cfg.optim_wrapper.dtype == "bfloat16"
    assert scale_lr(cfg, world_size=8) == pytest.approx(1.5e-4 * 4096 / 256)
    aug = cfg.train_dataloader.dataset.transform
    assert aug.scale == (0.2, 1.0) and aug.img_size == 224


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_config_trains(tmp_path):
    cfg = Config.fromfile(os.path.join(ROOT, "configs", "mae", "mae_vit-d96-p4_1xb256-10e_fashion-mnist.py"))
    cfg.merge_from_dict(dict(work_dir=str(tmp_path), train_cfg=dict(max_epochs=1),
                             train_dataloader=dict(batch_size=32, num_workers=0, dataset=dict(limit=96)),
                             visualizer=dict(vis_backends=[dict(type="LocalVisBackend")])))
    cfg.custom_hooks = [dict(type="LossRecorder"),
                        dict(type="ReconstructionHook", interval=1, num_images=4, mean=(0.286,), std=(0.353,))]
    runner = build_runner(cfg)
    runner.train()
    losses = recorder(runner).losses
    assert len(losses) == 3 and all(l == l and l < 10 for l in losses)
    mae = runner.model.model
    assert (mae.in_chans, mae.grid, mae.patch_size) == (1, (7, 7), 4)
    assert (tmp_path / "reconstructions" / "epoch_1.png").exists()


def test_gradient_accumulation_steps_every_n_iterations(tmp_path, photo_dir):
    cfg = tiny_cfg(tmp_path / "accum", photo_dir, epochs=2)
    cfg.optim_wrapper.accumulative_counts = 2
    runner = build_runner(cfg)
    runner.train()
    assert len(recorder(runner).losses) == 6
    state = runner.optim_wrapper.optimizer.state
    steps = {int(s["step"]) for s in state.values()}
    assert steps == {3}  # 6 iterations, one optimizer step per 2


def test_replica_digest_handles_scalar_buffers():
    from mae_backbone.engine.hooks import ReplicaCheckHook
    bn = torch.nn.BatchNorm1d(3)  # num_batches_tracked is a 0-dim tensor
    d = ReplicaCheckHook.tensor_digests(bn)
    assert set(d) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    bn.num_batches_tracked += 1
    assert ReplicaCheckHook.tensor_digests(bn)["num_batches_tracked"] != d["num_batches_tracked"]


def test_rng_state_restored_on_resume_only():
    from types import SimpleNamespace
    from mae_backbone.engine.hooks import RNGStateHook
    hook = RNGStateHook()
    ckpt = {"rng_state": [RNGStateHook.capture()]}
    log = SimpleNamespace(warning=lambda *a: None, info=lambda *a: None)
    hook.after_load_checkpoint(SimpleNamespace(_resume=False, logger=log), ckpt)  # load_from
    assert hook._pending is None
    hook.after_load_checkpoint(SimpleNamespace(_resume=True, logger=log), ckpt)
    assert hook._pending is ckpt["rng_state"][0]
    expected = torch.rand(3)  # the first draw after the captured point
    torch.rand(10)
    hook.before_train(SimpleNamespace(logger=log))  # restores the captured point
    assert torch.equal(torch.rand(3), expected) and hook._pending is None


def test_constructor_rejects_name_rules_and_autocast_rejects_fp16():
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS
    ctor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type="LayerDecayOptimWrapperConstructor", paramwise_cfg=dict(custom_keys={"head": dict(lr_mult=10)}),
        optim_wrapper_cfg=dict(optimizer=dict(type="AdamW", lr=1.0))))
    with pytest.raises(ValueError, match="custom_keys"):
        ctor(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="AmpOptimWrapper"):
        OPTIM_WRAPPERS.build(dict(type="AutocastOptimWrapper", dtype="float16",
                                  optimizer=torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)))


def test_slurm_local_rank_comes_from_slurm(monkeypatch):
    from mae_backbone.engine.launch import _slurm_env
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("SLURM_PROCID", "13")
    monkeypatch.setenv("SLURM_NTASKS", "16")
    monkeypatch.setenv("SLURM_LOCALID", "5")
    monkeypatch.setenv("MASTER_ADDR", "node0")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _slurm_env(29500)
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("13", "16", "5")


def test_bare_model_unwraps_test_time_augmentation_and_distributed_wrappers():
    """Hooks reach the model itself under tools/test.py --tta (e.g. the segmentation class-count check)."""
    from mmengine.model import BaseTTAModel
    from mae_backbone.engine.hooks import bare_model

    class TTA(BaseTTAModel):
        def merge_preds(self, data_samples_list):
            return data_samples_list

    class Net(torch.nn.Linear):
        def test_step(self, data):
            return self(data)

    inner = Net(2, 2)
    assert bare_model(inner) is inner and bare_model(TTA(inner)) is inner
    assert bare_model(TTA(TTA(inner))) is inner
